"""Small ASGI helpers shared by the adapters' direct paths (no framework in between).

The direct paths read a request's body themselves to decide whether they can answer it;
when they cannot, the framework must still see the body, so it is handed over again.

Example::

    body = await read_everything(receive)
    await app(scope, replaying(body, receive), send)
"""

from __future__ import annotations

from starlette.types import Message, Receive


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands ``body`` (already read) over once, then defers to ``receive``."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
