"""The journal's outbox and claimed manifests (``outbox.py``), and the manifest line format."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from spool_tool.journal import Claim, Completion, Journal
from spool_tool.manifest import entry_line, rfc3339
from spool_tool.outbox import OutboxEntry


def done(name: str, key: str = "") -> Completion:
    return Completion(name, name, key or f"k/{name}", 3, '"e"', "CRC64NVME:x", 10**18, 2 * 10**18)


def claim(j: Journal, *names: str) -> None:
    j.add_claims(Claim(n, 1, i, f"k/{n}") for i, n in enumerate(names))


def test_completion_queues_its_entry_only_with_a_manifest_bucket(journal: Journal) -> None:
    claim(journal, "a", "b")
    journal.complete([done("a")])
    assert journal.unlisted() == 0
    journal.complete([done("b")], manifest_bucket="bkt")
    assert journal.pending_entries() == journal.unlisted() == 1
    assert journal.claims == {}
    assert journal.ledger_entry("b") is not None  # the same transaction wrote the ledger


def test_a_claimed_manifest_keeps_its_entries_and_later_ones_wait(
    journal: Journal, spool: Path
) -> None:
    claim(journal, "a", "b", "c")
    journal.complete([done("a"), done("b")], manifest_bucket="bkt")
    first = journal.claim_manifest("m/1", "host")
    assert first is not None
    assert (first.key, first.entries) == ("m/1", 2)
    journal.complete([done("c")], manifest_bucket="bkt")  # after the claim: not in it
    assert journal.pending_entries() == 1
    journal.close()
    with Journal.open(spool) as again:  # a killed run's claim survives
        (left,) = again.claimed_manifests()
        assert (left.id, left.key, left.hostname, left.entries) == (first.id, "m/1", "host", 2)
        assert [e.source for e in again.manifest_entries(left.id, chunk=1)] == ["a", "b"]
        second = again.claim_manifest("m/2", "host")
        assert second is not None
        assert [e.source for e in again.manifest_entries(second.id)] == ["c"]
        again.manifest_written(first.id)
        assert [m.key for m in again.claimed_manifests()] == ["m/2"]
        again.manifest_written(second.id)
        assert again.unlisted() == 0
        assert again.claim_manifest("m/3", "host") is None  # nothing pending: no manifest
        assert again.claimed_manifests() == []


def test_manifest_upload_id_is_journaled(journal: Journal) -> None:
    claim(journal, "a")
    journal.complete([done("a")], manifest_bucket="bkt")
    claimed = journal.claim_manifest("m/1", "h")
    assert claimed is not None
    journal.set_manifest_upload_id(claimed.id, "UP-1")
    assert journal.claimed_manifests()[0].upload_id == "UP-1"


def test_recovered_entries_drop_the_claim_and_write_no_ledger_row(journal: Journal) -> None:
    claim(journal, "a")
    entry = OutboxEntry("bkt", "k/a", None, None, None, "a", None, 5)
    journal.list_recovered([entry])
    assert journal.claims == {}
    assert journal.ledger_entry("a") is None
    claimed = journal.claim_manifest("m", "h")
    assert claimed is not None
    assert list(journal.manifest_entries(claimed.id)) == [entry]


def test_a_journal_from_before_manifests_reads_as_empty(spool: Path) -> None:
    state = spool / ".spool_tool"
    state.mkdir()
    db = state / "journal.sqlite3"
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE claims (name BLOB PRIMARY KEY, dev, ino, key, claimed_at, "
                    "state, size, mtime_ns, upload_id, etag, checksum)")  # fmt: skip
    read = Journal.read_only(spool)
    assert read is not None
    try:
        assert read.unlisted() == read.pending_entries() == 0
    finally:
        read.close()


def test_rfc3339_is_exact_utc_and_none_when_unknown() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_500_000_000_123_456_789) == "2017-07-14T02:40:00.123456789Z"
    assert rfc3339(1_500_000_000_500_000_000) == "2017-07-14T02:40:00.5Z"
    assert rfc3339(-1) == "1969-12-31T23:59:59.999999999Z"
    assert rfc3339(None) is None
    assert rfc3339(300_000_000_000 * 10**9) is None  # past the year 9999


def test_entry_line_is_one_deterministic_json_object() -> None:
    entry = OutboxEntry("bkt", "p/ü.csv", 7, '"abc"', "SHA256:x=", "ü.csv", 10**18, 2 * 10**18)
    line = entry_line(entry, "/var/spool/app", "h")
    assert line == entry_line(entry, "/var/spool/app", "h")
    assert "\n" not in line
    assert "ü" in line  # UTF-8, not escaped
    assert json.loads(line) == {
        "v": 1, "bucket": "bkt", "key": "p/ü.csv", "size": 7, "etag": "abc",
        "checksum": "SHA256:x=", "source": "ü.csv", "spool_dir": "/var/spool/app",
        "hostname": "h", "source_mtime": "2001-09-09T01:46:40Z",
        "uploaded_at": "2033-05-18T03:33:20Z",
    }  # fmt: skip


def test_an_undecodable_source_name_is_escaped_in_an_ascii_line() -> None:
    name = b"caf\xff.csv".decode("utf-8", "surrogateescape")
    entry = OutboxEntry("bkt", "k/1", 1, None, None, name, None, 0)
    line = entry_line(entry, "/s", "h")
    line.encode("ascii")
    assert json.loads(line)["source"] == name
