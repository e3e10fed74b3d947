"""The platform's notify endpoint: a small ASGI app served by uvicorn in a background thread.

``POST /wechat/notify`` verifies the channel's signature over the raw body, decrypts the
resource and credits the order once (:func:`platform_client.topups.handle_notification`):
200 ``{"code": "SUCCESS"}`` on success or a duplicate; 401 bad signature, 400 malformed or
not a success, 404 unknown order, every one recorded. Bound to 127.0.0.1 by default.

The store work runs in a worker thread, never on the event loop, so the server keeps
reading requests meanwhile; the notifications that arrived while one batch was being
applied are applied together as the next batch, in one store transaction (one commit, a
savepoint each: :func:`platform_client.topups.handle_notifications`), and each is
answered after that commit.

Example::

    with NotifyServer(ctx) as server:      # port 0 in the config: a free port
        print(server.url)                   # http://127.0.0.1:53121/wechat/notify
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeAlias

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from platform_client.context import Context
from platform_client.topups import handle_notifications

NOTIFY_PATH = "/wechat/notify"
START_TIMEOUT_S = 10.0
# Bounds one transaction's size (and the wait of the first notification in it).
MAX_BATCH = 64
Answer: TypeAlias = tuple[int, dict[str, Any]]


class _Batcher:
    """Collects notifications as they arrive and applies them a batch at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._waiting: list[tuple[Mapping[str, str], bytes, asyncio.Future[Answer]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, headers: Mapping[str, str], body: bytes) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((headers, body, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await future

    async def _work(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                answers = await run_in_threadpool(
                    handle_notifications, self.ctx, [(h, b) for h, b, _ in batch])
            except Exception as exc:  # e.g. the commit failed: nobody is told "SUCCESS"
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # the client may have gone away meanwhile
                    future.set_result(answer)


def notify_app(ctx: Context) -> Starlette:
    batcher = _Batcher(ctx)

    async def notify(request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = await batcher.submit(dict(request.headers), body)
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
