"""Command line: argv -> Config -> run -> exit status. The only module that uses click.

The click parameters, ``--help`` and the environment come from the option schema
(``options.py``); this module only reads the sources, merges them and maps the run summary to
an :class:`ExitStatus`.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any, Self, cast

import click

from spool_tool import __version__
from spool_tool.app import AppOptions
from spool_tool.backlog import BacklogQuery
from spool_tool.config import Config, S3Options, check_distinct_spools
from spool_tool.errors import ConfigError, OutputError
from spool_tool.filters import PathFilter
from spool_tool.keys import TOKENS
from spool_tool.observe.logs import LogHandler, LogWriter, level_for
from spool_tool.observe.output import CheckedOutput
from spool_tool.options import (
    BY_NAME,
    OPTIONS,
    Group,
    Layer,
    Option,
    Setting,
    Style,
    fields,
    from_environment,
    locate,
    merge,
    parse_setting,
)
from spool_tool.scan import ScanOptions
from spool_tool.statefs import filesystem_of, state_dir_for

PROG = "spool_tool"


class ExitStatus(IntEnum):
    """Exit statuses, with the meaning ``--help`` and the README give them."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "every eligible file was shipped, or there was nothing to do"
    FAILED = 1, "a file, deletion or spool dir failed, or a fatal S3 error stopped the run"
    USAGE = 2, "usage or configuration error (nothing was touched)"
    SIGNAL = 128, "128+N: stopped by signal N"


