"""Unit tests for ``spool_tool.keys``: template parsing, rendering and key validation."""

from __future__ import annotations

import calendar
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spool_tool import keys
from spool_tool.config import parse_destination
from spool_tool.errors import ConfigError, FileError
from spool_tool.keys import (
    MAX_KEY_BYTES,
    TOKENS,
    FileFacts,
    KeyTemplate,
    fname_hash,
    full_key,
    normalise_spool_dir,
    short_hostname,
    whole_seconds,
)

# 2024-01-31T23:30:00Z: the evening before a month boundary.
NEAR_MIDNIGHT = calendar.timegm((2024, 1, 31, 23, 30, 0, 0, 0, 0))
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def facts(
    name: str = "data.csv",
    *,
    spool_dir: str = "var/spool/app",
    mtime: float = 1_700_000_000.0,
    ctime: float = 1_700_000_000.0,
    now: float = 1_700_000_100.0,
) -> FileFacts:
    return FileFacts(name=name, spool_dir=spool_dir, mtime=mtime, ctime=ctime, now=now)


def render(template: str, f: FileFacts | None = None) -> str:
    return KeyTemplate.parse(template).render(f if f is not None else facts())


# -- parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_parse_accepts_every_token(token: str) -> None:
    # spool_dir alone may render empty, so pair every token with a literal.
    template = KeyTemplate.parse(f"x/{{{token}}}")
    assert template.fields == frozenset({token})
    assert template.text == f"x/{{{token}}}"


def test_parse_accepts_all_tokens_together() -> None:
    text = "/".join(f"{{{t}}}" for t in TOKENS)
    assert KeyTemplate.parse(text).fields == frozenset(TOKENS)


def test_token_list_is_what_the_spec_documents() -> None:
    times = {f"{k}_{p}" for k in "mc" for p in ("YYYY", "MM", "DD", "hh", "mm", "ss")}
    others = {"uuid1", "uuid4", "fname", "now", "spool_dir", "hostname", "fname_hash"}
    nested = {"relpath", "reldir"}  # issue 11: nested spools
    assert set(TOKENS) == times | others | nested


@pytest.mark.parametrize(
    "text",
    [
        "{nope}",
        "{FNAME}",
        "{ fname }",
        "{m_yyyy}",
        "{fname.x}",
        "{fname[0]}",
        "{fname.__class__}",
        "{}",
        "{0}",
        "{1}/{fname}",
        "{fname}{",
        "}{fname}",
        "{fname",
        "fname}",
        "{{fname}",
    ],
)
def test_parse_rejects_unknown_positional_or_unbalanced_listing_tokens(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        KeyTemplate.parse(text)
    message = str(info.value)
    assert "valid tokens" in message
    for token in TOKENS:
        assert token in message


@pytest.mark.parametrize(
    "text", ["{fname!r}", "{fname!s}", "{now:>5}", "{now:05d}", "{now:{fname}}", "{fname!r:>3}"]
)
def test_parse_rejects_conversions_and_format_specs(text: str) -> None:
    with pytest.raises(ConfigError, match="conversions and format specs"):
        KeyTemplate.parse(text)


@pytest.mark.parametrize("text", ["", "{spool_dir}", "{spool_dir}{spool_dir}"])
def test_parse_rejects_templates_that_can_render_empty(text: str) -> None:
    with pytest.raises(ConfigError, match="empty key"):
        KeyTemplate.parse(text)


@pytest.mark.parametrize("text", ["/{fname}", "/", "/x", "/{spool_dir}/{fname}"])
def test_parse_rejects_leading_slash(text: str) -> None:
    with pytest.raises(ConfigError, match="must not start with '/'"):
        KeyTemplate.parse(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a//{fname}", "empty path segment"),
        ("{fname}/", "empty path segment"),
        ("./{fname}", "'.' or '..' as a path segment"),
        ("../{fname}", "'.' or '..' as a path segment"),
        ("{hostname}/../{fname}", "'.' or '..' as a path segment"),
        ("{fname}/..", "'.' or '..' as a path segment"),
    ],
)
def test_parse_rejects_empty_dot_and_dotdot_segments(text: str, reason: str) -> None:
    """Issue 9 audit: such a template failed every file at upload time on the fast path
    (obstore: "invalid key"), and shipped or failed on the boto3 path. Now refused up front."""
    with pytest.raises(ConfigError, match=re.escape(reason)):
        KeyTemplate.parse(text)


@pytest.mark.parametrize("text", ["a..b/{fname}", "..{fname}", "{fname}.", ".hidden/{fname}"])
def test_parse_accepts_dots_inside_a_segment(text: str) -> None:
    assert KeyTemplate.parse(text).text == text


