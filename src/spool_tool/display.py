"""How a file name (or any text from outside) is shown to people: one escaping everywhere.

File names are bytes on POSIX; Python hands them to us as ``str`` with undecodable bytes as
surrogate escapes. Anyone who can name a file controls those bytes, so a name is never written
raw into a log line, a table, a metric label or an error: every log record stays one physical
line and no escape sequence reaches a terminal.

``display_name`` renders:

* undecodable bytes as ``\\xNN`` (the byte, as ``docs/metrics.md`` promises);
* C0 controls, DEL and C1 controls as ``\\n``, ``\\r``, ``\\t`` or ``\\xNN``, and any
  other character that is not printable (format characters such as bidi overrides, private
  use, unassigned) as ``\\uNNNN`` or ``\\UNNNNNNNN``;
* a backslash as ``\\\\`` so that the rendering is unambiguous;
* every other character (printable Unicode, including spaces) as itself.
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # noqa: PLR2004 - a surrogate escape holds one raw byte
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    # Controls, and every other character Python does not call printable: format characters
    # (bidi overrides can reorder a line), private use, unassigned, lone surrogates.
    if code <= 0xFF:  # noqa: PLR2004
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"  # noqa: PLR2004


def display_name(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``name`` as one safe line of text (see the module docstring)."""
    raw = os.fspath(name)
    text = os.fsdecode(raw) if isinstance(raw, bytes) else raw
    if text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to escape
    return "".join(_escape_char(char) for char in text)
