"""``--config FILE.toml``: global defaults plus one ``[[spool]]`` section per spool job.

The file is parsed with :mod:`tomllib` and checked for shape only: known keys, TOML types,
choices, required ``dirs``/``destination``. Semantics that :class:`spool_tool.config.Config`
already checks (ranges, templates, destinations, sizes) are left to the caller, which builds a
``Config`` per spool and prefixes its ``ConfigError`` with ``path:line`` from
:meth:`ConfigFile.line_of`.

Keys are the command line option names with ``-`` spelled ``_`` (the dashed spelling is
accepted and normalised). ``metadata`` and ``tags`` are TOML tables of strings and come back
as tuples of ``(key, value)`` pairs, like :func:`spool_tool.config.parse_pairs` returns.
Every error is a ``ConfigError`` whose message starts with ``"{path}:{line}: "`` (only an
unreadable file has no line).

Line numbers come from a small scanner over the raw text (tomllib reports none): it walks the
statements (table headers and ``key = value`` lines), skipping over values, so strings and
arrays that span lines or contain ``[[spool]]``-looking text do not confuse it.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spool_tool.config import ACLS, CHECKSUMS
from spool_tool.errors import ConfigError

SPOOL_TABLE = "spool"

GLOBAL_ONLY_KEYS = frozenset(
    {
        "log_format",
        "verbose",
        "quiet",
        "watch",
        "interval",
        "metrics_file",
        "metrics_port",
        "metrics_address",
        "concurrency",
    }
)
SPOOL_KEYS = frozenset(
    {
        "dirs",
        "destination",
        "format",
        "hold_for",
        "delete_after",
        "endpoint_url",
        "region",
        "profile",
        "checksum",
        "no_clobber",
        "addressing_style",
        "multipart_threshold",
        "part_size",
        "max_attempts",
        "storage_class",
        "sse",
        "sse_kms_key_id",
        "acl",
        "content_type",
        "metadata",
        "tags",
        "compress",
        "verify_before_delete",
        "no_upload",
        "no_cleanup",
        "dry_run",
    }
)
# ``dirs`` names the spool itself: a global default for it would make every spool the same.
SPOOL_ONLY_KEYS = frozenset({"dirs"})
GLOBAL_KEYS = GLOBAL_ONLY_KEYS | (SPOOL_KEYS - SPOOL_ONLY_KEYS)

_CHOICES: dict[str, tuple[str, ...]] = {
    "checksum": CHECKSUMS,
    "addressing_style": ("auto", "path", "virtual"),
    "sse": ("AES256", "aws:kms"),
    "acl": ACLS,
    "compress": ("gzip", "zstd"),
    "log_format": ("text", "json"),
}
_STRINGS = frozenset(
    {
        "destination",
        "format",
        "endpoint_url",
        "region",
        "profile",
        "storage_class",
        "sse_kms_key_id",
        "content_type",
        "metrics_file",
        "metrics_address",
    }
)
_NUMBERS = frozenset({"hold_for", "delete_after", "interval"})
_INTEGERS = frozenset({"max_attempts", "concurrency", "metrics_port"})
_COUNTS = frozenset({"verbose", "quiet"})
_BOOLEANS = frozenset({"no_clobber", "verify_before_delete", "no_upload", "no_cleanup", "dry_run"})
_BOOLEANS_GLOBAL = frozenset({"watch"})
_SIZES = frozenset({"multipart_threshold", "part_size"})
_PAIRS = frozenset({"metadata", "tags"})
_LINES_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class SpoolSection:
    """One ``[[spool]]`` block: its own values (globals not merged in), normalised keys."""

    values: dict[str, object]
    line: int  # 1-based line of its [[spool]] header
    key_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    globals: dict[str, object]
    spools: tuple[SpoolSection, ...]
    global_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, key: str, spool_index: int | None) -> int | None:
        """The line where ``key`` is set: in spool ``spool_index`` if set there, else in the
        global part (where a spool's value then comes from); ``None`` if it is set nowhere."""
        name = _normalise(key)
        if spool_index is not None:
            line = self.spools[spool_index].key_lines.get(name)
            if line is not None:
                return line
        return self.global_lines.get(name)


def load_config_file(path: Path) -> ConfigFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: invalid TOML: not valid UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, str(exc)) from None
    return _Loader(path, text, data).load()


def _syntax_error(path: Path, message: str) -> ConfigError:
    match = _LINES_RE.search(message)
    if match is None:
        return ConfigError(f"{path}: invalid TOML: {message}")
    detail = (message[: match.start()] + message[match.end() :]).strip()
    return ConfigError(f"{path}:{match.group(1)}: invalid TOML: {detail} (column {match.group(2)})")


def _normalise(key: str) -> str:
    return key.replace("-", "_")


