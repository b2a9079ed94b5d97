"""``--include`` / ``--exclude``: which files under ``new/`` a run may touch.

Patterns use **gitignore syntax** (https://git-scm.com/docs/gitignore, "PATTERN FORMAT"),
compiled by ``pathspec`` exactly as Git reads them, and are matched against the file's path
relative to ``new/``, ``/``-separated, without a leading ``/`` (``x.json``,
``2026/12/01/host-a/x.json``).

Semantics (order-independent, so the command line, the environment and a config file can
each contribute patterns without their order mattering):

* No patterns: every regular file is selected (the specification's default).
* A file is selected when it matches at least one ``--include`` (or none is given) **and** no
  ``--exclude``. An exclude always wins; there is no "first rule wins" ordering.
* A pattern *matches a path* when it matches the path itself or any of its parent
  directories: ``--exclude tmp/`` excludes ``a/tmp/x.json``; ``--include 'logs/'`` selects every
  file below any ``logs`` directory.
* A pattern with no ``/`` except a trailing one matches at any depth (``*.tmp`` matches
  ``x.tmp`` and ``a/b/x.tmp``); a pattern with a ``/`` at the start or in the middle is anchored
  to ``new/`` (``/x.json`` and ``2026/*/x.json`` match only from the top).
* ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories (``a/**/b``,
  ``**/b``, ``a/**``); ``[abc]`` and ``[a-z]`` are character classes.
* A trailing ``/`` matches directories only: ``--exclude cache/`` excludes what is under a
  ``cache`` directory, not a file named ``cache``.
* Dotfiles get no special treatment: ``*`` matches ``.x``; exclude them with ``--exclude '.*'``.
* Matching is case-sensitive, on every platform.

Rejected up front (``ConfigError`` naming the pattern), because Git would silently read them
as something else or as nothing: an empty pattern, a ``#`` comment (write ``\\#``), a ``!``
negation (write ``\\!`` for a literal ``!``; to keep files, use ``--include``), an unescaped
trailing space (Git strips it; write ``\\ ``), a line break or NUL, ``.``/``..``/empty path
components (paths relative to ``new/`` never contain them), and anything Git cannot compile
(``[z-a]``, a trailing ``\\``).

Recursive scans ask ``excludes_dir(reldir)`` before entering a directory: a directory an
exclude matches holds only excluded files, so the whole subtree is skipped unwalked. Includes
never prune (``*.json`` may match at any depth).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spool_tool.errors import ConfigError

if TYPE_CHECKING:
    from pathspec import PathSpec
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

_NO_SEPARATORS: tuple[str, ...] = ()  # our paths are already '/'-separated: never rewrite '\'


def _trailing_space_unescaped(pattern: str) -> bool:
    stripped = pattern.rstrip(" ")
    if stripped == pattern:
        return False
    backslashes = len(stripped) - len(stripped.rstrip("\\"))
    return backslashes % 2 == 0  # an odd count escapes the first trailing space


def _problem(pattern: str) -> str | None:
    """Why ``pattern`` is refused before compiling, or None."""
    if not pattern:
        return "an empty pattern matches nothing"
    if "\n" in pattern or "\r" in pattern or "\0" in pattern:
        return "a pattern cannot contain a line break or NUL"
    if pattern.startswith("#"):
        return "'#' starts a comment in gitignore syntax; write '\\#' to match a leading '#'"
    if pattern.startswith("!"):
        return (
            "'!' negation is not supported (an --exclude always wins; select files with "
            "--include); write '\\!' to match a leading '!'"
        )
    if _trailing_space_unescaped(pattern):
        return "gitignore syntax ignores trailing spaces; write '\\ ' to match a trailing space"
    parts = pattern.strip("/").split("/")
    if pattern.strip("/") and any(part in {"", ".", ".."} for part in parts):
        return "paths relative to new/ have no '.', '..' or empty components: it never matches"
    return None


def check_pattern(pattern: str) -> GitIgnoreSpecPattern:
    """``pattern`` compiled, or ``ValueError(why it is refused)``."""
    # pathspec only when there are patterns: ~20 ms of start-up otherwise (issue 10).
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern  # noqa: PLC0415

    problem = _problem(pattern)
    if problem is None:
        try:
            one = GitIgnoreSpecPattern(pattern)
        except (ValueError, re.error) as exc:
            problem = f"not a valid gitignore pattern ({exc})"
        else:
            if one.include is not None:
                return one
            problem = "Git discards this pattern (an invalid '[...]' range?)"  # an unclosed '['
    raise ValueError(problem)


def _compile(option: str, patterns: Iterable[str]) -> PathSpec[GitIgnoreSpecPattern] | None:
    """Compile one option's patterns (None for none), or raise ``ConfigError`` naming the first
    bad one."""
    patterns = tuple(patterns)
    if not patterns:
        return None
    from pathspec import PathSpec  # noqa: PLC0415 - only when there are patterns

    compiled: list[GitIgnoreSpecPattern] = []
    for pattern in patterns:
        try:
            compiled.append(check_pattern(pattern))
        except ValueError as exc:
            raise ConfigError(f"invalid {option} pattern {pattern!r}: {exc}") from None
    return PathSpec(compiled)


@dataclass(frozen=True)
class PathFilter:
    """The selection ``--include`` / ``--exclude`` make; built (and validated) once per job.

    Paths passed in are relative to ``new/``, ``/``-separated, with no leading ``/`` and no
    ``.``/``..`` components (what the scan produces)."""

    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    _include_spec: PathSpec[GitIgnoreSpecPattern] | None = field(
        init=False, repr=False, compare=False
    )
    _exclude_spec: PathSpec[GitIgnoreSpecPattern] | None = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Accept any iterable from callers (lists from click or TOML) but store tuples.
        object.__setattr__(self, "includes", tuple(self.includes))
        object.__setattr__(self, "excludes", tuple(self.excludes))
        object.__setattr__(self, "_include_spec", _compile("--include", self.includes))
        object.__setattr__(self, "_exclude_spec", _compile("--exclude", self.excludes))

    @property
    def selects_everything(self) -> bool:
        """No patterns: the default, every regular file (lets callers skip matching)."""
        return not self.includes and not self.excludes

    def selects(self, relpath: str) -> bool:
        """The file at ``relpath`` may be uploaded, moved and deleted."""
        return self.exclusion_reason(relpath) is None

    def exclusion_reason(self, relpath: str) -> str | None:
        """Why the file at ``relpath`` is left alone (for logs and ``--status``), or None."""
        if self._exclude_spec is not None:
            matched = self._exclude_spec.check_file(relpath, _NO_SEPARATORS)
            if matched.include and matched.index is not None:
                return f"excluded by --exclude {self.excludes[matched.index]!r}"
        if self._include_spec is not None and not self._include_spec.match_file(
            relpath, _NO_SEPARATORS
        ):
            return "matches no --include pattern"
        return None

    def excludes_dir(self, reldir: str) -> bool:
        """Every file below directory ``reldir`` is excluded: a recursive scan skips it whole.

        ``reldir`` is relative to ``new/``, without a trailing ``/``; ``""`` (``new/`` itself)
        is never excluded."""
        if not reldir or self._exclude_spec is None:
            return False
        return self._exclude_spec.match_file(f"{reldir}/", _NO_SEPARATORS)
