"""The command line end to end, against the noop destination (fast, no server)."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from spool_tool import __version__
from spool_tool.cli import ExitStatus, build_config, main, resolve
from spool_tool.journal import Journal
from spool_tool.keys import TOKENS
from spool_tool.options import BY_NAME, OPTIONS, Group, Option, Scope, Style, parse_setting
from tests.helpers import assert_one_line_error, make_files, run_cli, snapshot
from tests.test_configfile import COMPANIONS, SAMPLES, reached


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--hold-for",
        "--delete-after",
        "--format",
        "--dry-run",
        "--no-upload",
        "--no-cleanup",
        "--endpoint-url",
        "--region",
        "--profile",
    ):
        assert option in out


def test_python_dash_m_works() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"spool_tool {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "{nope}"],
        ["--format", "{fname"],
        ["--format", "fname}"],
        ["--format", "{fname.upper}"],
        ["--format", "{fname[0]}"],
        ["--format", "{}"],
        ["--format", "{0}"],
        ["--format", "{fname!r}"],
        ["--format", ""],
        ["--format", "/{fname}"],
        ["--hold-for", "-1"],
        ["--hold-for", "nan"],
        ["--hold-for", "soon"],
        ["--delete-after", "-5"],
        ["--concurrency", "0"],
        ["--part-size", "1MiB"],
        ["--endpoint-url", "not a url"],
        ["--checksum", "md4"],
        ["--no-such-option"],
    ],
)
def test_bad_options_exit_2_and_touch_nothing(spool: Path, args: list[str]) -> None:
    make_files(spool / "new", 2)
    before = snapshot(spool)
    result = run_cli(*args, spool, "noop")
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.startswith("spool_tool: error:")
    assert snapshot(spool) == before


@pytest.mark.parametrize(
    "destination",
    [
        "ftp://bucket",
        "s3://",
        "s3:///prefix",
        "s3://Upper",
        "s3://a",
        "s3://bad_name/x",
        "s3://b..c/",
        "s3://192.168.1.1/",
        "bucket",
    ],
)
def test_bad_destination_exit_2(spool: Path, destination: str) -> None:
    make_files(spool / "new", 1)
    before = snapshot(spool)
    result = run_cli(spool, destination)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert snapshot(spool) == before


def test_missing_destination_is_usage_error(spool: Path) -> None:
    result = run_cli(spool)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def test_unknown_token_error_lists_valid_tokens(spool: Path) -> None:
    result = run_cli("--format", "{year}", spool, "noop")
    assert "fname" in result.stderr
    assert "m_YYYY" in result.stderr


def test_noop_moves_regular_files_only(spool: Path, tmp_path: Path) -> None:
    new = spool / "new"
    contents = make_files(new, 3)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (new / "link").symlink_to(outside)
    (new / "dir").mkdir()
    os.mkfifo(new / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = new / "sock"
    sock.bind(str(sock_path))
    try:
        result = run_cli(spool, "noop", timeout=30)
    finally:
        sock.close()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (spool / "completed").iterdir()) == sorted(contents)
    for name, data in contents.items():
        assert (spool / "completed" / name).read_bytes() == data
    assert sorted(p.name for p in new.iterdir()) == ["dir", "fifo", "link", "sock"]
    assert outside.read_text() == "secret"
    assert "noop://f00000.dat" in result.stderr


def test_dry_run_changes_nothing(spool: Path) -> None:
    make_files(spool / "new", 2)
    before = snapshot(spool)
    result = run_cli("--dry-run", "--format", "x/{fname}", spool, "s3://bucket/pre")
    assert result.returncode == 0, result.stderr
    assert snapshot(spool) == before
    assert f"would upload {spool}/new/f00000.dat -> s3://bucket/pre/x/f00000.dat" in result.stdout


def test_dry_run_lists_deletions_without_deleting(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    old = completed / "old.dat"
    old.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    result = run_cli("--dry-run", spool, "noop")
    assert result.returncode == 0
    assert f"would delete {old}" in result.stdout
    assert old.exists()


def test_options_from_environment(spool: Path) -> None:
    make_files(spool / "new", 1)
    result = run_cli(
        spool, "s3://bucket", env={"SPOOL_TOOL_FORMAT": "env/{fname}", "SPOOL_TOOL_DRY_RUN": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "s3://bucket/env/f00000.dat" in result.stdout
    # the command line wins over the environment
    result = run_cli(
        "--format",
        "cli/{fname}",
        spool,
        "s3://bucket",
        env={"SPOOL_TOOL_FORMAT": "env/{fname}", "SPOOL_TOOL_DRY_RUN": "1"},
    )
    assert "s3://bucket/cli/f00000.dat" in result.stdout


def test_hostname_option_and_environment_set_the_token(spool: Path) -> None:
    make_files(spool / "new", 1)
    args = ("--dry-run", "--format", "{hostname}/{fname}", spool, "s3://bucket")
    result = run_cli(*args, env={"SPOOL_TOOL_HOSTNAME": "node-7"})
    assert result.returncode == 0, result.stderr
    assert "s3://bucket/node-7/f00000.dat" in result.stdout
    result = run_cli("--hostname", "pod-3", *args, env={"SPOOL_TOOL_HOSTNAME": "node-7"})
    assert "s3://bucket/pod-3/f00000.dat" in result.stdout


def test_hostname_is_used_for_real_uploads(spool: Path) -> None:
    make_files(spool / "new", 1)
    result = run_cli("--hostname", "pod-3", "--format", "{hostname}/{fname}", spool, "noop")
    assert result.returncode == 0, result.stderr
    assert "noop://pod-3/f00000.dat" in result.stderr


@pytest.mark.parametrize("name", ["a/b", "tab\there", "", "x" * 254])
def test_hostname_rejects_slash_and_controls(spool: Path, name: str) -> None:
    make_files(spool / "new", 1)
    before = snapshot(spool)
    result = run_cli("--hostname", name, spool, "noop")
    assert result.returncode == 2
    assert "invalid --hostname" in result.stderr
    assert_one_line_error(result.stderr)
    assert snapshot(spool) == before


def test_bad_option_from_environment_is_usage_error(spool: Path) -> None:
    result = run_cli(spool, "noop", env={"SPOOL_TOOL_HOLD_FOR": "-3"})
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def test_missing_spool_dir_reported_others_processed(spool: Path, tmp_path: Path) -> None:
    make_files(spool / "new", 2)
    missing = tmp_path / "missing"
    result = run_cli(missing, spool, "noop")
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((spool / "completed").iterdir())) == 2


def test_hold_for_keeps_fresh_files(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1, prefix="fresh")
    make_files(new, 1, prefix="old")
    old = new / "old00000.dat"
    os.utime(old, (time.time() - 600, time.time() - 600))
    result = run_cli("--hold-for", "5", spool, "noop")
    assert result.returncode == 0
    assert (new / "fresh00000.dat").exists()
    assert (spool / "completed" / "old00000.dat").exists()


def test_busy_spool_is_skipped_with_notice(spool: Path) -> None:
    make_files(spool / "new", 1)
    with Journal.open(spool):
        result = run_cli(spool, "noop")
    assert result.returncode == 0
    assert "held by another spool_tool process" in result.stderr
    assert (spool / "new" / "f00000.dat").exists()


def test_completed_name_clash_gets_new_name(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    (completed / "f00000.dat").write_bytes(b"earlier")
    contents = make_files(spool / "new", 1)
    result = run_cli("--no-cleanup", spool, "noop")
    assert result.returncode == 0
    assert (completed / "f00000.dat").read_bytes() == b"earlier"
    assert (completed / "f00000~1.dat").read_bytes() == contents["f00000.dat"]


def test_cleanup_deletes_only_old_regular_files(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    now = time.time()
    old, young = completed / "old", completed / "young"
    for path, age_min in ((old, 11), (young, 9)):
        path.write_text(path.name)
        os.utime(path, (now - age_min * 60, now - age_min * 60))
    target = spool / "new" / "keep"
    target.write_text("keep")
    os.utime(target, (now - 3600, now - 3600))
    (completed / "link").symlink_to(target)
    result = run_cli("--no-upload", "--delete-after", "10", spool, "noop")
    assert result.returncode == 0, result.stderr
    assert not old.exists()
    assert young.exists()
    assert target.read_text() == "keep"


def test_key_too_long_fails_that_file_only(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1)
    long_name = "x" * 250
    (new / long_name).write_text("long")
    result = run_cli("--format", "{fname}/{fname}/{fname}/{fname}/{fname}", spool, "noop")
    assert result.returncode == 1
    assert "1024" in result.stderr
    assert (new / long_name).exists()
    assert (spool / "completed" / "f00000.dat").exists()
    assert "Traceback" not in result.stderr


def test_non_utf8_name_fails_that_file_only(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1)
    bad = os.path.join(os.fsencode(new), b"bad\xff.dat")
    with open(bad, "wb") as fh:
        fh.write(b"data")
    result = run_cli(spool, "noop")
    assert result.returncode == 1
    assert "UTF-8" in result.stderr
    assert os.path.exists(bad)
    assert (spool / "completed" / "f00000.dat").exists()
    assert "Traceback" not in result.stderr


def test_json_log_lines_are_objects(spool: Path) -> None:
    import json  # noqa: PLC0415

    make_files(spool / "new", 2)
    result = run_cli("--log-format", "json", spool, "noop")
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    uploaded = [r for r in records if r["event"] == "uploaded"]
    assert {Path(r["file"]).name for r in uploaded} == {"f00000.dat", "f00001.dat"}
    assert all(r["bytes"] == 64 and r["uri"].startswith("noop://") for r in uploaded)
    assert records[-1]["event"] == "summary"
    assert records[-1]["uploaded"] == 2


# --- the option schema: environment, help, README ---------------------------------------------

ENV_SETTABLE = [o for o in OPTIONS if o.in_environment and o.scope is not Scope.COMMAND]


@pytest.mark.parametrize("option", ENV_SETTABLE, ids=lambda o: o.env)
def test_every_option_works_as_an_environment_variable(option: Option) -> None:
    _, env_text, expected = SAMPLES[option.name]
    environ = {option.env: env_text}
    environ |= {BY_NAME[n].env: value for n, (_, value) in COMPANIONS.get(option.name, {}).items()}
    run, (job,), warnings = resolve(("/s", "noop"), {}, environ)
    assert warnings == []
    assert reached(option, run, job) == expected
    assert job[option.name].spelled == option.env


def test_command_line_beats_environment_beats_default() -> None:
    hold = BY_NAME["hold_for"]
    cli = {"hold_for": parse_setting(hold, "3", "--hold-for")}
    _, (job,), _ = resolve(("/s", "noop"), cli, {"SPOOL_TOOL_HOLD_FOR": "2"})
    assert job["hold_for"].value == 3.0
    _, (job,), _ = resolve(("/s", "noop"), {}, {"SPOOL_TOOL_HOLD_FOR": "2"})
    assert job["hold_for"].value == 2.0
    _, (job,), _ = resolve(("/s", "noop"), {}, {})
    assert job["hold_for"].value == 0.0


def test_unknown_environment_variable_is_warned_about(spool: Path) -> None:
    make_files(spool / "new", 1)
    result = run_cli(
        "--dry-run",
        spool,
        "noop",
        env={"SPOOL_TOOL_HOLDFOR": "5", "SPOOL_TOOL_TESTING": "1", "SPOOL_TOOL_CRASH_AT": ""},
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "environment variable" in line]
    assert len(warnings) == 1, result.stderr
    assert "SPOOL_TOOL_HOLDFOR" in warnings[0]
    assert "did you mean SPOOL_TOOL_HOLD_FOR?" in warnings[0]
    assert "SPOOL_TOOL_TESTING" not in result.stderr
    assert "SPOOL_TOOL_CRASH_AT" not in result.stderr


def test_an_unknown_variable_like_no_option_gets_no_hint(spool: Path) -> None:
    """Names are compared without the SPOOL_TOOL_ prefix they all share (with it,
    SPOOL_TOOL_FOO was 'close' to SPOOL_TOOL_FORMAT)."""
    result = run_cli("--dry-run", spool, "noop", env={"SPOOL_TOOL_FOO": "1"})
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "environment variable" in line]
    assert warning.endswith("unknown environment variable SPOOL_TOOL_FOO ignored"), warning


def test_spool_tool_template_is_a_deprecated_spelling_of_format(spool: Path) -> None:
    make_files(spool / "new", 1)
    result = run_cli("--dry-run", spool, "s3://bucket", env={"SPOOL_TOOL_TEMPLATE": "t/{fname}"})
    assert result.returncode == 0, result.stderr
    assert "s3://bucket/t/f00000.dat" in result.stdout
    assert "SPOOL_TOOL_TEMPLATE is a deprecated spelling of SPOOL_TOOL_FORMAT" in result.stderr
    result = run_cli(
        "--dry-run",
        spool,
        "s3://bucket",
        env={"SPOOL_TOOL_TEMPLATE": "t/{fname}", "SPOOL_TOOL_FORMAT": "f/{fname}"},
    )
    assert "s3://bucket/f/f00000.dat" in result.stdout


def test_bad_environment_value_names_the_variable(spool: Path) -> None:
    result = run_cli(spool, "noop", env={"SPOOL_TOOL_PART_SIZE": "1MiB"})
    assert result.returncode == 2
    assert "invalid SPOOL_TOOL_PART_SIZE '1MiB': must be at least 5 MiB" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connect-timeout", "0"], "invalid --connect-timeout '0': must be a number of seconds"),
        (["--read-timeout", "-1"], "invalid --read-timeout '-1': must be a number of seconds"),
        (["--interval", "0"], "invalid --interval '0'"),
        (["--metrics-port", "9817"], "invalid --metrics-port 9817: serves /metrics only in"),
    ],
)
def test_bad_values_name_the_option(spool: Path, args: list[str], message: str) -> None:
    result = run_cli(*args, spool, "noop")
    assert result.returncode == 2
    assert message in result.stderr
    assert_one_line_error(result.stderr)


def test_timeouts_reach_the_s3_options() -> None:
    cli = {
        "connect_timeout": parse_setting(BY_NAME["connect_timeout"], "3", "--connect-timeout"),
        "read_timeout": parse_setting(BY_NAME["read_timeout"], "4.5", "--read-timeout"),
    }
    _, (job,), _ = resolve(("/s", "noop"), cli, {})
    assert (build_config(job).s3.connect_timeout, build_config(job).s3.read_timeout) == (3, 4.5)
    _, (job,), _ = resolve(("/s", "noop"), {}, {})
    assert (build_config(job).s3.connect_timeout, build_config(job).s3.read_timeout) == (10, 60)


def test_status_with_config_uses_each_spools_hold_for(tmp_path: Path) -> None:
    young, old = tmp_path / "young", tmp_path / "old"
    for spool_dir in (young, old):
        make_files(spool_dir / "new", 1)
        past = time.time() - 120  # two minutes old
        os.utime(spool_dir / "new" / "f00000.dat", (past, past))
    config = tmp_path / "spool_tool.toml"
    config.write_text(
        f'hold_for = 1\n[[spool]]\ndirs = ["{young}"]\ndestination = "noop"\nhold_for = 5\n'
        f'[[spool]]\ndirs = ["{old}"]\ndestination = "noop"\n'
    )
    result = run_cli("--status", "--config", config, "--log-format", "json")
    assert result.returncode == 0, result.stderr
    eligible = {s["spool_dir"]: s["eligible_now"] for s in json.loads(result.stdout)["spools"]}
    assert eligible == {str(young): 0, str(old): 1}


def test_help_is_grouped_and_lists_tokens_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    headings = [f"{group.value}:" for group in Group]
    positions = [out.index(f"\n{heading}\n") for heading in headings]
    assert positions == sorted(positions)
    parts = re.split("|".join(map(re.escape, headings)), out)[1:]
    sections = dict(zip(headings, parts, strict=True))
    for option in OPTIONS:
        if option.style is not Style.POSITIONAL:
            assert option.flag in sections[f"{option.group.value}:"], option.name
    assert " ".join("{" + token + "}" for token in TOKENS[:4]) in out
    assert "{hostname}" in out
    for status in ExitStatus:
        assert re.search(rf"^  {status.value} +{re.escape(status.meaning[:20])}", out, re.MULTILINE)


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_option_rows() -> list[tuple[str, str]]:
    """(option cell, default cell) of each row of the README's command line option table."""
    text = README.read_text(encoding="utf-8")
    table = text.split("| option | meaning | default |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((cells[0], cells[2]))
    return rows


def test_readme_option_table_matches_the_schema() -> None:
    rows = readme_option_rows()
    flag_re = re.compile(r"(?<![\w-])--?[a-z][a-z-]*")
    documented = {flag for cell, _ in rows for flag in flag_re.findall(cell)}
    schema = {o.flag for o in OPTIONS if o.style is not Style.POSITIONAL}
    schema |= {short for o in OPTIONS for short in o.short} | {"--version", "-h", "--help"}
    assert documented == schema
    for cell, default in rows:
        flags = re.findall(r"`(--[a-z-]+)", cell)
        option = next((o for o in OPTIONS if flags and o.flag == flags[0]), None)
        if option is None or option.style is Style.FLAG or len(flags) > 1:
            continue  # a flag is off unless given; a shared row documents two defaults
        shown = re.match(r"`([^`]*)`", default)
        assert (shown.group(1) if shown else default) == option.doc_default, option.name
        if option.choices and "\\|" in cell:  # the listed choices are the schema's
            assert cell == f"`{option.flag} {option.metavar}`".replace("|", "\\|")


def test_bad_repeated_option_names_the_bad_item(spool: Path) -> None:
    result = run_cli("--metadata", "a=b c", "--metadata", "nokey", spool, "noop")
    assert result.returncode == 2
    assert "invalid --metadata 'nokey': expected KEY=VALUE" in result.stderr
    assert_one_line_error(result.stderr)


def test_environment_typo_is_shown_before_the_error_it_may_explain(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[spool]]\ndirs = ["/s"]\ndestination = "noop"\npart_size = "1MiB"\n')
    result = run_cli(env={"SPOOL_TOOL_CONFIG": str(config), "SPOOL_TOOL_PARTSIZE": "8MiB"})
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert "SPOOL_TOOL_PARTSIZE" in warning
    assert "did you mean SPOOL_TOOL_PART_SIZE?" in warning
    assert error.startswith(f"spool_tool: error: {config}:4: invalid part_size '1MiB'")


@pytest.mark.parametrize("second", [False, True], ids=["first-job", "second-job"])
def test_error_found_when_the_destination_is_made_names_the_line_of_its_key(
    tmp_path: Path, spool: Path, second: bool
) -> None:
    """A missing --profile is found only when the S3 destination is made (botocore reads the
    AWS config then); it still names the line of the job's own ``profile`` key."""
    make_files(spool / "new", 1)
    other = tmp_path / "other"
    (other / "new").mkdir(parents=True)
    good = f'[[spool]]\ndirs = ["{other}"]\ndestination = "noop"\n'
    bad = f'[[spool]]\ndirs = ["{spool}"]\ndestination = "s3://bucket/"\n\nprofile = "nosuch"\n'
    config = tmp_path / "c.toml"
    config.write_text(good + bad if second else bad + good)
    before = snapshot(spool)
    result = run_cli("--config", config, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    line = 8 if second else 5
    assert f"{config}:{line}: invalid profile 'nosuch': no such AWS profile" in result.stderr
    assert snapshot(spool) == before


def test_config_from_the_environment_with_spool_dirs_names_the_variable(spool: Path) -> None:
    config = spool.parent / "c.toml"
    config.write_text(f'[[spool]]\ndirs = ["{spool}"]\ndestination = "noop"\n')
    result = run_cli(spool, "noop", env={"SPOOL_TOOL_CONFIG": str(config)})
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "with SPOOL_TOOL_CONFIG, the spool dirs and destinations are in" in result.stderr


def test_each_choice_list_is_declared_once() -> None:
    """Every module-level ``X = Literal[...]`` of two or more strings is unique in src/: a
    choice list (engines, compressions...) declared twice drifts (options.py reads config.py's)."""
    import ast  # noqa: PLC0415

    seen: dict[tuple[str, ...], str] = {}
    for path in sorted((Path(__file__).parent.parent / "src" / "spool_tool").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Subscript) and ast.unparse(node.value) == "Literal"):
                continue
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            choices = [i.value for i in items if isinstance(i, ast.Constant)]
            strings = [c for c in choices if isinstance(c, str)]
            if len(strings) < 2 or len(strings) != len(items):
                continue
            key, where = tuple(sorted(strings)), f"{path.name}:{node.lineno}"
            assert key not in seen, f"{where} repeats {seen[key]}"
            seen[key] = where


def test_a_spool_named_twice_is_a_usage_error(spool: Path, tmp_path: Path) -> None:
    """Twice on the command line (also through a symlink) or in two [[spool]] sections: its
    files would ship with whichever job came first; refused, nothing touched."""
    make_files(spool / "new", 1)
    (tmp_path / "alias").symlink_to(spool)
    for args in ([spool, spool], [spool, tmp_path / "alias"]):
        result = run_cli(*args, "noop")
        assert result.returncode == 2, result.stderr
        assert "already named: name each spool once" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    config = tmp_path / "two.toml"
    section = f'[[spool]]\ndirs = ["{spool}"]\ndestination = "noop"\n'
    config.write_text(section + section)
    result = run_cli("--config", config)
    assert result.returncode == 2, result.stderr
    assert f"{config}:5: invalid dirs" in result.stderr, result.stderr
    assert sorted(p.name for p in (spool / "new").iterdir()) == ["f00000.dat"]
    assert not (spool / "completed").exists() or not any((spool / "completed").iterdir())