class _Loader:
    def __init__(self, path: Path, text: str, data: dict[str, object]) -> None:
        self.path = path
        self.data = data
        self.locations = _locate(text)

    def error(self, line: int | None, message: str) -> ConfigError:
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return ConfigError(f"{where}: {message}")

    def load(self) -> ConfigFile:
        locations = self.locations
        global_data = {k: v for k, v in self.data.items() if k != SPOOL_TABLE}
        global_values = self.section(global_data, locations.global_lines, None)
        spools_raw = self.data.get(SPOOL_TABLE)
        if spools_raw is None:
            raise self.error(
                1, "no [[spool]] section: add one with at least dirs = [...] and destination"
            )
        spool_line = locations.global_lines.get(SPOOL_TABLE)
        if not isinstance(spools_raw, list) or not locations.spool_headers:
            raise self.error(
                spool_line,
                "'spool' must be written as [[spool]] sections (an array of tables)",
            )
        assert len(spools_raw) == len(locations.spool_headers)
        spools: list[SpoolSection] = []
        for index, (raw, header) in enumerate(
            zip(spools_raw, locations.spool_headers, strict=True)
        ):
            assert isinstance(raw, dict)
            lines = locations.spool_lines[index]
            values = self.section(raw, lines, header)
            for required in ("dirs", "destination"):
                if required not in values and (
                    required in SPOOL_ONLY_KEYS or required not in global_values
                ):
                    raise self.error(header, f"[[spool]] #{index + 1} has no {required!r}")
            spools.append(
                SpoolSection(values=values, line=header, key_lines=_normalised_only(lines))
            )
        return ConfigFile(
            path=self.path,
            globals=global_values,
            spools=tuple(spools),
            global_lines=_normalised_only(locations.global_lines),
        )

    def section(
        self, raw: dict[str, object], lines: dict[str, int], spool_header: int | None
    ) -> dict[str, object]:
        """Check and normalise one table (the global part if ``spool_header`` is None)."""
        in_spool = spool_header is not None
        where = "[[spool]]" if in_spool else "the global part"
        allowed = SPOOL_KEYS if in_spool else GLOBAL_KEYS
        values: dict[str, object] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            name = _normalise(key)
            line = lines.get(key, spool_header)
            if name in spelled:
                raise self.error(line, f"{name!r} is set twice ({spelled[name]!r} and {key!r})")
            spelled[name] = key
            if name not in allowed:
                if in_spool and name in GLOBAL_ONLY_KEYS:
                    raise self.error(
                        line,
                        f"{key!r} applies to the whole run: set it in the global part, "
                        "before the first [[spool]]",
                    )
                if not in_spool and name in SPOOL_ONLY_KEYS:
                    raise self.error(line, f"{key!r} must be set in each [[spool]] section")
                valid = ", ".join(sorted(allowed))
                raise self.error(line, f"unknown key {key!r} in {where}; valid keys: {valid}")
            values[name] = self.check(name, value, line)
        return values

    def check(self, name: str, value: object, line: int | None) -> object:
        def fail(expected: str) -> ConfigError:
            return self.error(line, f"{name} must be {expected}, got {_show(value)}")

        result: object = value
        if name == "dirs":
            if not isinstance(value, list) or not value:
                raise fail("a non-empty list of directory paths (strings)")
            if not all(isinstance(item, str) and item for item in value):
                raise fail("a non-empty list of directory paths (strings)")
        elif name in _PAIRS:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise fail('a table of strings (e.g. { key = "value" })')
            result = tuple((str(k), str(v)) for k, v in value.items())
        elif name in _CHOICES:
            choices = _CHOICES[name]
            if not isinstance(value, str) or value not in choices:
                raise fail("one of " + ", ".join(repr(c) for c in choices))
        else:
            check, expected = _SCALAR_CHECKS[_kind(name)]
            if not check(value):
                raise fail(expected)
        return result


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value: object) -> bool:
    return isinstance(value, str) or _is_integer(value)


_SCALAR_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "number": (_is_number, "a number (minutes)"),
    "integer": (_is_integer, "an integer"),
    "count": (lambda v: isinstance(v, int), "an integer or a boolean"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "size": (_is_size, 'an integer number of bytes or a size string like "16MiB"'),
}


def _kind(name: str) -> str:
    for kind, names in (
        ("string", _STRINGS),
        ("number", _NUMBERS),
        ("integer", _INTEGERS),
        ("count", _COUNTS),
        ("boolean", _BOOLEANS | _BOOLEANS_GLOBAL),
        ("size", _SIZES),
    ):
        if name in names:
            return kind
    raise AssertionError(name)  # every allowed key has a kind (tests check it)


