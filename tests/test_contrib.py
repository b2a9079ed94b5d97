"""contrib/: the operator files parse, and the command lines in them use options that exist.

The options are checked against ``spool_tool.cli.command``'s own parameters, so renaming an
option without updating contrib/ fails here.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

from spool_tool.cli import command
from spool_tool.config import DestinationURI, parse_destination
from spool_tool.configfile import load_config_file
from spool_tool.keys import KeyTemplate

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
SYSTEMD = CONTRIB / "systemd"
CONFIG_PATH = "/etc/spool_tool/spool_tool.toml"
TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"
# The one documented system-wide install (contrib/README.md): a venv under /opt/spool_tool.
INSTALLED = "/opt/spool_tool/bin/spool_tool"
DOCS = {"/usr/share/doc/spool_tool/README.md", "/usr/share/doc/spool_tool/contrib.md"}

OPTIONS: dict[str, click.Option] = {
    opt: param
    for param in command.params
    if isinstance(param, click.Option)
    for opt in (*param.opts, *param.secondary_opts)
}
# Options another change is adding; until they exist, only their own test is expected to fail.
PENDING = frozenset({"--watch", "--interval", "--metrics-port", "--metrics-file", "--config"})
MISSING = PENDING - OPTIONS.keys()


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"), source=name)
    return parser


def cron_commands() -> list[list[str]]:
    """argv of every cron line (and of the commented example line), without time and user."""
    commands = []
    for raw in (CONTRIB / "cron" / "spool_tool.cron").read_text(encoding="utf-8").splitlines():
        line = raw.removeprefix("# ").strip()
        fields = line.split(None, 6)
        if len(fields) == 7 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]):
            commands.append(shlex.split(fields[6]))
    return commands


def command_lines() -> list[Any]:
    lines = [
        pytest.param(shlex.split(read_unit(name)["Service"]["ExecStart"]), id=name)
        for name in ("spool-tool.service", "spool-tool-oneshot.service")
    ]
    lines += [pytest.param(argv, id=f"cron-{n}") for n, argv in enumerate(cron_commands())]
    return lines


def parse_options(argv: list[str]) -> tuple[dict[str, list[str | None]], list[str]]:
    """``{option: [value or None, ...]}`` and the positional arguments of a spool_tool argv;
    fails on an option spool_tool does not have or a value it would reject."""
    assert Path(argv[0]).name == "spool_tool", argv
    options: dict[str, list[str | None]] = {}
    positionals: list[str] = []
    tokens = list(argv[1:])
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("-"):
            positionals.append(token)
            continue
        if token.startswith("--"):
            name, eq, inline = token.partition("=")
            names, values = [name], [inline if eq else None]
        else:  # -qq, -v
            names, values = [f"-{char}" for char in token[1:]], [None] * (len(token) - 1)
        for name, inline_value in zip(names, values, strict=True):
            if name in MISSING:
                options.setdefault(name, []).append(tokens.pop(0) if tokens else None)
                continue
            param = OPTIONS.get(name)
            assert param is not None, f"{name} is not a spool_tool option (see spool_tool --help)"
            value = inline_value
            if not (param.is_flag or param.count):
                value = inline_value if inline_value is not None else tokens.pop(0)
                assert not value.startswith("-"), f"{name} needs a value"
                if isinstance(
                    param.type,
                    click.Choice | click.types.IntParamType | click.types.FloatParamType,
                ):
                    param.type(value, param, None)  # raises on a bad value
            else:
                assert inline_value is None, f"{name} takes no value"
            options.setdefault(name, []).append(value)
    return options, positionals


@pytest.mark.parametrize("argv", command_lines())
def test_command_lines_use_existing_options(argv: list[str]) -> None:
    options, positionals = parse_options(argv)
    if "--config" in options:
        assert options["--config"] == [CONFIG_PATH]
        assert positionals == []
    else:
        assert len(positionals) >= 2, "SPOOL_DIR... DESTINATION"
        parse_destination(positionals[-1])
    if "--format" in options:
        value = options["--format"][0]
        assert value is not None
        KeyTemplate.parse(value)


@pytest.mark.xfail(bool(MISSING), reason=f"options being added: {sorted(MISSING)}", strict=False)
def test_pending_options_exist() -> None:
    assert not MISSING


def test_daemon_unit() -> None:
    unit = read_unit("spool-tool.service")
    service = unit["Service"]
    options, _ = parse_options(shlex.split(service["ExecStart"]))
    assert options == {
        "--watch": [None],
        "--interval": ["30"],
        "--log-format": ["json"],
        "--metrics-port": ["9817"],
        "--config": [CONFIG_PATH],
    }
    assert service["ExecStart"].startswith(f"{INSTALLED} ")
    expected = {
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "120",
        "User": "spool",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/spool/app",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert "DynamicUser" not in service
    assert set(service["SuccessExitStatus"].split()) == {"143", "130"}
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_oneshot_unit_and_timer() -> None:
    service = read_unit("spool-tool-oneshot.service")["Service"]
    assert service["Type"] == "oneshot"
    options, _ = parse_options(shlex.split(service["ExecStart"]))
    assert options == {
        "-q": [None],
        "--metrics-file": [f"{TEXTFILE_DIR}/spool_tool.prom"],
        "--config": [CONFIG_PATH],
    }
    assert service["ExecStart"].startswith(f"{INSTALLED} ")
    # '-': a missing textfile directory must not fail the unit (issue 9.19).
    assert set(service["ReadWritePaths"].split()) == {"/var/spool/app", f"-{TEXTFILE_DIR}"}
    assert service["User"] == "spool"
    assert service["ProtectSystem"] == "strict"

    timer = read_unit("spool-tool.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* *:*:00"  # every minute
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["AccuracySec"] == "5s"
    # Without Unit=, spool-tool.timer would start spool-tool.service, the daemon.
    assert timer["Timer"]["Unit"] == "spool-tool-oneshot.service"
    assert (SYSTEMD / timer["Timer"]["Unit"]).is_file()
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_cron_line() -> None:
    text = (CONTRIB / "cron" / "spool_tool.cron").read_text(encoding="utf-8")
    active = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(active) == 1
    fields = active[0].split(None, 6)
    assert fields[:5] == ["*"] * 5
    assert fields[5] == "spool"  # /etc/cron.d format: a user field
    argv = shlex.split(fields[6])
    assert "-q" in argv
    assert "flock" not in fields[6]
    comments = " ".join(line.lstrip("#").strip() for line in text.splitlines())
    assert "locks each spool itself" in comments
    assert "%" not in text  # cron would turn it into a newline
    assert text.endswith("\n")  # cron ignores a last line without one


def statements_by_sid() -> dict[str, dict[str, Any]]:
    policy = json.loads((CONTRIB / "iam" / "spool-tool-policy.json").read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert len(by_sid) == len(statements)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])  # IAM's Sid alphabet
    return by_sid


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def test_iam_policy_is_least_privilege() -> None:
    by_sid = statements_by_sid()
    required = by_sid["RequiredPutObjectAndAbortMultipartUnderPrefix"]
    assert actions(required) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert required["Resource"] == "arn:aws:s3:::BUCKET/PREFIX/*"

    # The pre-flight is a GET of a key that cannot exist: AccessDenied is fine, so it needs no
    # statement; spool_tool never lists.
    assert not any("s3:ListBucket" in actions(s) for s in by_sid.values())

    verify = by_sid["OptionalGetObjectForVerifyBeforeDelete"]
    assert actions(verify) == {"s3:GetObject"}
    assert verify["Resource"] == "arn:aws:s3:::BUCKET/PREFIX/*"

    kms = by_sid["OptionalKmsForSseKmsBuckets"]
    assert actions(kms) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert kms["Resource"].startswith("arn:aws:kms:")

    every_action = set().union(*(actions(s) for s in by_sid.values()))
    assert not any("*" in action for action in every_action)
    assert not any(s["Resource"] in {"*", "arn:aws:s3:::*"} for s in by_sid.values())


def test_lifecycle_rule_aborts_incomplete_multipart_uploads() -> None:
    path = CONTRIB / "s3" / "lifecycle-abort-incomplete-mpu.json"
    (rule,) = json.loads(path.read_text(encoding="utf-8"))["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule["Filter"] == {"Prefix": ""}
    assert set(rule) == {"ID", "Status", "Filter", "AbortIncompleteMultipartUpload"}
    readme = " ".join((CONTRIB / "README.md").read_text(encoding="utf-8").split())
    assert (
        "aws s3api put-bucket-lifecycle-configuration --bucket BUCKET \\ "
        "--lifecycle-configuration file://contrib/s3/lifecycle-abort-incomplete-mpu.json"
    ) in readme


def test_example_config_loads() -> None:
    config = load_config_file(CONTRIB / "spool_tool.example.toml")
    assert len(config.spools) >= 2
    for index, spool in enumerate(config.spools):
        # Every value is parsed (destination, template, sizes...) by the option schema.
        values = {**config.globals, **spool.values}
        assert isinstance(values["destination"].value, DestinationURI)
        assert isinstance(values["format"].value, KeyTemplate)
        assert config.line_of("dirs", index) is not None


def test_readme_describes_every_file() -> None:
    readme = (CONTRIB / "README.md").read_text(encoding="utf-8")
    files = sorted(p.relative_to(CONTRIB) for p in CONTRIB.rglob("*") if p.is_file())
    described = [str(f) for f in files if f.name != "README.md"]
    assert described
    for name in described:
        assert f"**`{name}`**" in readme, f"contrib/README.md has no paragraph for {name}"


UNITS = ("spool-tool.service", "spool-tool-oneshot.service", "spool-tool.timer")


def test_units_match_the_documented_install() -> None:
    """Issue 9.19: the units, the cron file and the docs name one install: the venv under
    /opt/spool_tool, and Documentation= paths that its steps install."""
    guide = (CONTRIB / "README.md").read_text(encoding="utf-8")
    assert "python3 -m venv /opt/spool_tool" in guide
    for path in DOCS:
        assert f" {path}" in guide  # an install line puts it there
    for name in ("spool-tool.service", "spool-tool-oneshot.service"):
        unit = read_unit(name)
        assert shlex.split(unit["Service"]["ExecStart"])[0] == INSTALLED
        assert {p.removeprefix("file://") for p in unit["Unit"]["Documentation"].split()} == DOCS
    cron = (CONTRIB / "cron" / "spool_tool.cron").read_text(encoding="utf-8")
    assert "/usr/local/bin" not in cron
    assert all(argv[0] == INSTALLED for argv in cron_commands())
    readme = (CONTRIB.parent / "README.md").read_text(encoding="utf-8")
    assert "The daemon (`--watch`) exits 0 on SIGTERM/SIGINT" in readme
    assert "exit 143 counts as a clean stop" not in guide  # the daemon exits 0
    daemon = (SYSTEMD / "spool-tool.service").read_text(encoding="utf-8")
    assert "and exits 0." in daemon
    assert "exits 143" not in daemon


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on every unit: unknown keys, bad values, a timer's missing
    unit, a command that is not executable. Where the documented install is not present, a
    stand-in executable takes its path in a copy of the units (the path itself is checked by
    ``test_units_match_the_documented_install``)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    executable = INSTALLED
    if not os.access(INSTALLED, os.X_OK):
        stand_in = tmp_path / "spool_tool"
        stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        stand_in.chmod(0o755)
        executable = str(stand_in)
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED, executable), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # warnings ("Unknown key ...") fail it too
