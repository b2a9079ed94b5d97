"""Unit tests for ``spool_tool.journal.Journal``: lock, claims, uploads, ledger, read-only."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from spool_tool.errors import FatalError
from spool_tool.journal import Claim, Completion, Journal, LedgerEntry, SpoolBusyError
from tests.helpers import damage_table

BAD_NAME = os.fsdecode(b"x\xff")


def reopen(j: Journal, spool: Path) -> Journal:
    j.close()
    return Journal.open(spool)


def tree(root: Path) -> set[str]:
    return {str(Path(d, n).relative_to(root)) for d, ds, fs in os.walk(root) for n in ds + fs}


# -- lock -------------------------------------------------------------------------------------


def test_open_creates_the_state_directory(spool: Path) -> None:
    with Journal.open(spool) as j:
        assert (spool / ".spool_tool").is_dir()
        assert (spool / ".spool_tool" / "lock").is_file()
        assert (spool / ".spool_tool" / "journal.sqlite3").is_file()
        assert j.claims == {}


def test_second_open_is_busy_until_the_first_closes(spool: Path) -> None:
    first = Journal.open(spool)
    try:
        with pytest.raises(SpoolBusyError) as info:
            Journal.open(spool)
        assert str(spool) in str(info.value)
        with pytest.raises(SpoolBusyError):  # and again: the failed attempt leaked nothing
            Journal.open(spool)
    finally:
        first.close()
    second = Journal.open(spool)
    second.close()


def test_context_manager_releases_the_lock(spool: Path) -> None:
    with Journal.open(spool):
        pass
    with Journal.open(spool):
        pass


def test_open_fails_cleanly_on_a_missing_spool(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="state directory"):
        Journal.open(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


# -- claims -----------------------------------------------------------------------------------


def test_claims_survive_close_and_reopen(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("a.csv", 10, 100, "p/a.csv"), Claim("b.csv", 10, 101, "p/b.csv")])
    assert journal.get("a.csv") == Claim("a.csv", 10, 100, "p/a.csv")
    j = reopen(journal, spool)
    try:
        assert set(j.claims) == {"a.csv", "b.csv"}
        a = j.get("a.csv")
        assert a is not None
        assert (a.key, a.dev, a.ino, a.state) == ("p/a.csv", 10, 100, "claimed")
        assert a.upload_id is None
        assert j.get("zzz") is None
    finally:
        j.close()


def test_add_claims_empty_batch_is_a_no_op(journal: Journal) -> None:
    journal.add_claims([])
    assert journal.claims == {}


def test_add_claims_replaces_an_existing_claim(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("a", 1, 1, "old-key")])
    journal.add_claims([Claim("a", 1, 2, "new-key")])
    assert journal.get("a") == Claim("a", 1, 2, "new-key")
    j = reopen(journal, spool)
    try:
        assert j.claims == {"a": Claim("a", 1, 2, "new-key")}
    finally:
        j.close()


def test_drop_claims(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("a", 1, 1, "ka"), Claim("b", 1, 2, "kb")])
    journal.drop_claims(["a", "not-claimed"])
    assert set(journal.claims) == {"b"}
    j = reopen(journal, spool)
    try:
        assert set(j.claims) == {"b"}
    finally:
        j.close()


def test_set_upload_id_persists_and_clears(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("big", 1, 1, "k/big")])
    journal.set_upload_id("big", "UPLOAD-123")
    claim = journal.get("big")
    assert claim is not None
    assert claim.upload_id == "UPLOAD-123"
    j = reopen(journal, spool)
    try:
        claim = j.get("big")
        assert claim is not None
        assert claim.upload_id == "UPLOAD-123"
        assert claim.key == "k/big"
        j.set_upload_id("big", None)
        claim = j.get("big")
        assert claim is not None
        assert claim.upload_id is None
    finally:
        j.close()
    j = Journal.open(spool)
    try:
        claim = j.get("big")
        assert claim is not None
        assert claim.upload_id is None
    finally:
        j.close()


def test_mark_uploaded_persists_identity(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("big", 7, 8, "k/big")])
    journal.set_upload_id("big", "U1")
    journal.mark_uploaded("big", 12345, 1_700_000_000_123_456_789, '"etag"', "crc64==")
    expected = Claim(
        "big",
        7,
        8,
        "k/big",
        state="uploaded",
        size=12345,
        mtime_ns=1_700_000_000_123_456_789,
        upload_id=None,
        etag='"etag"',
        checksum="crc64==",
    )
    assert journal.get("big") == expected
    j = reopen(journal, spool)
    try:
        assert j.get("big") == expected
    finally:
        j.close()


def test_complete_moves_claims_to_the_ledger(journal: Journal, spool: Path) -> None:
    journal.add_claims([Claim("a.csv", 1, 1, "p/a.csv"), Claim("b.csv", 1, 2, "p/b.csv")])
    journal.complete([Completion("a.csv", "a~1.csv", "p/a.csv", 42, '"e"', "sum")])
    assert set(journal.claims) == {"b.csv"}
    assert journal.ledger_entry("a~1.csv") == LedgerEntry("p/a.csv", 42, '"e"', "sum")
    assert journal.ledger_entry("a.csv") is None
    journal.complete([])
    j = reopen(journal, spool)
    try:
        assert set(j.claims) == {"b.csv"}
        assert j.ledger_entry("a~1.csv") == LedgerEntry("p/a.csv", 42, '"e"', "sum")
        j.forget_completed(["a~1.csv", "never-there"])
        assert j.ledger_entry("a~1.csv") is None
        j.forget_completed([])
    finally:
        j.close()
    j = Journal.open(spool)
    try:
        assert j.ledger_entry("a~1.csv") is None
    finally:
        j.close()


def test_failed_transaction_rolls_back(journal: Journal) -> None:
    journal.add_claims([Claim("a", 1, 1, "k")])
    with pytest.raises(KeyError):
        journal.set_upload_id("not-claimed", "U")
    journal.set_upload_id("a", "U")  # the journal is still usable
    claim = journal.get("a")
    assert claim is not None
    assert claim.upload_id == "U"


def test_undecodable_names_round_trip(journal: Journal, spool: Path) -> None:
    assert BAD_NAME == "x\udcff"
    journal.add_claims([Claim(BAD_NAME, 1, 1, "k/bad")])
    journal.set_upload_id(BAD_NAME, "U")
    j = reopen(journal, spool)
    try:
        assert set(j.claims) == {BAD_NAME}
        claim = j.get(BAD_NAME)
        assert claim is not None
        assert claim.upload_id == "U"
        j.complete([Completion(BAD_NAME, BAD_NAME, "k/bad", 1, None, None)])
        assert j.claims == {}
        assert j.ledger_entry(BAD_NAME) == LedgerEntry("k/bad", 1, None, None)
        j.forget_completed([BAD_NAME])
        assert j.ledger_entry(BAD_NAME) is None
    finally:
        j.close()


# -- read_only --------------------------------------------------------------------------------


def test_read_only_without_a_journal_returns_none_and_creates_nothing(spool: Path) -> None:
    before = tree(spool)
    assert Journal.read_only(spool) is None
    assert tree(spool) == before
    assert Journal.read_only(spool.parent / "missing") is None
    assert not (spool.parent / "missing").exists()


def test_read_only_reads_claims(spool: Path) -> None:
    with Journal.open(spool) as j:
        j.add_claims([Claim("a", 3, 4, "k/a"), Claim(BAD_NAME, 3, 5, "k/bad")])
    ro = Journal.read_only(spool)
    assert ro is not None
    try:
        assert ro.get("a") == Claim("a", 3, 4, "k/a")
        assert set(ro.claims) == {"a", BAD_NAME}
        with pytest.raises(FatalError, match="readonly database"):
            ro.add_claims([Claim("b", 1, 1, "k/b")])  # read-only really means read-only
    finally:
        ro.close()


def test_read_only_takes_no_lock(spool: Path) -> None:
    with Journal.open(spool) as j:
        j.add_claims([Claim("a", 3, 4, "k/a")])
        ro = Journal.read_only(spool)  # e.g. --status while a run is in progress
        assert ro is not None
        try:
            assert set(ro.claims) == {"a"}
        finally:
            ro.close()


def test_read_only_creates_no_files_when_a_journal_exists(spool: Path) -> None:
    with Journal.open(spool) as j:
        j.add_claims([Claim("a", 3, 4, "k/a")])
    before = tree(spool)
    ro = Journal.read_only(spool)
    assert ro is not None
    try:
        assert set(ro.claims) == {"a"}
    finally:
        ro.close()
    assert tree(spool) == before


def test_read_only_with_a_relative_spool_dir(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9.8: ``--dry-run sp`` / ``--status sp`` open the journal read-only through a file
    URI, which needs an absolute path."""
    with Journal.open(spool) as j:
        j.add_claims([Claim("a", 3, 4, "k/a")])
    monkeypatch.chdir(spool.parent)
    ro = Journal.read_only(Path(spool.name))
    assert ro is not None
    try:
        assert set(ro.claims) == {"a"}
    finally:
        ro.close()


