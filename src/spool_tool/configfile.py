"""``--config FILE.toml``: global defaults plus one ``[[spool]]`` section per spool job.

The file is parsed with :mod:`tomllib`; every key is looked up in the option schema
(``options.BY_KEY``, dashed spellings normalised) and its value parsed by that option's own
parser, so a value is valid in a file exactly when it is valid on the command line. The
result holds :class:`~spool_tool.options.Setting` values that remember ``FILE:LINE``, so an
error found later (a check across options) still names the line of the key. Every error is a
``ConfigError`` whose ``where`` is ``FILE:LINE`` (only an unreadable file has no line).

Line numbers: tomllib reports none, so :func:`_statements` asks tomllib itself where each
statement starts: a line starts a statement when the text before it is a valid document
(lines inside multi-line strings and arrays never are), and each statement parsed alone
names its key or table. No hand-written TOML lexing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from spool_tool.errors import ConfigError
from spool_tool.options import BY_KEY, BY_NAME, Scope, Setting, parse_setting, suggest_key

SPOOL_TABLE = "spool"
_LINES_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class SpoolSection:
    """One ``[[spool]]`` block: its own settings (globals not merged in), by option name."""

    values: dict[str, Setting]
    line: int  # 1-based line of its [[spool]] header
    key_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    globals: dict[str, Setting]
    spools: tuple[SpoolSection, ...]
    global_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, key: str, spool_index: int | None) -> int | None:
        """The line where ``key`` is set: in spool ``spool_index`` if set there, else in the
        global part (where a spool's value then comes from); ``None`` if it is set nowhere."""
        name = _option_name(key)
        if spool_index is not None and name in self.spools[spool_index].key_lines:
            return self.spools[spool_index].key_lines[name]
        return self.global_lines.get(name)


def load_config_file(path: Path) -> ConfigFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file: {reason}", where=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("invalid TOML: not valid UTF-8", where=f"{path}:{line}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, str(exc)) from None
    return _Loader(path, data, _locate(text)).load()


def _syntax_error(path: Path, message: str) -> ConfigError:
    match = _LINES_RE.search(message)
    if match is None:
        return ConfigError(f"invalid TOML: {message}", where=str(path))
    detail = (message[: match.start()] + message[match.end() :]).strip()
    return ConfigError(
        f"invalid TOML: {detail} (column {match.group(2)})", where=f"{path}:{match.group(1)}"
    )


def _option_name(key: str) -> str:
    """The option a config-file key sets (``hold-for``, ``tags`` -> ``hold_for``, ``tag``);
    the normalised key itself when it names none."""
    normal = key.replace("-", "_")
    option = BY_KEY.get(normal)
    return option.name if option is not None else normal


