"""Option value parsers: each accepts a command line or environment string *and* a native TOML
value, and returns the typed value or raises ``ValueError(reason)``.

The reason is a fragment ("must be 1..1024"); the caller (``options.parse_setting``) wraps it in
a ``ConfigError`` that names the option, the value and where it came from.
"""

# ruff: noqa: TRY004 - a parser reports every bad value, of any type, as ValueError(reason)
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from spool_tool.bwlimit import parse_rate
from spool_tool.config import MinFree, parse_destination
from spool_tool.errors import ConfigError
from spool_tool.filters import check_pattern
from spool_tool.keys import KeyTemplate, has_control
from spool_tool.sizes import to_bytes

Parser = Callable[[object], object]


def _describe(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    return kinds.get(type(value), "a table" if isinstance(value, dict) else "an array")


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    raise ValueError(f"expected a number, got {_describe(value)}")


def minutes(value: object) -> float:
    number = _number(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number >= 0 (minutes)")
    return number


def seconds(value: object) -> float:
    number = _number(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("must be a number of seconds > 0")
    return number


def integer(low: int, high: int | None = None) -> Parser:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {low}..{high}" if high is not None else f"must be >= {low}")
        return value

    return parse


def size(minimum: int = 0) -> Parser:
    """``8388608``, ``"8MiB"``, ``"8M"``, ``"1.5G"`` -> bytes (``spool_tool.sizes``)."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            number = to_bytes(value)
        else:
            raise ValueError("expected bytes or a size like 8MiB")
        if number < minimum:
            raise ValueError(f"must be at least {minimum >> 20} MiB (S3's minimum part size)")
        return number

    return parse


def text(pattern: str | None = None, expected: str = "") -> Parser:
    """A string; empty means unset (``None``)."""

    def parse(value: object) -> str | None:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_describe(value)}")
        if pattern is not None and value and not re.fullmatch(pattern, value):
            raise ValueError(f"expected {expected}")
        return value or None

    return parse


# The characters a URI may hold (RFC 3986).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def endpoint_url(value: object) -> str | None:
    """``--endpoint-url``: ``http(s)://HOST[:PORT][/PATH]``, checked as a URL (a bad host or
    port would otherwise reach the S3 libraries, whose URL parsers may panic); empty: AWS."""
    parsed = text()(value)
    if parsed is None:
        return None
    url = str(parsed)
    expected = "expected http(s)://HOST[:PORT]"
    try:
        parts = urlsplit(url)  # ValueError: an unclosed '[' of an IPv6 address
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or _unprintable(url):
        raise ValueError(expected)
    if not _URI_CHARS.fullmatch(url):  # a space or a backslash: obstore's URL parser panics
        raise ValueError(f"{expected} (no spaces: characters of a URI only)")
    try:
        port = parts.port  # ValueError: not a number, or over 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("port must be 1..65535")
    return url


def _unprintable(value: str, *, ascii_only: bool = False) -> bool:
    """Whether ``value`` holds a control character (or, ``ascii_only``, any non-ASCII one)."""
    return (ascii_only and not value.isascii()) or has_control(value)


HEADER_TEXT = "must be printable ASCII (no control characters): it is sent as an HTTP header"


def header_text(value: object) -> str | None:
    """A string sent as an HTTP header value (``--content-type``); empty means unset."""
    parsed = text()(value)
    if parsed is not None and _unprintable(str(parsed), ascii_only=True):
        raise ValueError(HEADER_TEXT)
    return parsed if parsed is None else str(parsed)


_HEADER_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # of the HTTP token characters, those S3 keeps


def header_pairs(value: object) -> tuple[tuple[str, str], ...]:
    """:func:`pairs` sent as HTTP headers (``--metadata``: x-amz-meta-KEY: VALUE); a tag's
    key may hold ``: / = @`` and spaces, a header name may not."""
    items = pairs(value)
    for key, val in items:
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(
                f"invalid key {key!r}: it goes in an HTTP header name (letters, digits, _ . + -)"
            )
        if _unprintable(val, ascii_only=True):
            raise ValueError(f"value of {key!r} {HEADER_TEXT}")
    return items


def rate(value: object) -> int | None:
    """``--bwlimit``: ``"20M"``, ``"512K"``, bytes per second (at least 1K); empty: off."""
    if value in ("", None):
        return None
    if isinstance(value, str):
        return parse_rate(value)
    number = size()(value)
    assert isinstance(number, int)
    return parse_rate(str(number))


def min_free(value: object) -> MinFree | None:
    """``"15%"`` (of the filesystem's size, 0 < p < 100) or a size (``"2GiB"``, bytes);
    empty: off."""
    if value == "":
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _number(value.strip()[:-1])
        if not 0 < percent < 100:  # noqa: PLR2004 - a percentage
            raise ValueError("a percentage must be over 0% and under 100%")
        return MinFree(percent=percent)
    try:
        number = size()(value)
    except ValueError:
        raise ValueError("expected a size (2GiB, bytes) or a percentage (15%)") from None
    assert isinstance(number, int)
    return MinFree(bytes=number)


MAX_HOSTNAME_BYTES = 253  # a fully qualified DNS name


def hostname(value: object) -> str:
    """The ``{hostname}`` token's value: 1..253 bytes, no ``/`` (it would add a key level) and
    no control characters (a key cannot hold them)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    if not value or len(value.encode("utf-8", "surrogateescape")) > MAX_HOSTNAME_BYTES:
        raise ValueError(f"must be 1..{MAX_HOSTNAME_BYTES} bytes")
    if "/" in value or _unprintable(value):
        raise ValueError("must not contain '/' or control characters")
    return value


def choice(choices: tuple[str, ...]) -> Parser:
    def parse(value: object) -> str | None:
        if value == "" and "" not in choices:
            return None
        if not isinstance(value, str) or value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return value

    return parse


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError("expected true or false")


def count(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    return integer(0)(value)  # type: ignore[return-value]  # integer() returns an int


_PAIR_KEY = re.compile(r"[A-Za-z0-9_.:/=+@ -]+")


def pairs(value: object) -> tuple[tuple[str, str], ...]:
    """A TOML table of strings, repeated ``KEY=VALUE`` arguments, or (environment) such pairs
    separated by spaces -> ``(("k", "v"), ...)``; a value may itself contain ``=``."""
    if isinstance(value, dict):
        if not all(isinstance(v, str) for v in value.values()):
            raise ValueError('expected a table of strings (e.g. { key = "value" })')
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str | list | tuple):
        words = value.split() if isinstance(value, str) else value
        items = []
        for word in words:
            key, sep, val = str(word).partition("=")
            if not sep:
                raise ValueError("expected KEY=VALUE")
            items.append((key, val))
    else:
        raise ValueError('expected a table of strings (e.g. { key = "value" })')
    for key, _ in items:
        if not _PAIR_KEY.fullmatch(key):
            raise ValueError(f"invalid key {key!r}")
    return tuple(items)


def globs(value: object) -> tuple[str, ...]:
    """Path patterns (``--include``/``--exclude``): a TOML array of strings, repeated options,
    or (environment) one pattern per line. Each is checked as gitignore syntax
    (``filters.check_pattern``)."""
    if isinstance(value, str):
        items: list[object] = [line for line in value.splitlines() if line]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError('expected an array of patterns (e.g. ["*.tmp", ".*"])')
    if not all(isinstance(item, str) for item in items):
        raise ValueError('expected an array of patterns (e.g. ["*.tmp", ".*"])')
    patterns = tuple(str(item) for item in items)
    for pattern in patterns:
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise ValueError(exc if len(patterns) == 1 else f"{pattern!r}: {exc}") from None
    return patterns


def marker_suffix(value: object) -> str | None:
    """``--require-marker``: a file name ending such as ``.done``."""
    parsed = text()(value)
    suffix = None if parsed is None else str(parsed)
    if suffix is not None and ("/" in suffix or "\0" in suffix or suffix in {".", ".."}):
        raise ValueError("must be a file name ending such as .done (no '/')")
    return suffix


def directory(value: object) -> Path | None:
    """A directory path, made absolute now (cron and systemd start elsewhere)."""
    parsed = text()(value)
    if parsed is None:
        return None
    name = str(parsed)
    if "\0" in name:
        raise ValueError("a path cannot contain NUL")
    path = Path(os.path.abspath(name))
    if path.exists() and not path.is_dir():  # else each spool's state would fail alone (exit 1)
        raise ValueError("exists and is not a directory")
    return path


def template(value: object) -> KeyTemplate:
    return _key_template(value, KeyTemplate.parse)


def _key_template(value: object, parse: Callable[[str], KeyTemplate]) -> KeyTemplate:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    try:
        return parse(value)
    except ConfigError as exc:
        raise ValueError(exc.reason) from None


def manifest_template(value: object) -> KeyTemplate | None:
    """``--manifest``: a key template of run tokens with a UUID (``KeyTemplate.parse_manifest``);
    an empty string turns manifests off (``SPOOL_TOOL_MANIFEST=`` over a config file's)."""
    if value == "":
        return None
    return _key_template(value, KeyTemplate.parse_manifest)


def textfile(value: object) -> Path | None:
    """A file to write, in a directory that exists."""
    name = text()(value)
    if name is None:
        return None
    path = Path(str(name))
    if not path.parent.is_dir():
        raise ValueError(f"directory {str(path.parent)!r} does not exist")
    return path


def directories(value: object) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("expected a non-empty list of directory paths (strings)")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError("expected a non-empty list of directory paths (strings)")
    return tuple(Path(item) for item in value)


def destination(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    try:
        return parse_destination(value)
    except ConfigError as exc:
        raise ValueError(exc.reason) from None
