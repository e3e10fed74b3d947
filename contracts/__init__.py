"""The contract both the simulator and the platform client are tested against.

Data files (OpenAPI documents, the code table, file layouts) live beside this module;
the small Python helpers here read them and implement the shared wire rules (request
signing, money formatting), so neither side re-implements them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def contract_path(name: str) -> Path:
    """Path of a contract data file shipped in this package, e.g. ``bank-api.openapi.yaml``."""
    return Path(str(resources.files("contracts").joinpath(name)))