class _Loader:
    def __init__(self, path: Path, data: dict[str, object], locations: _Locations) -> None:
        self.path, self.data, self.locations = path, data, locations

    def error(self, line: int | None, message: str) -> ConfigError:
        return ConfigError(message, where=f"{self.path}:{line}" if line else str(self.path))

    def load(self) -> ConfigFile:
        where = self.locations
        global_raw = {k: v for k, v in self.data.items() if k != SPOOL_TABLE}
        global_values = self.section(global_raw, where.global_lines, None)
        spools_raw = self.data.get(SPOOL_TABLE)
        if spools_raw is None:
            raise self.error(
                1, "no [[spool]] section: add one with at least dirs = [...] and destination"
            )
        if not isinstance(spools_raw, list) or not where.spool_headers:
            raise self.error(
                where.global_lines.get(SPOOL_TABLE),
                "'spool' must be written as [[spool]] sections (an array of tables)",
            )
        spools: list[SpoolSection] = []
        for index, (raw, header) in enumerate(zip(spools_raw, where.spool_headers, strict=True)):
            lines = where.spool_lines[index]
            values = self.section(raw, lines, header)
            for required in ("dirs", "destination"):
                if required not in values and (required == "dirs" or required not in global_values):
                    raise self.error(header, f"[[spool]] #{index + 1} has no {required!r}")
            spools.append(SpoolSection(values, header, _by_option(lines)))
        return ConfigFile(self.path, global_values, tuple(spools), _by_option(where.global_lines))

    def section(
        self, raw: dict[str, object], lines: dict[str, int], spool_header: int | None
    ) -> dict[str, Setting]:
        """Check and parse one table (the global part if ``spool_header`` is None)."""
        in_spool = spool_header is not None
        values: dict[str, Setting] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            line = lines.get(key, spool_header)
            option = BY_KEY.get(key.replace("-", "_"))
            if option is None:
                raise self.error(line, self.unknown(key, in_spool=in_spool))
            if option.name in spelled:
                first = spelled[option.name]
                raise self.error(line, f"{option.name!r} is set twice ({first!r} and {key!r})")
            spelled[option.name] = key
            if in_spool and option.scope is Scope.RUN:
                raise self.error(
                    line,
                    f"{key!r} applies to the whole run: set it in the global part, "
                    "before the first [[spool]]",
                )
            if not in_spool and option.scope is Scope.SECTION:
                raise self.error(line, f"{key!r} must be set in each [[spool]] section")
            values[option.name] = parse_setting(option, value, key, f"{self.path}:{line}")
        return values

    @staticmethod
    def unknown(key: str, *, in_spool: bool) -> str:
        where = "[[spool]]" if in_spool else "the global part"
        option = BY_NAME.get(key.replace("-", "_"))
        if option is not None:  # --config, --status
            return f"{key!r} is a command line option, not a config-file key"
        return f"unknown key {key!r} in {where}{suggest_key(key.replace('-', '_'), BY_KEY)}"


# --- line numbers -----------------------------------------------------------------------------


@dataclass
class _Locations:
    """The first line of each top-level key (by its spelling) in the global part and in each
    [[spool]] block."""

    global_lines: dict[str, int] = field(default_factory=dict)
    spool_headers: list[int] = field(default_factory=list)
    spool_lines: list[dict[str, int]] = field(default_factory=list)


def _locate(text: str) -> _Locations:
    locations = _Locations()
    target = locations.global_lines
    prefix: tuple[str, ...] = ()
    for line, is_header, path in _statements(text):
        if is_header and path == (SPOOL_TABLE,) and _is_array_header(text, line):
            locations.spool_headers.append(line)
            target, prefix = {}, ()
            locations.spool_lines.append(target)
        elif is_header:
            in_spool = path[0] == SPOOL_TABLE and bool(locations.spool_lines)
            target = locations.spool_lines[-1] if in_spool else locations.global_lines
            prefix = path[1:] if in_spool else path
            if prefix:
                target.setdefault(prefix[0], line)
        else:
            target.setdefault((prefix + path)[0], line)
    return locations


def _is_array_header(text: str, line: int) -> bool:
    return text.splitlines()[line - 1].lstrip().startswith("[[")


def _statements(text: str) -> list[tuple[int, bool, tuple[str, ...]]]:
    """``(line, is_header, key path)`` of every statement of a valid TOML document."""
    starts: list[tuple[int, int]] = []
    offset = 0
    for number, raw in enumerate(text.splitlines(keepends=True), 1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#") and _is_document(text[:offset]):
            starts.append((number, offset))
        offset += len(raw)
    ends = [*(start for _, start in starts[1:]), len(text)][: len(starts)]
    statements = []
    for (line, start), end in zip(starts, ends, strict=True):
        chunk = text[start:end]
        statements.append((line, chunk.lstrip().startswith("["), _path(tomllib.loads(chunk))))
    return statements


def _is_document(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _path(data: object) -> tuple[str, ...]:
    """The key path a lone statement defines: ``[spool.tags]`` -> ("spool", "tags")."""
    parts: list[str] = []
    while isinstance(data, dict) and len(data) == 1:
        key, data = next(iter(data.items()))
        parts.append(key)
        if isinstance(data, list) and data and isinstance(data[-1], dict) and not data[-1]:
            break  # [[array.header]]
        if parts and not isinstance(data, dict):
            break
    return tuple(parts)


def _by_option(lines: dict[str, int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, line in lines.items():
        found.setdefault(_option_name(key), line)
    return found