def _show(value: object) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}.get(
        type(value), "table" if isinstance(value, dict) else type(value).__name__
    )
    text = repr(value)
    if len(text) > 60:  # noqa: PLR2004 - keep the one-line error short
        text = text[:57] + "..."
    return f"{kind} {text}"


# --- line numbers ---------------------------------------------------------------------------


@dataclass
class _Locations:
    """Where each top-level key is set: in the global part, and in each [[spool]] block (keyed
    by normalised name and by spelling, see ``_record``)."""

    global_lines: dict[str, int] = field(default_factory=dict)
    spool_headers: list[int] = field(default_factory=list)
    spool_lines: list[dict[str, int]] = field(default_factory=list)


def _locate(text: str) -> _Locations:
    """Attribute every statement of an (already valid) TOML document to the global part or to
    a [[spool]] block, and record the first line of each top-level key there."""
    locations = _Locations()
    target = locations.global_lines
    prefix: tuple[str, ...] = ()
    for kind, path, line in _Statements(text).scan():
        if kind == "array" and path == (SPOOL_TABLE,):
            locations.spool_headers.append(line)
            target = {}
            locations.spool_lines.append(target)
            prefix = ()
        elif kind in {"array", "table"}:
            if path[0] == SPOOL_TABLE and locations.spool_lines:
                # [spool.metadata]: a sub-table of the last [[spool]].
                target = locations.spool_lines[-1]
                prefix = path[1:]
            else:
                target = locations.global_lines
                prefix = path
            _record(target, prefix[0], line)
        else:
            _record(target, (prefix + path)[0], line)
    return locations


def _record(lines: dict[str, int], key: str, line: int) -> None:
    """First line of ``key`` under its normalised name, and under its own spelling (so that an
    error about the second of ``hold-for``/``hold_for`` points at that one)."""
    lines.setdefault(_normalise(key), line)
    lines.setdefault(key, line)


def _normalised_only(lines: dict[str, int]) -> dict[str, int]:
    return {key: line for key, line in lines.items() if key == _normalise(key)}


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Statements:
    """A lenient statement scanner for TOML that tomllib has already accepted."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, char in enumerate(text) if char == "\n"]

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, offset: int = 0) -> str:
        pos = self.pos + offset
        return self.text[pos] if pos < len(self.text) else ""

    def scan(self) -> list[tuple[str, tuple[str, ...], int]]:
        statements: list[tuple[str, tuple[str, ...], int]] = []
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return statements
            line = self.line_at(self.pos)
            if self.peek() == "[":
                kind = "array" if self.peek(1) == "[" else "table"
                self.pos += 2 if kind == "array" else 1
                path = self.key()
                self.skip_blank(newlines=False)
                while self.peek() == "]":
                    self.pos += 1
                statements.append((kind, path, line))
            else:
                path = self.key()
                self.skip_blank(newlines=False)
                if self.peek() == "=":
                    self.pos += 1
                self.skip_value()
                statements.append(("key", path, line))

    def skip_blank(self, *, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            start = self.pos
            char = self.peek()
            if char in {'"', "'"}:
                self.skip_string()
                parts.append(_decode_quoted_key(self.text[start : self.pos]))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                end = match.end() if match else self.pos + 1
                parts.append(self.text[start:end])
                self.pos = end
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def skip_value(self) -> None:
        depth = 0
        while self.pos < len(self.text):
            char = self.peek()
            if char in {'"', "'"}:
                self.skip_string()
                continue
            if char == "#":
                self.skip_comment()
                continue
            if char == "\n" and depth <= 0:
                return
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            self.pos += 1

    def skip_string(self) -> None:
        quote = self.peek()
        if self.text.startswith(quote * 3, self.pos):
            end = self.text.find(quote * 3, self.pos + 3)
            while quote == '"' and end > 0 and _escaped(self.text, end):
                end = self.text.find(quote * 3, end + 1)
            end = len(self.text) if end < 0 else end + 3
            # Up to two quotes right before the closing delimiter belong to the string.
            extra = 0
            while extra < 2 and end < len(self.text) and self.text[end] == quote:  # noqa: PLR2004
                end += 1
                extra += 1
            self.pos = end
            return
        pos = self.pos + 1
        while pos < len(self.text) and self.text[pos] != quote:
            pos += 2 if quote == '"' and self.text[pos] == "\\" else 1
        self.pos = pos + 1


def _escaped(text: str, pos: int) -> bool:
    """Whether the character at ``pos`` is escaped by an odd run of backslashes."""
    count = 0
    while pos - count - 1 >= 0 and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _decode_quoted_key(raw: str) -> str:
    try:
        value = tomllib.loads(f"k = {raw}")["k"]
    except tomllib.TOMLDecodeError:
        return raw.strip("\"'")
    return value if isinstance(value, str) else raw
