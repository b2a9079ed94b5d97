"""Every option of spool_tool, declared once.

An :class:`Option` names everything about one setting: its parser (one function that accepts a
command line or environment string *and* a native TOML value), default, help, group, scope
(whole run or per ``[[spool]]``), environment variable and config-file key. From ``OPTIONS``
come the click command (``cli.py``), ``SPOOL_TOOL_*`` handling (:func:`from_environment`),
config-file validation (``configfile.py``), ``--help`` and the README table (checked by a test).

Spellings: option ``hold_for`` is ``--hold-for`` on the command line, ``SPOOL_TOOL_HOLD_FOR``
in the environment, and ``hold_for`` (or ``hold-for``) in a config file. Precedence, in
:func:`merge`: defaults < file (globals, then the section) < environment < command line.

A parser raises ``ValueError(reason)``; the reader of each source turns it into a
``ConfigError`` that carries the option, the value and where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from spool_tool.config import (
    ACLS,
    ADDRESSING_STYLES,
    CHECKSUMS,
    COMPRESSIONS,
    CONCURRENCY_MODES,
    DEFAULT_CONCURRENCY,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_CONCURRENCY,
    DEFAULT_PART_SIZE,
    ENGINES,
    SSE_MODES,
)
from spool_tool.crashpoints import SEAMS
from spool_tool.errors import ConfigError
from spool_tool.keys import KeyTemplate, short_hostname
from spool_tool.parsers import (
    Parser,
    choice,
    count,
    destination,
    directories,
    directory,
    endpoint_url,
    flag,
    globs,
    header_pairs,
    header_text,
    hostname,
    integer,
    manifest_template,
    marker_suffix,
    min_free,
    minutes,
    pairs,
    rate,
    seconds,
    size,
    template,
    text,
    textfile,
)

ENV_PREFIX = "SPOOL_TOOL_"
LOG_FORMATS = ("text", "json")
MIN_PART_SIZE = 5 << 20


class Group(Enum):
    """Sections of ``--help`` and of the README option table, in this order."""

    SPOOL = "Spool and upload"
    S3 = "S3 object options"
    DAEMON = "Daemon"
    OBSERVABILITY = "Observability"
    CONFIGURATION = "Configuration"


class Scope(Enum):
    RUN = "global"  # the whole run: command line, environment, config file's global part
    SPOOL = "per [[spool]]"  # also a default in the global part, overridden per [[spool]]
    SECTION = "[[spool]] only"  # dirs: each job names its own
    COMMAND = "command line"  # --config, --status: no config-file key


class Style(Enum):
    """How the option appears on the command line."""

    VALUE = "value"
    FLAG = "flag"
    COUNT = "count"
    MULTIPLE = "multiple"  # repeatable KEY=VALUE
    POSITIONAL = "positional"  # SPOOL_DIR... DESTINATION


# --- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    name: str
    parse: Parser
    help: str
    group: Group
    scope: Scope = Scope.SPOOL
    default: object = None
    doc_default: str = ""  # the default as --help and the README show it
    metavar: str | None = None
    style: Style = Style.VALUE
    choices: tuple[str, ...] = ()
    target: str | None = "config"  # "config", "s3" or "app": the frozen value it goes to
    field: str | None = None  # its field there (default: name)
    short: tuple[str, ...] = ()
    key_aliases: tuple[str, ...] = ()  # further config-file keys ("tags")
    env_aliases: tuple[str, ...] = ()  # deprecated spellings, honoured with a warning
    invert: bool = False  # --no-upload sets Config.upload = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def in_file(self) -> bool:
        return self.scope is not Scope.COMMAND

    @property
    def in_environment(self) -> bool:
        return self.style is not Style.POSITIONAL

    def default_value(self) -> object:
        return self.default() if callable(self.default) else self.default


def _checksum_default() -> str:
    # botocore's own switch: stores that reject the newer checksum headers set this.
    if os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION", "").lower() == "when_required":
        return "off"
    return "auto"


def _choices(name: str, choices: tuple[str, ...], help_: str, group: Group, **kw: object) -> Option:
    return Option(
        name,
        choice(choices),
        help_,
        group,
        choices=choices,
        metavar="|".join(choices),
        **kw,  # type: ignore[arg-type]
    )


G, S3, D, OBS, C = Group.SPOOL, Group.S3, Group.DAEMON, Group.OBSERVABILITY, Group.CONFIGURATION
OPTIONS: tuple[Option, ...] = (
    Option("dirs", directories, "Spool directories.", G, Scope.SECTION, style=Style.POSITIONAL,
           target="config", field="spool_dirs"),
    Option("destination", destination, "s3://BUCKET[/PREFIX] or noop.", G,
           style=Style.POSITIONAL),
    Option("hold_for", minutes, "Upload a file only once it is unmodified for this long.", G,
           default=0.0, doc_default="0", metavar="MINUTES"),
    Option("delete_after", minutes, "Cleanup deletes completed files older than this "
           "(0 deletes all).", G, default=60.0, doc_default="60", metavar="MINUTES"),
    Option("min_free", min_free, "Cleanup deletes the oldest completed files first while the "
           "filesystem has less free space than this (before --delete-after).", G,
           metavar="SIZE|PERCENT", doc_default="off"),
    Option("format", template, "Object key template relative to the destination prefix.", G,
           default=KeyTemplate.parse("{fname}"), doc_default="{fname}", metavar="TEMPLATE",
           field="template", env_aliases=("SPOOL_TOOL_TEMPLATE",)),
    Option("manifest", manifest_template, "After each run or daemon cycle that uploaded files, "
           "write one JSON-lines object listing them, at this key template (relative to the "
           "destination prefix; tokens uuid4, uuid1, now, hostname, spool_dir).", G,
           metavar="TEMPLATE", doc_default="off"),
    Option("hostname", hostname, "Value of the {hostname} key token (a pod passes its node's "
           "name).", G, Scope.RUN, default=short_hostname, metavar="NAME",
           doc_default="this machine's short host name"),
    Option("include", globs, "Only files matching one of these gitignore-style patterns "
           "(relative to new/) are eligible (repeatable).", G, default=(), metavar="GLOB",
           style=Style.MULTIPLE, doc_default="every file"),
    Option("exclude", globs, "Files matching any of these patterns are never opened, moved or "
           "deleted (repeatable; wins over --include).", G, default=(), metavar="GLOB",
           style=Style.MULTIPLE, doc_default="none"),
    Option("recursive", flag, "Files in subdirectories of new/ are eligible too (symlinked "
           "directories are never followed); completed/ mirrors their paths.", G,
           default=False, style=Style.FLAG),
    Option("max_depth", integer(1, 1000), "--recursive: descend at most N levels (1: only files "
           "directly in new/).", G, metavar="N", doc_default="no limit"),
    Option("prune_empty_dirs", flag, "--recursive: remove empty directories in new/ older than "
           "--hold-for (never new/ itself).", G, default=False, style=Style.FLAG),
    Option("require_marker", marker_suffix, "NAME is eligible only once NAME+SUFFIX exists; "
           "markers are never uploaded and follow their file into completed/.", G,
           metavar="SUFFIX", field="marker_suffix", doc_default="off"),
    Option("state_dir", directory, "Keep each spool's journal and lock in a subdirectory of DIR "
           "instead of SPOOL_DIR/.spool_tool.", G, metavar="DIR", field="state_root",
           doc_default="in the spool"),
    Option("allow_network_state", flag, "Accept a journal on a network or FUSE filesystem "
           "(NFS, SMB, sshfs...; see the README).", G, default=False, style=Style.FLAG),
    Option("dry_run", flag, "Print what would be uploaded/deleted; change nothing.", G,
           default=False, style=Style.FLAG),
    Option("no_upload", flag, "Skip the upload phase.", G, default=False, style=Style.FLAG,
           field="upload", invert=True),
    Option("no_cleanup", flag, "Skip the cleanup phase.", G, default=False, style=Style.FLAG,
           field="cleanup", invert=True),
    Option("concurrency", integer(1, 1024), "Uploads in flight at once, shared by all spools.",
           G, Scope.RUN, default=DEFAULT_CONCURRENCY, doc_default=str(DEFAULT_CONCURRENCY),
           metavar="N"),
    _choices("concurrency_mode", CONCURRENCY_MODES, "adaptive: fewer S3 requests in flight while "
             "S3 throttles (503 SlowDown), more again after; fixed: always --concurrency.", G,
             scope=Scope.RUN, default="adaptive", doc_default="adaptive", target="s3"),
    Option("bwlimit", rate, "Upload bandwidth limit over all uploads, bytes/s (20M, 512K).", G,
           Scope.RUN, metavar="RATE", target="s3", doc_default="off"),
    Option("endpoint_url", endpoint_url,
           "S3-compatible endpoint (MinIO, Ceph, R2...).", G, metavar="URL", target="s3",
           doc_default="AWS"),
    Option("region", text(), "AWS region.", G, metavar="REGION", target="s3",
           doc_default="boto3's configuration"),
    Option("profile", text(), "AWS shared-config profile.", G, metavar="PROFILE", target="s3",
           doc_default="boto3's default chain"),
    _choices("checksum", CHECKSUMS, "Integrity checksum S3 verifies. auto: CRC64NVME for "
             "single PUTs, CRC32C for multipart parts; 'off' sends Content-MD5 instead.", G,
             default=_checksum_default, doc_default="auto", target="s3"),
    Option("no_clobber", flag, "Never replace an existing object (If-None-Match: *).", G,
           default=False, style=Style.FLAG, target="s3"),
    _choices("addressing_style", ADDRESSING_STYLES, "S3 bucket addressing style.", G,
             default="auto", doc_default="auto", target="s3"),
    Option("multipart_threshold", size(), "Files this large use multipart upload.", G,
           default=DEFAULT_MULTIPART_THRESHOLD, doc_default="16MiB", metavar="SIZE", target="s3"),
    Option("part_size", size(MIN_PART_SIZE), "Multipart part size (>= 5MiB).", G,
           default=DEFAULT_PART_SIZE, doc_default="8MiB", metavar="SIZE", target="s3"),
    Option("part_concurrency", integer(1, 64), "Multipart parts in flight over all files.", G,
           default=DEFAULT_PART_CONCURRENCY, doc_default=str(DEFAULT_PART_CONCURRENCY),
           metavar="N", target="s3"),
    Option("max_attempts", integer(1), "Attempts per S3 request (botocore standard retries).",
           G, default=5, doc_default="5", metavar="N", target="s3"),
    Option("connect_timeout", seconds, "Seconds to wait for a connection to S3.", G,
           default=10.0, doc_default="10", metavar="SECONDS", target="s3"),
    Option("read_timeout", seconds, "Seconds to wait for S3 to answer a request.", G,
           default=60.0, doc_default="60", metavar="SECONDS", target="s3"),
    _choices("engine", ENGINES, "Data path for single PUTs: obstore (fast, native; all options "
             "but --acl), or boto3; auto: obstore where it can send the options.", G,
             default="auto", doc_default="auto", target="s3"),
    Option("storage_class", text(r"[A-Z_]+", "e.g. STANDARD_IA"), "S3 storage class.", S3,
           metavar="CLASS", target="s3", doc_default="bucket default"),
    _choices("sse", SSE_MODES, "Server-side encryption.", S3, target="s3",
             doc_default="bucket default"),
    Option("sse_kms_key_id", header_text, "KMS key for --sse aws:kms.", S3, metavar="KEY",
           target="s3", doc_default="bucket default"),
    _choices("acl", ACLS, "Canned ACL for every object.", S3, target="s3", doc_default="none"),
    Option("content_type", header_text, "Content-Type of every object.", S3,
           metavar="TYPE", target="s3", doc_default="guessed from the file name's extension"),
    Option("metadata", header_pairs, "User metadata (repeatable).", S3, default=(),
           metavar="KEY=VALUE", style=Style.MULTIPLE, target="s3", doc_default="none"),
    Option("preserve_mtime", flag, "Store each file's modification time in the object "
           "metadata key mtime (as rclone does).", S3, default=False, style=Style.FLAG,
           target="s3"),
    Option("tag", pairs, "Object tag (repeatable).", S3, default=(), metavar="KEY=VALUE",
           style=Style.MULTIPLE, target="s3", field="tags", key_aliases=("tags",),
           doc_default="none"),
    _choices("compress", COMPRESSIONS, "Compress before upload; adds .gz/.zst to the key and "
             "sets Content-Encoding.", S3, target="s3", doc_default="off"),
    Option("verify_before_delete", flag, "Cleanup HEADs each object (size, checksum) and keeps "
           "files that no longer match.", S3, default=False, style=Style.FLAG),
    Option("watch", flag, "Run as a daemon: upload files as they land.", D, Scope.RUN,
           default=False, style=Style.FLAG, target="app"),
    Option("interval", seconds, "--watch: periodic rescan and cleanup interval.", D, Scope.RUN,
           default=30.0, doc_default="30", metavar="SECONDS", target="app"),
    Option("metrics_file", textfile, "Write a Prometheus textfile after each run.", OBS,
           Scope.RUN, metavar="PATH", target="app", doc_default="off"),
    Option("metrics_port", integer(0, 65535), "--watch: serve /metrics on PORT.", OBS, Scope.RUN,
           metavar="PORT", target="app", doc_default="off"),
    Option("metrics_address", text(), "Address for --metrics-port.", OBS, Scope.RUN,
           default="127.0.0.1", doc_default="127.0.0.1", metavar="ADDR", target="app"),
    Option("verbose", count, "More output (-v: debug).", OBS, Scope.RUN, default=0,
           style=Style.COUNT, short=("-v",), target=None, doc_default="info"),
    Option("quiet", count, "Less output (-q: warnings, -qq: errors).", OBS, Scope.RUN, default=0,
           style=Style.COUNT, short=("-q",), target=None, doc_default="info"),
    _choices("log_format", LOG_FORMATS, "Log line format on stderr.", OBS, scope=Scope.RUN,
             default="text", doc_default="text", target="app"),
    Option("status", flag, "Show each SPOOL_DIR's backlog (no DESTINATION); change nothing.", C,
           Scope.COMMAND, default=False, style=Style.FLAG, target=None),
    Option("config", text(), "Several spool jobs with their own settings "
           "(contrib/spool_tool.example.toml).", C, Scope.COMMAND, metavar="FILE.toml",
           target=None, doc_default="none"),
)  # fmt: skip
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# Config-file keys -> option (dashed spellings are normalised by configfile before lookup).
BY_KEY: dict[str, Option] = {
    key: option
    for option in OPTIONS
    if option.in_file
    for key in (option.name, *option.key_aliases)
}
BY_ENV: dict[str, Option] = {
    env: option
    for option in OPTIONS
    if option.in_environment
    for env in (option.env, *option.env_aliases)
}


# --- values and where they came from ----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A parsed value and how the user gave it (``spelled`` is None for a default)."""

    value: object
    spelled: str | None = None  # "--hold-for", "SPOOL_TOOL_HOLD_FOR", "hold-for"
    where: str | None = None  # "FILE:LINE" for a config-file value


