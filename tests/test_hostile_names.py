"""Issue 9.6: a file name is escaped the same way in text logs, JSON logs, dry-run output,
``--status`` and the metrics, and every log record stays one physical line.

Names that can forge a log line (a newline followed by a fake timestamp), colour a terminal (an
escape sequence) or are not UTF-8 at all are made in a real spool and the real command is run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spool_tool.backlog import Backlog
from spool_tool.observe.metrics import MetricsListener
from tests.helpers import run_cli

FORGED = "a\n2026-01-01T00:00:00Z ERROR forged.txt"
COLOURED = "\x1b[31mred.txt"
UNDECODABLE = b"bad\xff.txt"
# Valid in a key (so they ship), but a C1 control and a backslash must still be escaped.
NEL = "nel\x85line.txt"
BACKSLASH = "back\\slash.txt"
# How each one reads in every output (spool_tool.display.display_name).
SHOWN = {
    "forged": "a\\n2026-01-01T00:00:00Z ERROR forged.txt",
    "coloured": "\\x1b[31mred.txt",
    "undecodable": "bad\\xff.txt",
    "nel": "nel\\x85line.txt",
    "backslash": "back\\\\slash.txt",
}
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) ")


def hostile_spool(root: Path) -> Path:
    new = root / "spool" / "new"
    new.mkdir(parents=True)
    (new / FORGED).write_bytes(b"1")
    (new / COLOURED).write_bytes(b"2")
    (new / NEL).write_bytes(b"4")
    (new / BACKSLASH).write_bytes(b"5")
    with open(os.path.join(os.fsencode(new), UNDECODABLE), "wb") as fh:
        fh.write(b"3")  # not UTF-8: cannot become a key, fails (one line) and stays
    return root / "spool"


def test_text_log_is_one_physical_line_per_record(tmp_path: Path) -> None:
    spool = hostile_spool(tmp_path)
    result = run_cli("-v", spool, "noop", timeout=60)
    assert result.returncode == 1, result.stderr  # the undecodable name fails
    lines = result.stderr.splitlines()
    assert all(LINE.match(line) for line in lines), result.stderr
    assert "\x1b" not in result.stderr
    assert "\udcff" not in result.stderr
    assert "\\udcff" not in result.stderr
    new = spool / "new"
    for shown in SHOWN.values():
        assert any(f"{new}/{shown}" in line for line in lines), (shown, result.stderr)
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_json_log_is_valid_and_escapes_names_as_the_text_log(tmp_path: Path) -> None:
    spool = hostile_spool(tmp_path)
    result = run_cli("-v", "--log-format", "json", spool, "noop", timeout=60)
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    files = {r["file"] for r in records if "file" in r}
    new = spool / "new"
    assert {f"{new}/{shown}" for shown in SHOWN.values()} <= files
    for record in records:
        for text in (record["message"], record.get("file", "")):
            assert text.isprintable(), record  # no newline, escape or lone surrogate inside


def test_dry_run_output_escapes_names(tmp_path: Path) -> None:
    spool = hostile_spool(tmp_path)
    result = run_cli("--dry-run", spool, "noop", timeout=60)
    assert "Traceback" not in result.stderr
    new = spool / "new"
    assert sorted(result.stdout.splitlines()) == [
        f"would upload {new}/{SHOWN['backslash']} -> noop://{SHOWN['backslash']}",
        f"would upload {new}/{SHOWN['nel']} -> noop://{SHOWN['nel']}",
    ]
    warnings = result.stderr.splitlines()  # the names that cannot be keys would fail
    assert all(LINE.match(line) for line in warnings), result.stderr
    assert len([line for line in warnings if " WARNING " in line]) == 3, result.stderr
    assert f"key '{SHOWN['undecodable']}' " not in result.stderr  # escaped once, not twice
    assert f"('{SHOWN['undecodable']}')" in result.stderr
    assert "\x1b" not in result.stderr
    for shown in (SHOWN["forged"], SHOWN["coloured"], SHOWN["undecodable"]):
        # the line names the file once, escaped once (not again inside the cause)
        (line,) = [line for line in warnings if shown in line]
        assert f" WARNING {new}/{shown}: would fail: " in line, line
        assert line.count(str(new)) == 1, line


def test_status_escapes_the_spool_dir(tmp_path: Path) -> None:
    root = tmp_path / "x\x1b[2Jy"
    (root / "new").mkdir(parents=True)
    table = run_cli("--status", root, env={"COLUMNS": "200"}, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout
    assert "x\\x1b[2Jy" in table.stdout
    document = run_cli("--status", "--log-format", "json", root, timeout=60)
    (spool,) = json.loads(document.stdout)["spools"]
    assert spool["spool_dir"] == f"{tmp_path}/x\\x1b[2Jy"


def test_metrics_label_escapes_the_spool_dir() -> None:
    listener = MetricsListener()
    listener.set_backlog(Backlog(os.fsdecode(b"/spool/\xff\n"), files_waiting=1))
    families = text_string_to_metric_families(generate_latest(listener.registry).decode("utf-8"))
    labels = {
        sample.labels["spool_dir"]
        for family in families
        if family.name == "spool_tool_backlog_files"
        for sample in family.samples
    }
    assert labels == {"/spool/\\xff\\n"}
