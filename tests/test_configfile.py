"""``--config FILE.toml`` loading: values, normalisation, and errors naming ``file:line``."""

from __future__ import annotations

import logging
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from spool_tool.cli import build_app_options, build_config, resolve
from spool_tool.config import MinFree
from spool_tool.configfile import ConfigFile, SpoolSection, load_config_file
from spool_tool.errors import ConfigError
from spool_tool.keys import KeyTemplate
from spool_tool.options import OPTIONS, Option, Scope, Setting, Style

FULL = """\
# global defaults
concurrency = 16
log_format = "json"
verbose = 1
quiet = 0
watch = true
interval = 30
metrics_file = "/tmp/spool_tool.prom"
metrics_port = 9817
metrics_address = "127.0.0.1"
hold_for = 1.0

[[spool]]
dirs = ["/var/spool/app1", "/var/spool/app2"]
destination = "s3://bucket/app/"
format = "{hostname}/{m_YYYY}/{m_MM}/{m_DD}/{fname}"
hold_for = 2.0
delete_after = 120
endpoint_url = "http://127.0.0.1:9000"
region = "us-east-1"
profile = "ingest"
checksum = "sha256"
no_clobber = true
addressing_style = "path"
multipart_threshold = "16MiB"
part_size = 16777216
max_attempts = 5
storage_class = "STANDARD_IA"
sse = "aws:kms"
sse_kms_key_id = "alias/x"
acl = "bucket-owner-full-control"
content_type = "application/json"
metadata = { source = "app1", team = "data" }
tags = { retention = "30d" }
compress = "gzip"
verify_before_delete = true
no_upload = false
no_cleanup = false
dry_run = false

[[spool]]
dirs = ["/var/spool/other"]
destination = "noop"
"""