Layer = Mapping[str, Setting]


def parse_setting(option: Option, raw: object, spelled: str, where: str | None = None) -> Setting:
    """``raw`` parsed by ``option``'s parser; a bad value is a ConfigError naming its source."""
    try:
        value = option.parse(raw)
    except ValueError as exc:
        raise ConfigError(
            str(exc), option=option.name, value=raw, where=where, spelled=spelled
        ) from None
    return Setting(value, spelled, where)


def merge(*layers: Layer) -> dict[str, Setting]:
    """The one precedence order: defaults < each layer in turn. Callers pass the file's
    global part, then its ``[[spool]]`` section, then the environment, then the command line."""
    merged = {
        o.name: Setting(o.default_value()) for o in OPTIONS if o.style is not Style.POSITIONAL
    }
    for layer in layers:
        merged.update(layer)
    return merged


def locate(exc: ConfigError, merged: Layer) -> ConfigError:
    """An error raised while building values, attributed to where its option was set."""
    setting = merged.get(exc.option or "")
    if setting is None or exc.where is not None or setting.spelled is None:
        return exc
    return exc.located(setting.where, setting.spelled)


def fields(merged: Layer, target: str) -> dict[str, object]:
    """Keyword arguments for the frozen value ``target`` ("config", "s3", "app")."""
    return {
        option.field or option.name: (
            not merged[option.name].value if option.invert else merged[option.name].value
        )
        for option in OPTIONS
        if option.target == target and option.name in merged
    }


def from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Setting], list[str]]:
    """``SPOOL_TOOL_*`` settings, and one warning per unknown or deprecated variable."""
    layer: dict[str, Setting] = {}
    warnings: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in SEAMS:  # test seams, not options
            continue
        option = BY_ENV.get(name)
        if option is None:
            warnings.append(_unknown_variable(name))
            continue
        if name != option.env:
            warnings.append(f"{name} is a deprecated spelling of {option.env}")
            if option.env in environ:
                continue  # the current spelling wins
        layer[option.name] = parse_setting(option, environ[name], name)
    return layer, warnings


def _unknown_variable(name: str) -> str:
    # Compared without the shared prefix, which would make every name look close.
    names = {o.env.removeprefix(ENV_PREFIX): o.env for o in OPTIONS if o.in_environment}
    import difflib  # noqa: PLC0415 - only for a misspelled variable (start-up)

    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), list(names), n=1)
    hint = f"; did you mean {names[close[0]]}?" if close else ""
    return f"unknown environment variable {name} ignored{hint}"


def suggest_key(key: str, keys: Iterable[str]) -> str:
    import difflib  # noqa: PLC0415 - only for a misspelled key (start-up)

    close = difflib.get_close_matches(key, list(keys), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
