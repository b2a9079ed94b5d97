"""Object key templates: parsed and validated once, rendered per file.

The template is a ``str.format``-style string restricted to a whitelist of bare field names:
no positional fields, attribute or index access, conversions or format specs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import re
import socket
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from spool_tool.errors import ConfigError, FileError

MAX_KEY_BYTES = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f]")  # ASCII control characters: refused in keys

_TIME_PARTS = ("YYYY", "MM", "DD", "hh", "mm", "ss")
TIME_TOKENS = tuple(f"{kind}_{part}" for kind in ("m", "c") for part in _TIME_PARTS)
TOKENS: tuple[str, ...] = (
    *TIME_TOKENS, "uuid1", "uuid4", "fname", "now", "spool_dir", "hostname", "fname_hash",
    "relpath", "reldir",
)  # fmt: skip
# The tokens of a --manifest template: those of the run, not of a file.
MANIFEST_TOKENS: tuple[str, ...] = ("uuid1", "uuid4", "now", "spool_dir", "hostname")
# Tokens whose value is never empty: a template with one of them cannot render an empty key.
_NEVER_EMPTY = frozenset(TOKENS) - {"spool_dir", "reldir"}
# Tokens that tell apart two files of one directory, or (for a nested spool) of the tree.
_UNIQUE_FLAT = frozenset({"fname", "relpath", "uuid1", "uuid4"})
_UNIQUE_NESTED = frozenset({"relpath", "uuid1", "uuid4"})
# What an empty {reldir} renders as until the segments are joined: no file name, token value
# or template (a config value) can hold NUL.
_EMPTY_DIR = "\0"


@dataclass(frozen=True)
class FileFacts:
    """What a key may be built from, gathered when the file is claimed."""

    name: str
    spool_dir: str
    mtime: float
    ctime: float
    now: float
    hostname: str = ""  # ``Config.hostname``: --hostname, else this machine's short name
    relpath: str = ""  # the path relative to new/ (``/``-separated); "" means ``name``


def short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


def fname_hash(name: str) -> str:
    """Two hex digits of SHA-256 of the file name's bytes: stable for a name (a rerun renders
    the same key), spread evenly over 256 values, so keys starting with it fall into 256 S3
    prefixes instead of one hot date partition."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:2]


def creation_time(st: os.stat_result) -> float:
    """Birth time where the platform reports it (BSD, macOS), else the inode change time.

    On Linux, Python's ``os.stat`` has no birth time, so ``c_*`` tokens use ``st_ctime``.
    """
    birth: float | None = getattr(st, "st_birthtime", None)
    return birth if birth is not None else st.st_ctime


def normalise_spool_dir(given: str) -> str:
    """``/var/spool/app/`` -> ``var/spool/app`` (normalised, slashes stripped at both ends)."""
    return posixpath.normpath(given).strip("/")


@dataclass(frozen=True)
class KeyTemplate:
    text: str
    fields: frozenset[str]
    # The date token families ("m", "c") the template uses: decided once, not per file.
    _stamps: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        used = tuple(k for k in ("m", "c") if any(f.startswith(f"{k}_") for f in self.fields))
        object.__setattr__(self, "_stamps", used)

    @classmethod
    def parse(
        cls, text: str, *, tokens: tuple[str, ...] = TOKENS, option: str = "format"
    ) -> KeyTemplate:
        """Validate ``text`` against ``tokens`` (``MANIFEST_TOKENS`` for ``--manifest``); a bad
        template is a ``ConfigError`` naming ``option`` and the template."""

        def bad(reason: str) -> ConfigError:
            return ConfigError(reason, option=option, value=text)

        valid = ", ".join(tokens)
        fields: set[str] = set()
        literal = ""
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise bad(f"{exc} (valid tokens: {valid})") from exc
        for lit, field, spec, conversion in parsed:
            literal += lit
            if field is None:
                continue
            if field == "" or field.isdigit():
                raise bad(f"positional field '{{{field}}}' is not allowed (valid tokens: {valid})")
            if field not in tokens:
                raise bad(f"unknown token {{{field}}} (valid tokens: {valid})")
            if conversion or spec:
                raise bad(f"conversions and format specs are not allowed in {{{field}}}")
            fields.add(field)
        if not literal and not (fields & _NEVER_EMPTY):
            raise bad("it can render an empty key")
        segment = bad_segment(text)
        if segment is not None:
            raise bad(segment)
        return cls(text, frozenset(fields))

    @classmethod
    def parse_manifest(cls, text: str) -> KeyTemplate:
        """A ``--manifest`` template: run tokens only (no file is rendered), and a UUID, so that
        no two manifests (two spools, two cycles in one second, two hosts) share a key."""
        template = cls.parse(text, tokens=MANIFEST_TOKENS, option="manifest")
        if not template.fields & {"uuid1", "uuid4"}:
            raise ConfigError(
                "a manifest key needs {uuid4} (or {uuid1}) so that no two manifests share one",
                option="manifest",
                value=text,
            )
        return template

    @property
    def is_unique_per_file(self) -> bool:
        """False when two files could render the same key (e.g. a constant template)."""
        return bool(self.fields & _UNIQUE_FLAT)

    @property
    def is_unique_per_nested_file(self) -> bool:
        """As ``is_unique_per_file`` for ``--recursive``, where two directories may each hold
        a file of one name: ``{relpath}``, ``{uuid*}``, or ``{fname}`` with ``{reldir}``."""
        return bool(self.fields & _UNIQUE_NESTED) or {"fname", "reldir"} <= self.fields

    def render(self, facts: FileFacts) -> str:
        values: dict[str, str] = {}
        for kind, stamp in (("m", facts.mtime), ("c", facts.ctime)):
            if kind in self._stamps:
                dt = _utc(stamp, kind)
                values[f"{kind}_YYYY"] = f"{dt.year:04d}"
                values[f"{kind}_MM"] = f"{dt.month:02d}"
                values[f"{kind}_DD"] = f"{dt.day:02d}"
                values[f"{kind}_hh"] = f"{dt.hour:02d}"
                values[f"{kind}_mm"] = f"{dt.minute:02d}"
                values[f"{kind}_ss"] = f"{dt.second:02d}"
        if "uuid1" in self.fields:
            values["uuid1"] = str(uuid.uuid1())
        if "uuid4" in self.fields:
            values["uuid4"] = str(uuid.uuid4())
        if "hostname" in self.fields:
            values["hostname"] = facts.hostname or short_hostname()
        if "fname_hash" in self.fields:
            values["fname_hash"] = fname_hash(facts.name)
        values["fname"] = facts.name
        values["now"] = str(int(facts.now))
        values["spool_dir"] = facts.spool_dir
        relpath = facts.relpath or facts.name
        values["relpath"] = relpath
        values["reldir"] = relpath.rpartition("/")[0] or _EMPTY_DIR
        rendered = self.text.format_map(values)
        if "reldir" in self.fields and values["reldir"] == _EMPTY_DIR:
            return _drop_empty_dir(rendered)
        return rendered


