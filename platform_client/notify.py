"""The platform's notify endpoint: a small ASGI app served by uvicorn in a background thread.

``POST /wechat/notify`` verifies the channel's signature over the raw body, decrypts the
resource and credits the order once (:func:`platform_client.topups.handle_notification`):
200 ``{"code": "SUCCESS"}`` on success or a duplicate; 401 bad signature, 400 malformed or
not a success, 404 unknown order, every one recorded. Bound to 127.0.0.1 by default.

Example::

    with NotifyServer(ctx) as server:      # port 0 in the config: a free port
        print(server.url)                   # http://127.0.0.1:53121/wechat/notify
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from platform_client.context import Context
from platform_client.topups import handle_notification

NOTIFY_PATH = "/wechat/notify"
START_TIMEOUT_S = 10.0


def notify_app(ctx: Context) -> Starlette:
    async def notify(request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = handle_notification(ctx, dict(request.headers), body)
        return JSONResponse(answer, status_code=status)

    return Starlette(routes=[Route(NOTIFY_PATH, notify, methods=["POST"])])


class NotifyServer:
    """uvicorn serving :func:`notify_app` in a daemon thread until :meth:`stop`."""

    def __init__(self, ctx: Context, host: str | None = None, port: int | None = None) -> None:
        self.host = host or ctx.config.notify_host
        config = uvicorn.Config(notify_app(ctx), host=self.host,
                                port=ctx.config.notify_port if port is None else port,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="notify-server", daemon=True)
        self.port = 0

    def start(self) -> NotifyServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the notify server did not start")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{NOTIFY_PATH}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)

    def __enter__(self) -> NotifyServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
