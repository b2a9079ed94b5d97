"""The user docs name what the code declares: key-template tokens, exit statuses, metrics.

(The option table is checked against the schema in ``test_cli.py``.)
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from spool_tool.cli import ExitStatus
from spool_tool.keys import TOKENS
from spool_tool.observe.metrics import MetricsListener

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
METRICS_DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^#{2,3} ", text[start + len(heading) :], re.MULTILINE)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def test_readme_token_table_lists_exactly_the_tokens() -> None:
    table = _section(README, "### Key template")
    documented: set[str] = set()
    for cell in re.findall(r"^\| `([^|]+)` \|", table, re.MULTILINE):
        documented.update(re.findall(r"[A-Za-z_]\w*", cell))
    assert documented == set(TOKENS)


def test_readme_exit_table_lists_every_exit_status() -> None:
    table = _section(README, "## Failure semantics and exit status")
    documented = set(re.findall(r"^\| `(\d+)(?:\+N)?` \|", table, re.MULTILINE))
    assert documented == {str(int(status)) for status in ExitStatus}


def test_metrics_doc_names_every_metric() -> None:
    exposition = generate_latest(MetricsListener().registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) ", exposition, re.MULTILINE))
    assert names, exposition
    missing = sorted(name for name in names if name not in METRICS_DOC)
    assert not missing, f"docs/metrics.md does not describe {missing}"


def test_readme_config_section_names_exactly_the_whole_run_options() -> None:
    """The keys a config file accepts only in its global part are the schema's RUN scope."""
    from spool_tool.options import OPTIONS, Scope  # noqa: PLC0415

    section = " ".join(_section(README, "### Config file").split())
    listed = re.search(r"the whole-run options \(([^)]*)\) may only be set there", section)
    assert listed, "README '### Config file' no longer lists the whole-run options"
    names = set(re.findall(r"`([a-z_*]+)`", listed.group(1)))
    expanded = {
        o.name
        for o in OPTIONS
        for n in names
        if o.name == n or (n.endswith("*") and o.name.startswith(n[:-1]))
    }
    assert expanded == {o.name for o in OPTIONS if o.scope is Scope.RUN}
