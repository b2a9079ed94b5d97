"""display_name: one escaping of outside text for logs, --status, metrics and errors."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from spool_tool.display import display_name


def test_plain_names_are_unchanged() -> None:
    assert display_name("2026-12-01 host-a.json") == "2026-12-01 host-a.json"
    assert display_name("été.csv") == "été.csv"


def test_controls_and_escapes_are_escaped() -> None:
    assert display_name("a\nb") == "a\\nb"
    assert display_name("\x1b[31mred") == "\\x1b[31mred"
    assert display_name("tab\there\r") == "tab\\there\\r"
    assert display_name("\x85next\u2028line") == "\\x85next\\u2028line"
    assert display_name("back\\slash") == "back\\\\slash"


def test_undecodable_bytes_show_as_the_byte() -> None:
    assert display_name(os.fsdecode(b"bad\xff.bin")) == "bad\\xff.bin"
    assert display_name(b"bad\xfe") == "bad\\xfe"


@given(st.binary(max_size=40))
def test_every_rendering_is_one_printable_line(raw: bytes) -> None:
    shown = display_name(raw)
    assert shown.isprintable()
    assert "\n" not in shown


@given(st.binary(max_size=40))
def test_rendering_is_injective(raw: bytes) -> None:
    other = raw + b"\\"
    assert display_name(raw) != display_name(other)
