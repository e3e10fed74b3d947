"""The baseline server: the same stack as the simulator (FastAPI on uvicorn with uvloop and
httptools) doing the least a JSON API can do: validate a body shaped like an account opening
and answer a small JSON. Run by the benchmarks as::

    python -m uvicorn bench.baseline_app:app --host 127.0.0.1 --port P --loop uvloop \\
        --http httptools --no-access-log --log-level warning
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI(title="banksim bench baseline", docs_url=None, redoc_url=None,
              openapi_url=None)


class OpeningLike(BaseModel):
    request_serial: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str
    id_number: str
    mobile: str
    bound_card_number: str
    bound_card_kind: str


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/baseline")
async def baseline(body: OpeningLike) -> dict[str, Any]:
    return {"code": "0000", "message": "success", "request_serial": body.request_serial}