class GroupedCommand(click.Command):
    """``--help`` with one section per option group, and an epilog of tokens and exit codes."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[Group, list[tuple[str, str]]] = {group: [] for group in Group}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                option = BY_NAME.get(param.name or "")
                rows[option.group if option else Group.CONFIGURATION].append(record)
        for group, records in rows.items():
            with formatter.section(group.value):
                formatter.write_dl(records)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002 - click's signature
        with formatter.section("Key template tokens (--format)"):
            formatter.write_text(" ".join("{" + token + "}" for token in TOKENS))
        with formatter.section("Environment"):
            formatter.write_text(
                "Every option can also be set as SPOOL_TOOL_<OPTION> (e.g. SPOOL_TOOL_HOLD_FOR=5, "
                "SPOOL_TOOL_FORMAT='{fname}'); the command line wins over the environment, "
                "which wins over --config."
            )
        with formatter.section("Exit status"):
            formatter.write_dl([(str(status.value), status.meaning) for status in ExitStatus])


def _click_option(option: Option) -> click.Option:
    decls = [option.flag, *option.short]
    text = option.help
    if option.doc_default and option.style is Style.VALUE:
        text += f"  [default: {option.doc_default}]"
    if option.style is Style.FLAG:
        return click.Option(decls, is_flag=True, help=text)
    if option.style is Style.COUNT:
        return click.Option(decls, count=True, help=text)
    metavar = f"[{option.metavar}]" if option.choices else option.metavar
    multiple = option.style is Style.MULTIPLE
    return click.Option(decls, metavar=metavar, multiple=multiple, help=text)


def _run(paths: tuple[str, ...], **_: Any) -> int:
    """Upload eligible files from SPOOL_DIR/new to DESTINATION (s3://BUCKET[/PREFIX] or noop),
    move each to SPOOL_DIR/completed once S3 confirmed it, then delete old completed files."""
    from spool_tool import app  # noqa: PLC0415 - keep --help and usage errors fast

    cli = _command_line(click.get_current_context())
    try:
        run, jobs, warnings = resolve(paths, cli, os.environ)
    except ConfigError:
        for warning in from_environment(os.environ)[1]:  # a typo may explain the error
            sys.stderr.write(f"{PROG}: warning: {warning}\n")
        raise
    out = CheckedOutput(sys.stdout)
    writer = LogWriter(
        fmt=_value(run, "log_format"),
        level=_level(run),
        out=out,
        daemon=bool(_value(run, "watch")),
    )
    for warning in warnings:
        writer.write(logging.WARNING, "config", warning)
    if run["status"].value:
        return _status(paths, run, jobs, lambda spools, fmt: app.show_status(spools, fmt, out))
    app_options = build_app_options(run)
    configs = [build_config(job) for job in jobs]
    try:
        check_distinct_spools(configs)
    except ConfigError as exc:
        raise _locate_spool(exc, jobs) from None
    _route_library_logs(writer)
    for config in configs:
        _warn_network_state(config, writer)
        _warn_shared_keys(config, writer)
    try:
        summary = app.execute(configs, app_options, writer)
    except ConfigError as exc:  # found while making a destination: before any file moved
        raise _locate_in_jobs(exc, jobs) from None
    if app_options.watch:
        return ExitStatus.OK  # a daemon ends on a signal, its normal stop; failures were logged
    if summary.signal is not None:
        return ExitStatus.SIGNAL + summary.signal
    return ExitStatus.OK if summary.ok else ExitStatus.FAILED


def _warn_shared_keys(config: Config, writer: LogWriter) -> None:
    """One warning when --format can give two files one key."""
    if not config.template.is_unique_per_file:
        writer.write(
            logging.WARNING,
            "config",
            f"--format {config.template.text!r} has no {{fname}}/{{uuid4}}/{{uuid1}}: "
            "files may overwrite each other's objects",
        )
    elif config.recursive and not config.template.is_unique_per_nested_file:
        writer.write(
            logging.WARNING,
            "config",
            f"--format {config.template.text!r} with --recursive has no {{relpath}}/"
            "{uuid4}/{uuid1} (nor {reldir} with {fname}): files of one name in two "
            "directories may overwrite each other's objects",
        )


def _warn_network_state(config: Config, writer: LogWriter) -> None:
    """One warning per spool whose journal --allow-network-state lets onto a shared fs."""
    for spool in config.spool_dirs if config.allow_network_state else ():
        found = filesystem_of(config.state_dir(spool))
        if found.is_shared:
            writer.write(
                logging.WARNING,
                "config",
                f"journal of {spool} on {found.fstype} ({found.kind}): "
                "--allow-network-state accepts the risk",
            )


command = GroupedCommand(
    PROG,
    callback=_run,
    params=[
        click.Argument(["paths"], nargs=-1, metavar="SPOOL_DIR... DESTINATION"),
        *(_click_option(o) for o in OPTIONS if o.style is not Style.POSITIONAL),
    ],
    help=_run.__doc__,
    context_settings={"help_option_names": ["-h", "--help"]},
)
click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")(
    command
)


def resolve(
    paths: tuple[str, ...], cli: Layer, environ: Mapping[str, str]
) -> tuple[dict[str, Setting], list[dict[str, Setting]], list[str]]:
    """The run's settings, each job's settings, and warnings about the environment.

    Precedence: defaults < config file (globals, then the section) < environment < command
    line; the run's own settings come from the file's global part.
    """
    env, warnings = from_environment(environ)
    run = merge(env, cli)
    jobs: list[dict[str, Setting]] = []
    if run["config"].value is not None:
        if paths and not run["status"].value:
            raise ConfigError(
                f"with {run['config'].spelled}, the spool dirs and destinations are in the file"
            )
        from spool_tool.configfile import load_config_file  # noqa: PLC0415

        loaded = load_config_file(Path(_value(run, "config")))
        jobs = [merge(loaded.globals, section.values, env, cli) for section in loaded.spools]
        run = merge(loaded.globals, env, cli)
    elif not run["status"].value:
        jobs = [merge(env, cli, _positional(paths))]
    return run, jobs, warnings


def _command_line(ctx: click.Context) -> dict[str, Setting]:
    """The options given on the command line (not click's defaults), parsed by the schema."""
    layer: dict[str, Setting] = {}
    for option in OPTIONS:
        if option.style is Style.POSITIONAL:
            continue
        if ctx.get_parameter_source(option.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        raw = ctx.params[option.name]
        for item in raw if option.style is Style.MULTIPLE else ():
            try:  # name the bad --tag itself, not the tuple of all of them
                option.parse((item,))
            except ValueError as exc:
                raise ConfigError(str(exc), option=option.name, value=item) from None
        layer[option.name] = parse_setting(option, raw, option.flag)
    return layer


def _positional(paths: tuple[str, ...]) -> dict[str, Setting]:
    if len(paths) < 2:  # noqa: PLR2004
        raise ConfigError("expected SPOOL_DIR [SPOOL_DIR ...] DESTINATION")
    *spools, destination = paths
    return {
        "dirs": parse_setting(BY_NAME["dirs"], spools, "SPOOL_DIR"),
        "destination": parse_setting(BY_NAME["destination"], destination, "DESTINATION"),
    }


def _status(paths: tuple[str, ...], run: Layer, jobs: list[dict[str, Setting]], show: Any) -> int:
    """``--status``: the given spool dirs with the run's settings (--hold-for, --exclude...), or
    each configured job's dirs with that job's own."""
    if len(paths) > 1 and _looks_like_destination(paths[-1]):
        paths = paths[:-1]  # `--status SPOOL s3://...`: the destination is not a spool dir
    spools = [_backlog_query(Path(p), run) for p in paths] or [
        _backlog_query(spool, job) for job in jobs for spool in _value(job, "dirs")
    ]
    if not spools:
        raise ConfigError("--status needs at least one SPOOL_DIR")
    ok = show(spools, _value(run, "log_format"))
    return ExitStatus.OK if ok else ExitStatus.FAILED


def _backlog_query(spool: Path, settings: Layer) -> BacklogQuery:
    recursive = _value(settings, "recursive")
    options = ScanOptions(
        PathFilter(_value(settings, "include"), _value(settings, "exclude")),
        _value(settings, "require_marker"),
        _value(settings, "max_depth") if recursive else 1,
    )
    root = _value(settings, "state_dir")
    state_dir = None if root is None else state_dir_for(spool, root)
    return BacklogQuery(spool, float(_value(settings, "hold_for")) * 60, options, state_dir)


def _value(settings: Layer, name: str) -> Any:
    return settings[name].value


def _level(run: Layer) -> int:
    return level_for(_value(run, "verbose"), _value(run, "quiet"))


def _looks_like_destination(text: str) -> bool:
    return text in {"noop", "noop://"} or text.startswith("s3://")


def build_app_options(run: Layer) -> AppOptions:
    if run["metrics_port"].value is not None and not run["watch"].value:
        raise locate(
            ConfigError(
                "serves /metrics only in daemon mode: add --watch (watch = true in a file)",
                option="metrics_port",
                value=run["metrics_port"].value,
            ),
            run,
        )
    return AppOptions(**fields(run, "app"), level=_level(run))  # type: ignore[arg-type]


def _locate_in_jobs(exc: ConfigError, jobs: list[dict[str, Setting]]) -> ConfigError:
    """An error about one job's option value (a missing --profile), attributed to where the
    first job with that value set it."""
    for job in jobs:
        setting = job.get(exc.option or "")
        if setting is not None and setting.value == exc.value:
            return locate(exc, job)
    return exc


def _locate_spool(exc: ConfigError, jobs: list[dict[str, Setting]]) -> ConfigError:
    """A spool named a second time, attributed to the last job that names it."""
    for job in reversed(jobs):
        setting = job.get("dirs")
        named = setting.value if setting is not None else ()
        if exc.value in {str(d) for d in cast("tuple[Path, ...]", named)}:
            return locate(exc, job)
    return exc


def build_config(job: Layer) -> Config:
    """The frozen Config of one job; a check across options names where the option was set."""
    try:
        s3 = S3Options(**fields(job, "s3"))  # type: ignore[arg-type]
        return Config(**fields(job, "config"), s3=s3)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise locate(exc, job) from None


def _route_library_logs(writer: LogWriter) -> None:
    root = logging.getLogger("spool_tool")
    root.handlers[:] = [LogHandler(writer)]
    root.setLevel(writer.level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (tests call it directly)."""
    _open_closed_streams()
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except OutputError as exc:
        if exc.errno != errno.EPIPE:  # the reader went away (| head): nothing to say
            sys.stderr.write(f"{PROG}: {exc}\n")
        return ExitStatus.FAILED
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help(), err=True)
        return ExitStatus.USAGE
    except click.UsageError as exc:
        return _usage_error(exc.format_message())
    except click.exceptions.Abort:
        return ExitStatus.SIGNAL + 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except ConfigError as exc:
        return _usage_error(str(exc))
    except click.ClickException as exc:
        return _usage_error(exc.format_message())
    if isinstance(result, int):
        return int(result)
    return ExitStatus.OK  # --help / --version


def _open_closed_streams() -> None:
    """Started with stdin, stdout or stderr closed (``>&-`` in a cron line): ``/dev/null`` in
    its place, so that output and logs go nowhere instead of failing, and no file the run
    opens (the journal) takes the descriptor of a standard stream."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115 - the process's own


def _usage_error(message: str) -> int:
    text = " ".join(message.split())
    sys.stderr.write(f"{PROG}: error: {text} (see {PROG} --help)\n")
    return ExitStatus.USAGE