# -- a damaged journal (issue 9.5) ------------------------------------------------------------


def test_damaged_ledger_is_one_fatal_sentence_with_the_way_out(spool: Path) -> None:
    with Journal.open(spool) as j:
        j.complete([Completion(f"n{i}", f"n{i}", f"k/{i}", 1, None, None) for i in range(300)])
    damage_table(spool, "ledger")
    path = spool / ".spool_tool" / "journal.sqlite3"
    with Journal.open(spool) as j:  # the claims are intact: it opens
        j.add_claims([Claim("a", 1, 2, "k/a")])
        with pytest.raises(FatalError) as raised:
            j.complete([Completion("a", "a", "k/a", 1, None, None)])
    message = str(raised.value)
    assert message.startswith(f"{path}: the journal is damaged (database disk image is malformed)")
    assert f"mv {path} {path}.damaged" in message
    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)


def test_damaged_claims_fail_open_and_read_only_and_release_the_lock(spool: Path) -> None:
    with Journal.open(spool) as j:
        j.add_claims([Claim(f"n{i}", 1, i, f"k/{i}") for i in range(300)])
    damage_table(spool, "claims")
    with pytest.raises(FatalError, match="the journal is damaged"):
        Journal.open(spool)
    with pytest.raises(FatalError, match="the journal is damaged"):
        Journal.read_only(spool)
    (spool / ".spool_tool" / "journal.sqlite3").rename(spool / "aside.sqlite3")
    with Journal.open(spool) as j:  # not busy: the failed open released the lock
        assert j.claims == {}


def test_not_a_database_is_damaged_too(spool: Path) -> None:
    (spool / ".spool_tool").mkdir()
    (spool / ".spool_tool" / "journal.sqlite3").write_bytes(b"not sqlite at all" * 512)
    with pytest.raises(FatalError, match=r"the journal is damaged \(file is not a database\)"):
        Journal.open(spool)
    with pytest.raises(FatalError, match="the journal is damaged"):
        Journal.read_only(spool)
