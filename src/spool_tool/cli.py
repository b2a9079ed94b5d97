"""Command line: argv -> Config -> run -> exit status. The only module that uses click.

Exit status: 0 all eligible files shipped (or nothing to do); 1 a file, deletion or spool dir
failed, or the run stopped on a fatal S3 error; 2 usage or configuration error (nothing was
touched); 128+N when stopped by signal N.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, cast

import click

from spool_tool import __version__
from spool_tool.app import AppOptions
from spool_tool.config import (
    ACLS,
    CHECKSUMS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    Config,
    S3Options,
    parse_destination,
    parse_pairs,
)
from spool_tool.errors import ConfigError
from spool_tool.keys import KeyTemplate
from spool_tool.observe.logs import LogHandler, LogWriter, level_for

PROG = "spool_tool"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str) -> int:
    """``8388608``, ``8MiB``, ``8M``, ``512KiB`` -> bytes (binary units)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"invalid {option} {text!r}: expected bytes or a size like 8MiB")
    number, unit = int(match.group(1)), (match.group(2) or "b").lower()[:1]
    return number * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def _checksum_default() -> str:
    # botocore's own switch: stores that reject the newer checksum headers set this.
    if os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION", "").lower() == "when_required":
        return "off"
    return "auto"


CONTEXT = {"auto_envvar_prefix": "SPOOL_TOOL", "help_option_names": ["-h", "--help"]}