@pytest.mark.parametrize("uri", ["s3://bucket-a/../x/", "s3://bucket-a/./x", "s3://bucket-a/a//b/"])
def test_destination_prefix_rejects_empty_dot_and_dotdot_segments(uri: str) -> None:
    with pytest.raises(ConfigError, match="path segment"):
        parse_destination(uri)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{spool_dir}/x", "var/spool/app/x"),
        ("constant", "constant"),
        ("{{fname}}", "{fname}"),
        ("a{{b}}c/{fname}", "a{b}c/data.csv"),
    ],
)
def test_parse_accepts_literal_text_and_escaped_braces(text: str, expected: str) -> None:
    assert render(text) == expected


def test_is_unique_per_file() -> None:
    assert KeyTemplate.parse("{fname}").is_unique_per_file
    assert KeyTemplate.parse("x/{uuid4}").is_unique_per_file
    assert KeyTemplate.parse("x/{uuid1}").is_unique_per_file
    assert not KeyTemplate.parse("{m_YYYY}/{now}").is_unique_per_file
    assert not KeyTemplate.parse("constant").is_unique_per_file


# -- render -----------------------------------------------------------------------------------


def test_render_zero_pads_every_time_field() -> None:
    early = float(calendar.timegm((2024, 3, 5, 7, 8, 9, 0, 0, 0)))
    f = facts(mtime=early, ctime=early)
    m = "{m_YYYY}-{m_MM}-{m_DD} {m_hh}:{m_mm}:{m_ss}"
    assert render(m, f) == "2024-03-05 07:08:09"
    assert render(m.replace("m_", "c_"), f) == "2024-03-05 07:08:09"


def test_render_pads_year_to_four_digits() -> None:
    year_99 = float(calendar.timegm((99, 1, 2, 0, 0, 0, 0, 0, 0)))
    assert render("{m_YYYY}/{m_MM}/{m_DD}", facts(mtime=year_99)) == "0099/01/02"


def test_render_m_and_c_tokens_use_their_own_timestamp() -> None:
    m = float(calendar.timegm((2020, 1, 1, 0, 0, 0, 0, 0, 0)))
    c = float(calendar.timegm((2021, 12, 31, 23, 59, 58, 0, 0, 0)))
    f = facts(mtime=m, ctime=c)
    assert render("{m_YYYY}{m_MM}{m_DD}{m_hh}{m_mm}{m_ss}", f) == "20200101000000"
    assert render("{c_YYYY}{c_MM}{c_DD}{c_hh}{c_mm}{c_ss}", f) == "20211231235958"