def _drop_empty_dir(rendered: str) -> str:
    """An empty ``{reldir}`` (a file directly in ``new/``) renders as nothing, and a path
    segment it leaves empty is dropped with its ``/``: ``{reldir}/{fname}`` -> ``x.json``,
    ``a/{reldir}/{fname}`` -> ``a/x.json``, ``{reldir}-{fname}`` -> ``-x.json``. So no key
    gets ``//`` or a leading ``/`` from it."""
    segments = rendered.split("/")
    only_dir = [seg for seg in segments if not (seg and not seg.strip(_EMPTY_DIR))]
    return "/".join(seg.replace(_EMPTY_DIR, "") for seg in only_dir)


def _utc(stamp: float, kind: str) -> datetime:
    """``stamp`` as a UTC date; ``FileError`` for a time outside the years 1..9999 (tmpfs,
    btrfs and xfs store such times; Python's dates cannot hold them). Before 1970 is fine."""
    try:
        return datetime.fromtimestamp(stamp, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        what = "modification" if kind == "m" else "creation"
        raise FileError(
            f"{what} time {stamp:.0f} (Unix seconds) is outside the years 1-9999, so the "
            f"{{{kind}_*}} tokens cannot be rendered; give the file a real time (touch)"
        ) from exc


def bad_segment(path: str) -> str | None:
    """Why the '/'-separated ``path`` (a key template or a destination prefix, without its
    leading and trailing '/') cannot be a key's path, or None. S3 stores ``a//b``, ``./b`` and
    ``../b`` as they are, but obstore refuses them for every file, a key ending in '/' is a
    folder marker to most tools, and ``..`` reads as a way out of the prefix."""
    if path.startswith("/"):
        return "a key must not start with '/'"
    segments = path.split("/")
    if "" in segments:
        return "empty path segment ('//' or a trailing '/')"
    if "." in segments or ".." in segments:
        return "'.' or '..' as a path segment"
    return None


def full_key(prefix: str, rendered: str) -> str:
    """Join the destination prefix (a directory, may be empty) and a rendered key; validate it.

    Raises ``FileError`` for a key S3 cannot hold: empty, leading ``/``, over 1024 bytes,
    not valid UTF-8 (an undecodable file name), or with control characters. The message holds
    the key as it is (not ``repr``): whoever shows it escapes it, once (``display_name``).
    """
    key = f"{prefix}{rendered}"
    if not rendered or rendered.startswith("/"):
        raise FileError(f"rendered key '{key}' is empty or starts with '/'")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FileError(f"file name is not valid UTF-8, cannot build a key ('{key}')") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise FileError(f"key is {len(encoded)} bytes, over S3's {MAX_KEY_BYTES}-byte limit")
    if has_control(key):
        raise FileError(f"key '{key}' contains control characters; rename the file")
    return key


def has_control(text: str) -> bool:
    """Whether ``text`` holds an ASCII control character (refused in keys, header values and
    the host name token)."""
    return _CONTROL.search(text) is not None


def whole_seconds(ns: int) -> int:
    """Truncate (never round) a nanosecond timestamp: 23:59:59.9999995 stays on its day."""
    return ns // 1_000_000_000