def write(tmp_path: Path, text: str, name: str = "spool_tool.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    return path, str(info.value)


def line_of_text(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def values(settings: dict[str, Setting]) -> dict[str, object]:
    return {name: setting.value for name, setting in settings.items()}


def test_full_file_is_parsed_by_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config_file(path)
    assert isinstance(config, ConfigFile)
    assert config.path == path
    assert values(config.globals) == {
        "concurrency": 16,
        "log_format": "json",
        "verbose": 1,
        "quiet": 0,
        "watch": True,
        "interval": 30.0,
        "metrics_file": None,  # replaced below: the directory does not exist here
        "metrics_port": 9817,
        "metrics_address": "127.0.0.1",
        "hold_for": 1.0,
    } | {"metrics_file": config.globals["metrics_file"].value}
    assert config.globals["hold_for"].where == f"{path}:{line_of_text(FULL, 'hold_for = 1.0')}"
    first, second = config.spools
    assert isinstance(first, SpoolSection)
    got = values(first.values)
    assert got["dirs"] == (Path("/var/spool/app1"), Path("/var/spool/app2"))
    assert str(got["destination"]) == "s3://bucket/app/"
    assert got["format"] == KeyTemplate.parse("{hostname}/{m_YYYY}/{m_MM}/{m_DD}/{fname}")
    assert got["multipart_threshold"] == 16 << 20
    assert got["part_size"] == 16777216
    assert got["metadata"] == (("source", "app1"), ("team", "data"))
    assert got["tag"] == (("retention", "30d"),)  # `tags` is an alias of the tag option
    assert got["hold_for"] == 2.0
    assert first.values["tag"].spelled == "tags"
    assert first.line == line_of_text(FULL, "[[spool]]", 1)
    assert set(values(second.values)) == {"dirs", "destination"}
    assert second.line == line_of_text(FULL, "[[spool]]", 2)


def test_line_of_points_at_the_spool_block_then_the_global_part(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, FULL))
    assert config.line_of("hold_for", 0) == line_of_text(FULL, "hold_for = 2.0")
    assert config.line_of("hold-for", 0) == line_of_text(FULL, "hold_for = 2.0")
    # Not set in the second spool: its value comes from the global part.
    assert config.line_of("hold_for", 1) == line_of_text(FULL, "hold_for = 1.0")
    assert config.line_of("hold_for", None) == line_of_text(FULL, "hold_for = 1.0")
    assert config.line_of("destination", 1) == line_of_text(FULL, 'destination = "noop"')
    assert config.line_of("metadata", 0) == line_of_text(FULL, "metadata = {")
    assert config.line_of("concurrency", 0) == line_of_text(FULL, "concurrency = 16")
    assert config.line_of("format", 1) is None
    assert config.line_of("dirs", None) is None


def test_dashed_keys_are_accepted_and_normalised(tmp_path: Path) -> None:
    text = """\
        log-format = "json"
        metrics-port = 9817
        hold-for = 1

        [[spool]]
        dirs = ["/s"]
        destination = "s3://bucket/"
        delete-after = 5
        "sse-kms-key-id" = "alias/k"
        sse = "aws:kms"
        verify-before-delete = true
        multipart-threshold = 8388608
        """
    config = load_config_file(write(tmp_path, text))
    assert values(config.globals) == {"log_format": "json", "metrics_port": 9817, "hold_for": 1}
    got = values(config.spools[0].values)
    assert got.pop("dirs") == (Path("/s"),)
    assert str(got.pop("destination")) == "s3://bucket/"
    assert got == {
        "delete_after": 5,
        "sse_kms_key_id": "alias/k",
        "sse": "aws:kms",
        "verify_before_delete": True,
        "multipart_threshold": 8388608,
    }
    assert config.spools[0].values["delete_after"].spelled == "delete-after"
    assert config.line_of("delete_after", 0) == line_of_text(text, "delete-after")
    assert config.line_of("sse-kms-key-id", 0) == line_of_text(text, "sse-kms-key-id")
    assert config.line_of("metrics_port", None) == 2


def test_empty_global_part_is_fine(tmp_path: Path) -> None:
    config = load_config_file(
        write(tmp_path, '[[spool]]\ndirs = ["/s"]\ndestination = "s3://bucket/p/"\n')
    )
    assert config.globals == {}
    (spool,) = config.spools
    assert spool.line == 1
    assert set(spool.values) == {"dirs", "destination"}


def test_destination_may_be_a_global_default(tmp_path: Path) -> None:
    config = load_config_file(
        write(tmp_path, 'destination = "s3://bucket/"\n[[spool]]\ndirs = ["/s"]\n')
    )
    assert str(config.globals["destination"].value) == "s3://bucket/"
    assert set(config.spools[0].values) == {"dirs"}
    assert config.line_of("destination", 0) == 1


def test_sub_tables_dotted_keys_and_multiline_values_keep_lines_right(tmp_path: Path) -> None:
    text = '''\
        # a [[spool]] in a comment is not a header
        format = """
        [[spool]]
        hold_for = "not a key"
        {fname}"""

        [[spool]]
        dirs = [
            "/a",  # [[spool]] in a comment
            '/b]',
        ]
        destination = "s3://bucket/"
        metadata.source = "app"

        [spool.tags]
        retention = "30d"

        [[spool]]
        dirs = ["/c"]
        destination = 's3://bucket/"x/'
        hold_for = "soon"
        '''
    path, message = load_error(tmp_path, text)
    soon = line_of_text(text, 'hold_for = "soon"')
    assert message.startswith(f"{path}:{soon}: ")
    fixed = text.replace('hold_for = "soon"', "hold_for = 3")
    config = load_config_file(write(tmp_path, fixed))
    assert [s.line for s in config.spools] == [7, 18]
    assert config.line_of("format", None) == 2
    assert config.line_of("dirs", 0) == 8
    assert config.line_of("metadata", 0) == 13
    assert config.line_of("tags", 0) == 15
    assert config.line_of("hold_for", 1) == 21
    assert config.line_of("hold_for", 0) is None
    assert config.spools[0].values["tag"].value == (("retention", "30d"),)
    assert config.spools[0].values["dirs"].value == (Path("/a"), Path("/b]"))


# --- errors -----------------------------------------------------------------------------------

SPOOL = '[[spool]]\ndirs = ["/s"]\ndestination = "s3://bucket/"\n'


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        pytest.param(
            'hold_for = 1\n[[spool]]\ndirs = ["/s"\ndestination = "s3://b/"\n',
            4,
            r"invalid TOML: .*\(column \d+\)",
            id="syntax",
        ),
        pytest.param(
            SPOOL + "hold_fro = 1\n",
            4,
            r"^unknown key 'hold_fro' in \[\[spool\]\]; did you mean 'hold_for'\?$",
            id="unknown-spool-key",
        ),
        pytest.param(
            "# top\nholdfor = 1\n" + SPOOL,
            2,
            r"^unknown key 'holdfor' in the global part; did you mean 'hold_for'\?$",
            id="unknown-global-key",
        ),
        pytest.param(
            SPOOL + "[surprise]\nx = 1\n",
            4,
            r"unknown key 'surprise'",
            id="unknown-table",
        ),
        pytest.param(
            SPOOL + 'hold_for = "soon"\n',
            4,
            r"^invalid hold_for 'soon': expected a number$",
            id="hold-for-string",
        ),
        pytest.param(
            "delete_after = true\n" + SPOOL,
            1,
            r"^invalid delete_after True: expected a number, got a boolean$",
            id="bool-is-not-a-number",
        ),
        pytest.param(
            '[[spool]]\ndirs = 3\ndestination = "s3://bucket/"\n',
            2,
            r"^invalid dirs 3: expected a non-empty list of directory paths \(strings\)$",
            id="dirs-string",
        ),
        pytest.param(
            '[[spool]]\ndestination = "s3://bucket/"\ndirs = ["/s", 3]\n',
            3,
            r"^invalid dirs \['/s', 3\]: expected a non-empty list",
            id="dirs-not-strings",
        ),
        pytest.param(
            '[[spool]]\ndestination = "s3://bucket/"\ndirs = []\n',
            3,
            r"^invalid dirs \[\]: expected a non-empty list",
            id="dirs-empty",
        ),
        pytest.param(
            SPOOL + "metadata = 3\n",
            4,
            r"^invalid metadata 3: expected a table of strings",
            id="metadata-string",
        ),
        pytest.param(
            SPOOL + "\n[spool.tags]\nretention = 30\n",
            5,
            r"^invalid tags \{'retention': 30\}: expected a table of strings",
            id="tags-int-value",
        ),
        pytest.param(
            SPOOL + "max_attempts = 2.5\n",
            4,
            r"^invalid max_attempts 2.5: expected an integer, got a float$",
            id="max-attempts-float",
        ),
        pytest.param(
            SPOOL + "part_size = 1.5\n",
            4,
            r"^invalid part_size 1.5: expected bytes or a size like 8MiB$",
            id="size-float",
        ),
        pytest.param(
            SPOOL + "no_clobber = 1\n",
            4,
            r"^invalid no_clobber 1: expected true or false$",
            id="bool-string",
        ),
        pytest.param(
            SPOOL + 'checksum = "md5"\n',
            4,
            r"^invalid checksum 'md5': must be one of auto, sha256, crc64nvme, crc32, crc32c, "
            r"sha1, off$",
            id="bad-choice",
        ),
        pytest.param(
            'log_format = "yaml"\n' + SPOOL,
            1,
            r"^invalid log_format 'yaml': must be one of text, json$",
            id="bad-global-choice",
        ),
        pytest.param(
            SPOOL + "concurrency = 8\n",
            4,
            r"'concurrency' applies to the whole run: set it in the global part",
            id="global-only-in-spool",
        ),
        pytest.param(
            SPOOL + "log-format = 'json'\n",
            4,
            r"'log-format' applies to the whole run",
            id="global-only-dashed-in-spool",
        ),
        pytest.param(
            'dirs = ["/s"]\n' + SPOOL,
            1,
            r"'dirs' must be set in each \[\[spool\]\] section",
            id="dirs-global",
        ),
        pytest.param(
            SPOOL + "hold_for = 1\nhold-for = 2\n",
            5,
            r"'hold_for' is set twice \('hold_for' and 'hold-for'\)",
            id="both-spellings",
        ),
        pytest.param(
            SPOOL + '\n[[spool]]\ndestination = "s3://bucket/"\n',
            5,
            r"\[\[spool\]\] #2 has no 'dirs'",
            id="missing-dirs",
        ),
        pytest.param(
            'hold_for = 1\n\n[[spool]]\ndirs = ["/s"]\n',
            3,
            r"\[\[spool\]\] #1 has no 'destination'",
            id="missing-destination",
        ),
        pytest.param(
            "hold_for = 1\n",
            1,
            r"no \[\[spool\]\] section",
            id="no-spool",
        ),
        pytest.param("", 1, r"no \[\[spool\]\] section", id="empty-file"),
        pytest.param(
            '# x\n[spool]\ndirs = ["/s"]\ndestination = "s3://b/"\n',
            2,
            r"'spool' must be written as \[\[spool\]\] sections",
            id="single-table",
        ),
        pytest.param(
            'spool = [{ dirs = ["/s"], destination = "s3://b/" }]\n',
            1,
            r"'spool' must be written as \[\[spool\]\] sections",
            id="inline-array",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, pattern: str) -> None:
    path, message = load_error(tmp_path, text)
    prefix = f"{path}:{line}: "
    assert message.startswith(prefix), message
    assert re.search(pattern, message[len(prefix) :]), message
    assert "\n" not in message


def test_syntax_error_line_comes_from_tomllib(tmp_path: Path) -> None:
    text = SPOOL + "\n\nhold_for = = 1\n"
    path, message = load_error(tmp_path, text)
    assert message.startswith(f"{path}:6: invalid TOML: ")
    assert "(at line" not in message


def test_duplicate_key_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, SPOOL + 'destination = "noop"\n')
    assert message.startswith(f"{path}:4: invalid TOML: ")


