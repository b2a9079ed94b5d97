"""Sizes on the command line: ``8388608``, ``512K``, ``8MiB``, ``1.5G`` -> bytes.

Units are binary (``K`` = 1024, as ``cli.parse_size`` has always read them, and as rclone reads
``--bwlimit 10M``); ``i`` and ``B`` are optional (``M``, ``MB``, ``MiB`` are the same). A
fraction is allowed with a unit (``1.5G``); the result is rounded down to whole bytes.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def to_bytes(text: str) -> int:
    """Bytes for ``text``; ``ValueError`` (the reason, for the option's parser) if not a size."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError("expected bytes or a size like 8MiB")
    number, unit = match.group(1), (match.group(2) or "b").lower()[:1]
    if "." in number and unit == "b":
        raise ValueError("a fraction needs a unit (K, M, G, T)")
    return int(float(number) * _UNITS[unit])