@click.command(
    context_settings=CONTEXT,
    epilog="Every option can also be set as SPOOL_TOOL_<OPTION> (e.g. SPOOL_TOOL_HOLD_FOR=5).",
)
@click.argument("paths", nargs=-1, metavar="SPOOL_DIR... DESTINATION")
@click.option(
    "--hold-for",
    type=float,
    default=0.0,
    show_default=True,
    metavar="MINUTES",
    help="Upload a file only once it is unmodified for this long.",
)
@click.option(
    "--delete-after",
    type=float,
    default=60.0,
    show_default=True,
    metavar="MINUTES",
    help="Cleanup deletes completed files older than this (0 deletes all).",
)
@click.option(
    "--format",
    "template",
    envvar="SPOOL_TOOL_FORMAT",
    default="{fname}",
    show_default=True,
    metavar="TEMPLATE",
    help="Object key template relative to the destination prefix.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what would be uploaded/deleted; change nothing."
)
@click.option("--no-upload", is_flag=True, help="Skip the upload phase.")
@click.option("--no-cleanup", is_flag=True, help="Skip the cleanup phase.")
@click.option(
    "--concurrency",
    type=int,
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    metavar="N",
    help="Uploads in flight at once.",
)
@click.option("--endpoint-url", metavar="URL", help="S3-compatible endpoint (MinIO, Ceph, R2...).")
@click.option("--region", metavar="REGION", help="AWS region (default: boto3's configuration).")
@click.option("--profile", metavar="PROFILE", help="AWS shared-config profile.")
@click.option(
    "--checksum",
    type=click.Choice(CHECKSUMS),
    default=_checksum_default,
    show_default="auto",
    help="Integrity checksum S3 verifies. auto: CRC64NVME on fast-path PUTs, CRC32 on boto3 "
    "requests; 'off' sends Content-MD5 instead (for stores that reject x-amz-checksum headers).",
)
@click.option(
    "--no-clobber",
    is_flag=True,
    help="Never replace an existing object (conditional write If-None-Match: *).",
)
@click.option(
    "--addressing-style",
    type=click.Choice(["auto", "path", "virtual"]),
    default="auto",
    show_default=True,
    help="S3 bucket addressing style.",
)
@click.option(
    "--multipart-threshold",
    default=str(DEFAULT_MULTIPART_THRESHOLD >> 20) + "MiB",
    show_default=True,
    metavar="SIZE",
    help="Files this large use multipart upload.",
)
@click.option(
    "--part-size",
    default=str(DEFAULT_PART_SIZE >> 20) + "MiB",
    show_default=True,
    metavar="SIZE",
    help="Multipart part size (>= 5MiB).",
)
@click.option(
    "--max-attempts",
    type=int,
    default=5,
    show_default=True,
    metavar="N",
    help="Attempts per S3 request (botocore standard retry mode, with backoff).",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "obstore", "boto3"]),
    default="auto",
    show_default=True,
    help="Data path for single PUTs: obstore (fast, native) where the options allow, or boto3.",
)
@click.option("--storage-class", metavar="CLASS", help="S3 storage class (e.g. STANDARD_IA).")
@click.option("--sse", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption.")
@click.option("--sse-kms-key-id", metavar="KEY", help="KMS key for --sse aws:kms.")
@click.option("--acl", type=click.Choice(ACLS), help="Canned ACL for every object.")
@click.option("--content-type", metavar="TYPE", help="Content-Type (default: from the extension).")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="User metadata (repeatable).")
@click.option("--tag", multiple=True, metavar="KEY=VALUE", help="Object tag (repeatable).")
@click.option(
    "--compress",
    type=click.Choice(["gzip", "zstd"]),
    help="Compress before upload; adds .gz/.zst to the key and sets Content-Encoding.",
)
@click.option(
    "--verify-before-delete",
    is_flag=True,
    help="Cleanup HEADs each object (size, checksum) and keeps files that no longer match.",
)
@click.option("--watch", is_flag=True, help="Run as a daemon: upload files as they land.")
@click.option(
    "--interval",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="--watch: periodic rescan and cleanup interval.",
)
@click.option(
    "--status",
    is_flag=True,
    help="Show each SPOOL_DIR's backlog (no DESTINATION) and change nothing.",
)
@click.option("--metrics-file", metavar="PATH", help="Write a Prometheus textfile after each run.")
@click.option("--metrics-port", type=int, metavar="PORT", help="--watch: serve /metrics on PORT.")
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address for --metrics-port.",
)
@click.option(
    "--config",
    "config",
    metavar="FILE.toml",
    help="Several spool jobs with their own settings (contrib/spool_tool.example.toml).",
)
@click.option("-v", "--verbose", count=True, help="More output (-v: debug).")
@click.option("-q", "--quiet", count=True, help="Less output (-q: warnings, -qq: errors).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format on stderr.",
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def command(paths: tuple[str, ...], **options: Any) -> int:
    """Upload eligible files from SPOOL_DIR/new to DESTINATION (s3://BUCKET[/PREFIX] or noop),
    move each to SPOOL_DIR/completed once S3 confirmed it, then delete old completed files."""
    from spool_tool import app  # noqa: PLC0415 - keep --help and usage errors fast

    if options["config"]:
        if paths and not options["status"]:
            raise ConfigError("with --config, the spool dirs and destinations are in the file")
        jobs = configs_from_file(Path(options["config"]), options)
        options = {**options, **jobs[0][1]} if jobs else options
        configs = [config for config, _ in jobs]
    else:
        configs = [] if options["status"] else [build_config(paths, options)]
    if options["status"]:
        if len(paths) > 1 and _looks_like_destination(paths[-1]):
            paths = paths[:-1]  # `--status SPOOL s3://...`: the destination is not a spool dir
        spools = [Path(p) for p in paths] or [s for c in configs for s in c.spool_dirs]
        if not spools:
            raise ConfigError("--status needs at least one SPOOL_DIR")
        ok = app.show_status(spools, options["hold_for"], options["log_format"])
        return EXIT_OK if ok else EXIT_FAILED
    app_options = build_app_options(options)
    writer = LogWriter(fmt=app_options.log_format, level=app_options.level)
    _route_library_logs(writer)
    for config in configs:
        if not config.template.is_unique_per_file:
            writer.write(
                logging.WARNING,
                "config",
                f"--format {config.template.text!r} has no {{fname}}/{{uuid4}}/{{uuid1}}: "
                "files may overwrite each other's objects",
            )
    summary = app.execute(configs, app_options, writer)
    if summary.signal is not None:
        return 128 + summary.signal
    return EXIT_OK if summary.ok else EXIT_FAILED


# Config-file keys whose click parameter has another name.
_FILE_TO_PARAM = {"format": "template", "tags": "tag"}


def configs_from_file(path: Path, options: dict[str, Any]) -> list[tuple[Config, dict[str, Any]]]:
    """One Config per ``[[spool]]``: defaults < file (globals, then the section) < environment
    < command line. Errors name the file and line. Returns each Config with its merged options.
    """
    from spool_tool.configfile import load_config_file  # noqa: PLC0415

    loaded = load_config_file(path)
    ctx = click.get_current_context()
    explicit = {
        name
        for name in options
        if ctx.get_parameter_source(name)
        in {click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT}
    }
    jobs: list[tuple[Config, dict[str, Any]]] = []
    for index, section in enumerate(loaded.spools):
        merged = dict(options)
        for key, raw in (*loaded.globals.items(), *section.values.items()):
            name = _FILE_TO_PARAM.get(key, key)
            if key not in {"dirs", "destination"} and name not in explicit:
                merged[name] = _as_option_value(key, raw)
        dirs = cast("list[str]", section.values.get("dirs", []))
        destination = str(section.values.get("destination", loaded.globals.get("destination")))
        try:
            config = build_config((*dirs, destination), merged)
        except ConfigError as exc:
            line = _line_for_error(loaded, index, str(exc)) or section.line
            raise ConfigError(f"{path}:{line}: {exc}") from exc
        jobs.append((config, merged))
    return jobs


def _as_option_value(key: str, value: object) -> object:
    """A config-file value in the shape click would have produced for the option."""
    if key in {"metadata", "tags"}:
        return tuple(f"{k}={v}" for k, v in cast("tuple[tuple[str, str], ...]", value))
    if key in {"multipart_threshold", "part_size"}:
        return str(value)
    return value


def _line_for_error(loaded: Any, index: int, message: str) -> int | None:
    """The line of the key a ConfigError message names (``invalid --hold-for ...``)."""
    match = re.search(r"--([a-z-]+)", message)
    if match:
        key = {v: k for k, v in _FILE_TO_PARAM.items()}.get(
            match.group(1).replace("-", "_"), match.group(1).replace("-", "_")
        )
        line: int | None = loaded.line_of(key, index)
        return line
    if "destination" in message:
        found: int | None = loaded.line_of("destination", index)
        return found
    return None


def _looks_like_destination(text: str) -> bool:
    return text in {"noop", "noop://"} or text.startswith("s3://")


def build_app_options(options: dict[str, Any]) -> AppOptions:
    interval = options["interval"]
    if not interval > 0:
        raise ConfigError(f"invalid --interval {interval}: must be > 0 seconds")
    port = options["metrics_port"]
    if port is not None and not 0 <= port <= 65535:  # noqa: PLR2004
        raise ConfigError(f"invalid --metrics-port {port}")
    if port is not None and not options["watch"]:
        raise ConfigError("--metrics-port serves /metrics in daemon mode: add --watch")
    metrics_file = options["metrics_file"]
    if metrics_file is not None and not Path(metrics_file).parent.is_dir():
        raise ConfigError(f"--metrics-file {metrics_file}: directory does not exist")
    return AppOptions(
        log_format=options["log_format"],
        level=level_for(options["verbose"], options["quiet"]),
        watch=options["watch"],
        interval=interval,
        metrics_file=Path(metrics_file) if metrics_file else None,
        metrics_port=port,
        metrics_address=options["metrics_address"],
    )


def build_config(paths: tuple[str, ...], options: dict[str, Any]) -> Config:
    if len(paths) < 2:  # noqa: PLR2004
        raise ConfigError("expected SPOOL_DIR [SPOOL_DIR ...] DESTINATION")
    *spools, destination = paths
    s3 = S3Options(
        endpoint_url=options["endpoint_url"] or None,
        region=options["region"] or None,
        profile=options["profile"] or None,
        checksum=options["checksum"],
        no_clobber=options["no_clobber"],
        addressing_style=options["addressing_style"],
        multipart_threshold=parse_size(options["multipart_threshold"], "--multipart-threshold"),
        part_size=parse_size(options["part_size"], "--part-size"),
        max_attempts=options["max_attempts"],
        engine=options["engine"],
        storage_class=options["storage_class"] or None,
        sse=options["sse"] or None,
        sse_kms_key_id=options["sse_kms_key_id"] or None,
        acl=options["acl"] or None,
        content_type=options["content_type"] or None,
        metadata=parse_pairs(options["metadata"], "--metadata"),
        tags=parse_pairs(options["tag"], "--tag"),
        compress=options["compress"] or None,
    )
    if s3.max_attempts < 1:
        raise ConfigError(f"invalid --max-attempts {s3.max_attempts}: must be >= 1")
    return Config(
        spool_dirs=tuple(Path(p) for p in spools),
        destination=parse_destination(destination),
        template=KeyTemplate.parse(options["template"]),
        hold_for=options["hold_for"],
        delete_after=options["delete_after"],
        dry_run=options["dry_run"],
        upload=not options["no_upload"],
        cleanup=not options["no_cleanup"],
        concurrency=options["concurrency"],
        s3=s3,
        verify_before_delete=options["verify_before_delete"],
    )


def _route_library_logs(writer: LogWriter) -> None:
    root = logging.getLogger("spool_tool")
    root.handlers[:] = [LogHandler(writer)]
    root.setLevel(writer.level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (tests call it directly)."""
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help(), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        return _usage_error(exc.format_message())
    except click.exceptions.Abort:
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except ConfigError as exc:
        return _usage_error(str(exc))
    except click.ClickException as exc:
        return _usage_error(exc.format_message())
    if isinstance(result, int):
        return result
    return EXIT_OK  # --help / --version


def _usage_error(message: str) -> int:
    text = " ".join(message.split())
    sys.stderr.write(f"{PROG}: error: {text} (see {PROG} --help)\n")
    return EXIT_USAGE
