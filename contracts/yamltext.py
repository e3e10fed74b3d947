"""YAML reading for contract and profile files: libyaml's safe loader when it is there.

The contract's tables and the profile are read at every start of `banksim serve`; the C
loader reads them several times faster than the pure-Python one, with the same safe subset.

Example::

    >>> load("a: 1")
    {'a': 1}
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load`` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_LOADER)