def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(SPOOL.encode() + b'format = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:4: invalid TOML: not valid"):
        load_config_file(path)


def test_missing_file_has_no_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value) == f"{path}: cannot read config file: No such file or directory"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: cannot read config"):
        load_config_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, SPOOL)
    path.chmod(0)
    with pytest.raises(ConfigError, match=r": cannot read config file: Permission denied$"):
        load_config_file(path)


def test_every_key_rejects_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    """Every config-file key is parsed by its option's parser (none is passed through)."""
    for option in OPTIONS:
        if not option.in_file:
            continue
        text = SPOOL.replace("[[spool]]", f"{option.name} = {{ x = 1 }}\n[[spool]]")
        if option.scope is Scope.SECTION:
            text = f'[[spool]]\ndestination = "s3://bucket/"\n{option.name} = {{ x = 1 }}\n'

        path, message = load_error(tmp_path, text)
        line = line_of_text(text, f"{option.name} = ")
        assert message.startswith(f"{path}:{line}: invalid {option.name} {{'x': 1}}: "), message


# --- every option through the file, and errors found after parsing -----------------------------

# One value per option: (TOML literal, environment string, what reaches Config/S3Options/App).
SAMPLES: dict[str, tuple[str, str, object]] = {
    "hold_for": ("2.5", "2.5", 2.5),
    "delete_after": ("120", "120", 120.0),
    "min_free": ('"2GiB"', "2GiB", MinFree(bytes=2 << 30)),
    "format": ('"x/{fname}"', "x/{fname}", KeyTemplate.parse("x/{fname}")),
    "hostname": ('"node-17"', "node-17", "node-17"),
    "manifest": (
        '"_m/{uuid4}.jsonl"',
        "_m/{uuid4}.jsonl",
        KeyTemplate.parse_manifest("_m/{uuid4}.jsonl"),
    ),
    "dry_run": ("true", "1", True),
    "no_upload": ("true", "yes", False),  # Config.upload
    "no_cleanup": ("true", "true", False),  # Config.cleanup
    "concurrency": ("8", "8", 8),
    "concurrency_mode": ('"fixed"', "fixed", "fixed"),
    "bwlimit": ('"20M"', "20M", 20 << 20),
    "endpoint_url": ('"http://127.0.0.1:9000"', "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    "region": ('"eu-west-1"', "eu-west-1", "eu-west-1"),
    "profile": ('"ingest"', "ingest", "ingest"),
    "checksum": ('"sha256"', "sha256", "sha256"),
    "no_clobber": ("true", "on", True),
    "addressing_style": ('"path"', "path", "path"),
    "multipart_threshold": ('"8MiB"', "8MiB", 8 << 20),
    "part_size": ("6291456", "6MiB", 6 << 20),
    "part_concurrency": ("6", "6", 6),
    "max_attempts": ("3", "3", 3),
    "connect_timeout": ("2.5", "2.5", 2.5),
    "read_timeout": ("30", "30", 30.0),
    "engine": ('"boto3"', "boto3", "boto3"),
    "storage_class": ('"STANDARD_IA"', "STANDARD_IA", "STANDARD_IA"),
    "sse": ('"AES256"', "AES256", "AES256"),
    "sse_kms_key_id": ('"alias/k"', "alias/k", "alias/k"),
    "acl": ('"private"', "private", "private"),
    "content_type": ('"application/json"', "application/json", "application/json"),
    "metadata": ('{ a = "1", b = "x=y" }', "a=1 b=x=y", (("a", "1"), ("b", "x=y"))),
    "tag": ('{ r = "30d" }', "r=30d", (("r", "30d"),)),
    "compress": ('"zstd"', "zstd", "zstd"),
    "verify_before_delete": ("true", "1", True),
    "watch": ("true", "1", True),
    "interval": ("5", "5", 5.0),
    "metrics_file": ('"/tmp/x.prom"', "/tmp/x.prom", Path("/tmp/x.prom")),
    "metrics_port": ("9817", "9817", 9817),
    "metrics_address": ('"0.0.0.0"', "0.0.0.0", "0.0.0.0"),
    "verbose": ("2", "2", logging.DEBUG),  # AppOptions.level
    "quiet": ("2", "2", logging.ERROR),
    "log_format": ('"json"', "json", "json"),
    "include": ('["*.json", "logs/"]', "*.json\nlogs/", ("*.json", "logs/")),
    "exclude": ('["*.tmp", ".*"]', "*.tmp\n.*", ("*.tmp", ".*")),
    "require_marker": ('".done"', ".done", ".done"),
    "state_dir": ('"/var/lib/spool_tool"', "/var/lib/spool_tool", Path("/var/lib/spool_tool")),
    "allow_network_state": ("true", "1", True),
    "preserve_mtime": ("true", "1", True),
    "recursive": ("true", "1", True),
    "max_depth": ("3", "3", 3),
    "prune_empty_dirs": ("true", "1", True),
}
# Options that only make sense with another one.
COMPANIONS = {
    "sse_kms_key_id": {"sse": ('"aws:kms"', "aws:kms")},
    "metrics_port": {"watch": ("true", "1")},
    "max_depth": {"recursive": ("true", "1")},
    "prune_empty_dirs": {"recursive": ("true", "1")},
}
SETTABLE = [o for o in OPTIONS if o.in_file and o.style is not Style.POSITIONAL]


def test_samples_cover_every_option() -> None:
    assert set(SAMPLES) == {o.name for o in SETTABLE}


def reached(option: Option, run: dict[str, Setting], job: dict[str, Setting]) -> object:
    """The value ``option`` gave the frozen Config, S3Options or AppOptions."""
    app = build_app_options(run)
    config = build_config(job)
    if option.name in {"verbose", "quiet"}:
        return app.level
    holder = {"app": app, "s3": config.s3, "config": config}[option.target or ""]
    return getattr(holder, option.field or option.name)


def resolve_file(path: Path, environ: dict[str, str] | None = None) -> tuple[Any, Any]:
    run, jobs, _ = resolve((), {"config": Setting(str(path), "--config")}, environ or {})
    return run, jobs


PLACES = [
    pytest.param(option, place, id=f"{option.name}-{place}")
    for option in SETTABLE
    for place in ("global", "spool")
    if place == "global" or option.scope is not Scope.RUN  # whole-run: rejected in [[spool]]
]


@pytest.mark.parametrize(("option", "place"), PLACES)
def test_every_option_works_as_a_config_key(tmp_path: Path, option: Option, place: str) -> None:
    toml, _, expected = SAMPLES[option.name]
    lines = [f"{name} = {value}" for name, (value, _) in COMPANIONS.get(option.name, {}).items()]
    key = f"{option.name} = {toml}"
    head, spool = ([key], []) if place == "global" else ([], [key])
    text = "\n".join([*lines, *head, "[[spool]]", 'dirs = ["/s"]', 'destination = "noop"', *spool])
    run, (job,) = resolve_file(write(tmp_path, text + "\n"))
    assert reached(option, run, job) == expected
    assert job[option.name].where == f"{tmp_path / 'spool_tool.toml'}:{line_of_text(text, key)}"


def test_dashed_spelling_and_tags_alias_are_accepted(tmp_path: Path) -> None:
    text = 'read-timeout = 7\n[[spool]]\ndirs = ["/s"]\ndestination = "noop"\ntags = { a = "b" }\n'
    _, (job,) = resolve_file(write(tmp_path, text))
    config = build_config(job)
    assert config.s3.read_timeout == 7.0
    assert config.s3.tags == (("a", "b"),)


def build_everything(path: Path) -> None:
    """What a run does before touching anything: resolve, then build every frozen value."""
    run, jobs = resolve_file(path)
    build_app_options(run)
    for job in jobs:
        build_config(job)


BASE = '[[spool]]\ndirs = ["/s"]\ndestination = "noop"\n'


@pytest.mark.parametrize(
    ("text", "needle", "reason"),
    [
        (BASE + 'part_size = "1MiB"\n', "part_size", "must be at least 5 MiB"),
        (BASE + 'multipart_threshold = "lots"\n', "multipart_threshold", "expected bytes"),
        ("interval = 0\n" + BASE, "interval", "must be a number of seconds > 0"),
        ("metrics_port = 70000\nwatch = true\n" + BASE, "metrics_port", "must be 0..65535"),
        ("metrics_port = 9817\n" + BASE, "metrics_port", "only in daemon mode"),
        ('metrics_file = "/no/such/dir/m.prom"\n' + BASE, "metrics_file", "does not exist"),
        (BASE + 'checksum = "md5"\n', "checksum", "must be one of"),
        (BASE + "hold_for = -1\n", "hold_for", "must be a finite number >= 0"),
        ("concurrency = 0\n" + BASE, "concurrency", "must be 1..1024"),
        (BASE + 'format = "{nope}"\n', "format", "unknown"),
        (BASE + 'endpoint_url = "ftp://x"\n', "endpoint_url", "expected http(s)://HOST"),
        (BASE + 'sse_kms_key_id = "k"\n', "sse_kms_key_id", "needs --sse aws:kms"),
        (BASE + "connect_timeout = 0\n", "connect_timeout", "> 0"),
        (BASE + 'storage_class = "cold"\n', "storage_class", "STANDARD_IA"),
        (BASE.replace('"noop"', '"s3://B/"'), "destination", "not a valid S3 bucket name"),
        (BASE + 'metadata = { "bad\\nkey" = "v" }\n', "metadata", "invalid key"),
        # Found by the issue-8 black-box run: each of these was accepted, then failed later
        # without its line (or with a Rust panic's traceback from obstore).
        (BASE + 'endpoint_url = "http://[::1"\n', "endpoint_url", "expected http(s)://HOST"),
        (BASE + 'endpoint_url = "http://h:99999"\n', "endpoint_url", "port"),
        (BASE + 'endpoint_url = "http://:80"\n', "endpoint_url", "expected http(s)://HOST"),
        (BASE + 'content_type = "text/plain\\nX: y"\n', "content_type", "control character"),
        (BASE + 'metadata = { k = "a\\u0001b" }\n', "metadata", "control character"),
        (BASE + 'metadata = { "a:b" = "1" }\n', "metadata", "HTTP header name"),
        (BASE + 'sse = "aws:kms"\nsse_kms_key_id = "a\\nb"\n', "sse_kms_key_id", "control"),
        (BASE + 'engine = "obstore"\nacl = "private"\n', "engine", "cannot send --acl"),
        (BASE + 'engine = "obstore"\nchecksum = "crc32"\n', "engine", "cannot send --checksum"),
        (BASE + 'state_dir = "/s/new/state"\n', "state_dir", "inside /s/new"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isidentifier() else None,
)
def test_bad_values_name_the_line_of_their_key(
    tmp_path: Path, text: str, needle: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        build_everything(path)
    error = info.value
    assert error.where == f"{path}:{line_of_text(text, needle + ' =')}", str(error)
    assert error.option == needle
    assert reason in error.reason
    assert str(error).startswith(f"{path}:{line_of_text(text, needle + ' =')}: invalid {needle}")


def test_command_line_only_options_are_not_keys(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, "status = true\n" + BASE)
    assert message == f"{path}:1: 'status' is a command line option, not a config-file key"