@pytest.fixture
def far_east_tz() -> Iterator[None]:
    """Local time nine hours ahead of UTC (a POSIX TZ string: no tzdata needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XST-9"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("far_east_tz")
def test_render_uses_utc_not_local_time() -> None:
    local = time.localtime(NEAR_MIDNIGHT)
    assert (local.tm_mon, local.tm_mday, local.tm_hour) == (2, 1, 8)  # the TZ is in effect
    f = facts(mtime=NEAR_MIDNIGHT, ctime=NEAR_MIDNIGHT)
    assert render("{m_YYYY}/{m_MM}/{m_DD}/{m_hh}", f) == "2024/01/31/23"
    assert render("{c_YYYY}/{c_MM}/{c_DD}/{c_hh}", f) == "2024/01/31/23"


def test_render_hive_template() -> None:
    f = facts("events.json.gz", mtime=NEAR_MIDNIGHT)
    assert (
        render("year={m_YYYY}/month={m_MM}/day={m_DD}/{fname}", f)
        == "year=2024/month=01/day=31/events.json.gz"
    )


def test_render_uuid4_is_fresh_per_call() -> None:
    template = KeyTemplate.parse("{uuid4}")
    f = facts()
    seen = {template.render(f) for _ in range(20)}
    assert len(seen) == 20
    for value in seen:
        assert UUID_RE.match(value)
        assert value[14] == "4"


def test_render_uuid1_is_a_uuid() -> None:
    template = KeyTemplate.parse("{uuid1}")
    first, second = template.render(facts()), template.render(facts())
    assert UUID_RE.match(first)
    assert first[14] == "1"
    assert first != second


@pytest.mark.parametrize(("now", "expected"), [(1_700_000_100.0, "1700000100"), (5.999, "5")])
def test_render_now_is_integer_seconds(now: float, expected: str) -> None:
    value = render("{now}", facts(now=now))
    assert value == expected
    assert value.isdigit()


def test_render_hostname_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "web1.eu-west.example.com")
    assert short_hostname() == "web1"
    assert render("{hostname}/{fname}") == "web1/data.csv"


def test_hostname_override_used_in_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "web1.example.com")
    given = FileFacts("data.csv", "s", 1.0, 1.0, 2.0, hostname="node-17.cluster")
    assert render("{hostname}/{fname}", given) == "node-17.cluster/data.csv"


def test_fname_hash_is_stable_and_two_hex_digits() -> None:
    # The same name renders the same prefix, in every run.
    import hashlib  # noqa: PLC0415

    expected = hashlib.sha256(b"data.csv").hexdigest()[:2]
    assert render("{fname_hash}/{fname}") == f"{expected}/data.csv"
    assert render("{fname_hash}") == render("{fname_hash}")
    # An undecodable name (surrogate escapes) hashes its raw bytes.
    assert fname_hash("\udcff.dat") == hashlib.sha256(b"\xff.dat").hexdigest()[:2]


@settings(max_examples=300)
@given(st.text(min_size=1))
def test_fname_hash_of_any_name_is_two_hex_digits(name: str) -> None:
    value = fname_hash(name)
    assert re.fullmatch(r"[0-9a-f]{2}", value)
    assert value == fname_hash(name)


def test_fname_hash_spreads_names_evenly() -> None:
    # 10,000 names like a spool's (same stem, a counter): no prefix gets more than 1.5%
    # (uniform is 1/256, 0.39%).
    counts: dict[str, int] = {}
    for i in range(10_000):
        value = fname_hash(f"events-{i:06d}.json")
        counts[value] = counts.get(value, 0) + 1
    assert len(counts) == 256
    assert max(counts.values()) <= 150


def test_render_hostname_of_this_machine_has_no_dots() -> None:
    value = render("{hostname}")
    assert value
    assert "." not in value


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/var/spool/app/", "var/spool/app"),
        ("/var/spool/app", "var/spool/app"),
        ("./a//b/", "a/b"),
        ("a/./b/../c", "a/c"),
        ("//srv///x//", "srv/x"),
    ],
)
def test_spool_dir_normalisation(given: str, expected: str) -> None:
    assert normalise_spool_dir(given) == expected
    rendered = render("{spool_dir}/{fname}", facts(spool_dir=normalise_spool_dir(given)))
    assert rendered == f"{expected}/data.csv"


def test_creation_time_falls_back_to_ctime(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = os.stat(path)
    expected = getattr(st, "st_birthtime", None)
    assert keys.creation_time(st) == (expected if expected is not None else st.st_ctime)


def test_render_truncates_subsecond_mtime_instead_of_rounding(tmp_path: Path) -> None:
    path = tmp_path / "late.log"
    path.write_bytes(b"x")
    # 2024-12-31T23:59:59.9999995Z
    mtime_ns = calendar.timegm((2024, 12, 31, 23, 59, 59, 0, 0, 0)) * 10**9 + 999_999_500
    os.utime(path, ns=(mtime_ns, mtime_ns))
    st = os.stat(path)
    assert st.st_mtime_ns == mtime_ns
    # the pipeline builds FileFacts from st_mtime_ns truncated to whole seconds
    f = facts(mtime=whole_seconds(st.st_mtime_ns), ctime=st.st_ctime)
    assert render("{m_YYYY}/{m_MM}/{m_DD}/{m_hh}{m_mm}{m_ss}", f) == "2024/12/31/235959"


# -- full_key ---------------------------------------------------------------------------------


def test_full_key_joins_prefix_and_rendered() -> None:
    assert full_key("", "a/b.csv") == "a/b.csv"
    assert full_key("logs/2024/", "a.csv") == "logs/2024/a.csv"


@pytest.mark.parametrize("rendered", ["", "/abs", "//x"])
def test_full_key_rejects_empty_or_absolute(rendered: str) -> None:
    with pytest.raises(FileError):
        full_key("", rendered)
    with pytest.raises(FileError):
        full_key("p/", rendered)


@pytest.mark.parametrize("bad", ["a\nb", "tab\there", "nul\x00", "del\x7f", "esc\x1b[0m"])
def test_full_key_rejects_control_characters(bad: str) -> None:
    with pytest.raises(FileError, match="control characters"):
        full_key("p/", bad)


def test_full_key_rejects_surrogate_escaped_name() -> None:
    name = os.fsdecode(b"bad\xff")
    assert name == "bad\udcff"
    rendered = render("{fname}", facts(name))
    with pytest.raises(FileError, match="UTF-8"):
        full_key("", rendered)
    with pytest.raises(FileError, match="UTF-8"):
        full_key("prefix/", rendered)


def test_full_key_length_limit_is_in_utf8_bytes() -> None:
    assert full_key("", "a" * MAX_KEY_BYTES) == "a" * MAX_KEY_BYTES
    with pytest.raises(FileError, match="1025 bytes"):
        full_key("", "a" * (MAX_KEY_BYTES + 1))
    # 'é' is two bytes in UTF-8: 512 of them fit exactly, one more does not.
    assert full_key("", "é" * 512) == "é" * 512
    with pytest.raises(FileError):
        full_key("", "é" * 513)
    # The prefix counts too.
    with pytest.raises(FileError):
        full_key("p/", "a" * (MAX_KEY_BYTES - 1))


# -- properties -------------------------------------------------------------------------------

TIMESTAMPS = st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False)
SEGMENT = st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s)
PREFIXES = st.one_of(
    st.just(""), st.lists(SEGMENT, min_size=1, max_size=4).map(lambda s: "/".join(s) + "/")
)


@given(name=st.text(min_size=1), mtime=TIMESTAMPS, ctime=TIMESTAMPS, now=TIMESTAMPS)
@settings(max_examples=200, deadline=None)
def test_property_fname_renders_the_name(name: str, mtime: float, ctime: float, now: float) -> None:
    f = facts(name, mtime=mtime, ctime=ctime, now=now)
    assert KeyTemplate.parse("{fname}").render(f) == name
    assert KeyTemplate.parse("x/{fname}/{now}").render(f) == f"x/{name}/{int(now)}"


@given(stamp=st.integers(min_value=0, max_value=4_102_444_799))
@settings(max_examples=200, deadline=None)
def test_property_time_fields_match_gmtime(stamp: int) -> None:
    t = time.gmtime(stamp)
    expected = (
        f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}"
    )
    f = facts(mtime=float(stamp), ctime=float(stamp))
    assert render("{m_YYYY}{m_MM}{m_DD}{m_hh}{m_mm}{m_ss}", f) == expected
    assert render("{c_YYYY}{c_MM}{c_DD}{c_hh}{c_mm}{c_ss}", f) == expected


@given(
    prefix=PREFIXES,
    rendered=st.one_of(
        st.text(max_size=80),
        st.text(max_size=1100),
        st.text(alphabet=st.characters(codec="utf-8", max_codepoint=0x7F), max_size=1100),
    ),
)
@settings(max_examples=150, deadline=None)
def test_property_full_key_is_valid_or_raises(prefix: str, rendered: str) -> None:
    try:
        key = full_key(prefix, rendered)
    except FileError:
        return
    encoded = key.encode("utf-8")  # valid UTF-8: no lone surrogates
    assert 1 <= len(encoded) <= MAX_KEY_BYTES
    assert not key.startswith("/")
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key)
    assert key == prefix + rendered


@given(st.binary(min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_property_undecodable_file_names_raise_file_error(raw: bytes) -> None:
    name = os.fsdecode(raw)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(FileError):
            full_key("p/", render("{fname}", facts(name)))
    else:
        assert name == raw.decode("utf-8")


# -- times a date cannot hold (issue 9.2) -----------------------------------------------------

# 10001-01-01T00:00:00Z (the year 10000 is a leap year); datetime itself stops at 9999.
YEAR_10001 = calendar.timegm((9999, 12, 31, 0, 0, 0, 0, 0, 0)) + (1 + 366) * 86400


@pytest.mark.parametrize("stamp", [YEAR_10001, 1e300, -70_000_000_000.0])
@pytest.mark.parametrize("kind", ["m", "c"])
def test_render_time_outside_years_1_to_9999_is_a_file_error(stamp: float, kind: str) -> None:
    f = facts(mtime=stamp) if kind == "m" else facts(ctime=stamp)
    with pytest.raises(FileError, match=rf"is outside the years 1-9999.*\{{{kind}_\*\}}"):
        render(f"{{{kind}_YYYY}}/{{fname}}", f)
    assert render("{fname}", f) == "data.csv"  # without time tokens it renders as usual


def test_render_before_1970() -> None:
    stamp = calendar.timegm((1901, 12, 14, 20, 45, 52, 0, 0, 0))
    assert render("{m_YYYY}-{m_MM}-{m_DD}T{m_hh}:{m_mm}:{m_ss}", facts(mtime=stamp)) == (
        "1901-12-14T20:45:52"
    )
    assert render("{c_YYYY}/{c_MM}", facts(ctime=-1)) == "1969/12"
