"""``spool_tool.filters.PathFilter``: gitignore-syntax --include/--exclude over paths in new/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spool_tool.errors import ConfigError
from spool_tool.filters import PathFilter

# -- example tables ------------------------------------------------------------------------

SELECTION = [
    # includes, excludes, relpath, selected
    ((), (), "x.json", True),
    ((), (), "a/b/.x", True),
    ((), ("*.tmp",), "x.tmp", False),
    ((), ("*.tmp",), "a/b/x.tmp", False),
    ((), ("*.tmp",), "x.tmp.json", True),
    ((), ("*.tmp",), "x.tmp/y.json", False),  # a matching parent directory excludes its files
    ((), ("*.tmp", ".*"), ".x.json.swp", False),
    ((), (".*",), ".hidden", False),
    ((), (".*",), "a/.partial/x.json", False),
    ((), (".*",), "a/x.json", True),
    ((), ("*",), ".x", False),  # dotfiles get no special treatment
    ((), ("tmp/",), "tmp", True),  # a trailing '/' matches directories only
    ((), ("tmp/",), "tmp/x", False),
    ((), ("tmp/",), "a/tmp/x", False),
    ((), ("/x.json",), "x.json", False),
    ((), ("/x.json",), "a/x.json", True),
    ((), ("2026/*/x.json",), "2026/12/x.json", False),
    ((), ("2026/*/x.json",), "2026/12/01/x.json", True),  # '*' never matches '/'
    ((), ("2026/*/x.json",), "a/2026/12/x.json", True),  # a middle '/' anchors to new/
    ((), ("a/**/b",), "a/b", False),
    ((), ("a/**/b",), "a/x/y/b", False),
    ((), ("a/**/b",), "a/x/b/c", False),
    ((), ("a/**/b",), "a/bb", True),
    ((), ("**/b",), "b", False),
    ((), ("a/**",), "a/x/y", False),
    ((), ("a/**",), "a", True),  # 'a/**' is what is inside a, not a file named a
    ((), ("*.TMP",), "x.tmp", True),  # case-sensitive
    ((), ("x?.json",), "x1.json", False),
    ((), ("x?.json",), "x/.json", True),  # '?' never matches '/'
    ((), ("[ab].json",), "b.json", False),
    ((), ("[ab].json",), "c.json", True),
    ((), ("\\#x",), "#x", False),
    ((), ("\\!x",), "!x", False),
    ((), ("x\\ ",), "x ", False),
    ((), ("x\\ ",), "x", True),
    ((), ("*.tmp",), "a\\b.tmp", False),  # a backslash in a name is not a separator
    ((), ("a\\*b",), "a*b", False),  # an escaped '*' is literal
    ((), ("a\\*b",), "axb", True),
    (("*.json",), (), "x.json", True),
    (("*.json",), (), "a/b/x.json", True),
    (("*.json",), (), "x.txt", False),
    (("*.json",), ("draft-*",), "draft-1.json", False),  # an exclude always wins
    (("*.json",), ("draft-*",), "final-1.json", True),
    (("*.json", "*.csv"), (), "x.csv", True),
    (("logs/",), (), "logs/x", True),
    (("logs/",), (), "a/logs/b/c", True),
    (("logs/",), (), "x", False),
    (("/2026/",), ("*.tmp",), "2026/12/x.json", True),
    (("/2026/",), ("*.tmp",), "2026/12/x.tmp", False),
    (("/2026/",), ("*.tmp",), "2025/12/x.json", False),
]


@pytest.mark.parametrize(("includes", "excludes", "relpath", "selected"), SELECTION)
def test_selection_table(
    includes: tuple[str, ...], excludes: tuple[str, ...], relpath: str, selected: bool
) -> None:
    assert PathFilter(includes, excludes).selects(relpath) is selected


def test_undecodable_names_are_matched_by_their_decodable_parts() -> None:
    name = os.fsdecode(b"\xff\xfe.tmp")
    assert not PathFilter(excludes=("*.tmp",)).selects(name)
    assert PathFilter(excludes=("*.json",)).selects(name)


DIRECTORIES = [
    # excludes, reldir, pruned
    (("*.tmp",), "x.tmp", True),
    (("*.tmp",), "a/x.tmp", True),
    (("*.tmp",), "x", False),
    (("tmp/",), "tmp", True),
    (("tmp/",), "a/b/tmp", True),
    (("/tmp/",), "tmp", True),
    (("/tmp/",), "a/tmp", False),
    (("a/**",), "a", True),
    (("a/**",), "b/a", False),
    ((".*",), "a/.cache", True),
    (("*.json",), "2026", False),
    (("*",), "", False),  # new/ itself is never pruned
    ((), "a", False),
]


@pytest.mark.parametrize(("excludes", "reldir", "pruned"), DIRECTORIES)
def test_excludes_dir_table(excludes: tuple[str, ...], reldir: str, pruned: bool) -> None:
    assert PathFilter(excludes=excludes).excludes_dir(reldir) is pruned


def test_includes_never_prune_directories() -> None:
    assert not PathFilter(includes=("*.json",)).excludes_dir("2026")
    assert not PathFilter(includes=("/logs/",)).excludes_dir("other")


def test_default_selects_everything() -> None:
    default = PathFilter()
    assert default.selects_everything
    assert not PathFilter(excludes=("*.tmp",)).selects_everything
    assert default.selects("anything/at/all")
    assert default.exclusion_reason("x") is None


def test_exclusion_reason_names_the_rule() -> None:
    path_filter = PathFilter(includes=("*.json",), excludes=("*.tmp", "draft-*"))
    assert path_filter.exclusion_reason("draft-1.json") == "excluded by --exclude 'draft-*'"
    assert path_filter.exclusion_reason("x.tmp") == "excluded by --exclude '*.tmp'"
    assert path_filter.exclusion_reason("x.csv") == "matches no --include pattern"
    assert path_filter.exclusion_reason("x.json") is None


def test_lists_are_stored_as_tuples_and_compare_by_patterns() -> None:
    from_lists = PathFilter(["*.json"], [".*"])  # type: ignore[arg-type] # click/TOML give lists
    assert from_lists.includes == ("*.json",)
    assert from_lists == PathFilter(("*.json",), (".*",))
    assert hash(from_lists) == hash(PathFilter(("*.json",), (".*",)))


REJECTED = [
    ("", "empty pattern"),
    ("#x", "comment"),
    ("!x", "negation"),
    ("x ", "trailing spaces"),
    ("x\\\\ ", "trailing spaces"),  # the backslash is escaped, the space is not
    ("a/../b", "never matches"),
    ("./x", "never matches"),
    ("a//b", "never matches"),
    ("a\nb", "line break"),
    ("a\0b", "NUL"),
    ("[z-a]", "not a valid gitignore pattern"),
    ("x\\", "not a valid gitignore pattern"),
    ("x[", "discards"),
    ("/", "discards"),
]


@pytest.mark.parametrize(("pattern", "why"), REJECTED)
@pytest.mark.parametrize("option", ["--include", "--exclude"])
def test_bad_patterns_are_rejected_up_front(option: str, pattern: str, why: str) -> None:
    kwargs = {"includes" if option == "--include" else "excludes": ("ok", pattern)}
    with pytest.raises(ConfigError) as caught:
        PathFilter(**kwargs)
    message = str(caught.value)
    assert message.startswith(f"invalid {option} pattern {pattern!r}: ")
    assert why in message


@pytest.mark.parametrize("pattern", ["*", "**", "/x", "x/", "\\#x", "\\!x", "x\\ ", "a/**/b"])
def test_good_patterns_are_accepted(pattern: str) -> None:
    assert PathFilter(excludes=(pattern,)).excludes == (pattern,)


# -- properties ----------------------------------------------------------------------------

SEGMENT = st.text(alphabet="ab.x", min_size=1, max_size=4).filter(lambda s: s not in {".", ".."})
RELPATH = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
GLOB_SEGMENT = st.one_of(st.text(alphabet="ab.*?", min_size=1, max_size=4), st.just("**"))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    body = "/".join(draw(st.lists(GLOB_SEGMENT, min_size=1, max_size=3)))
    return draw(st.sampled_from(["", "/"])) + body + draw(st.sampled_from(["", "/"]))


def valid_patterns(draw_from: list[str]) -> tuple[str, ...]:
    try:
        PathFilter(excludes=tuple(draw_from))
    except ConfigError:
        assume(False)
    return tuple(draw_from)


PATTERN_LISTS = st.lists(patterns(), max_size=3).map(valid_patterns)


@given(relpath=RELPATH)
def test_property_no_patterns_selects_every_path(relpath: str) -> None:
    assert PathFilter().selects(relpath)


@given(includes=PATTERN_LISTS, excludes=PATTERN_LISTS, relpath=RELPATH, data=st.data())
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_property_order_of_patterns_does_not_matter(
    includes: tuple[str, ...], excludes: tuple[str, ...], relpath: str, data: st.DataObject
) -> None:
    shuffled = PathFilter(
        tuple(data.draw(st.permutations(includes))), tuple(data.draw(st.permutations(excludes)))
    )
    assert shuffled.selects(relpath) == PathFilter(includes, excludes).selects(relpath)


@given(includes=PATTERN_LISTS, excludes=PATTERN_LISTS, relpath=RELPATH)
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_property_selected_iff_some_include_and_no_exclude(
    includes: tuple[str, ...], excludes: tuple[str, ...], relpath: str
) -> None:
    included = not includes or any(PathFilter(includes=(p,)).selects(relpath) for p in includes)
    excluded = any(not PathFilter(excludes=(p,)).selects(relpath) for p in excludes)
    assert PathFilter(includes, excludes).selects(relpath) == (included and not excluded)


@given(excludes=PATTERN_LISTS, relpath=RELPATH)
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_property_a_pruned_directory_holds_only_excluded_files(
    excludes: tuple[str, ...], relpath: str
) -> None:
    path_filter = PathFilter(excludes=excludes)
    parts = relpath.split("/")
    ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if any(path_filter.excludes_dir(d) for d in ancestors):
        assert not path_filter.selects(relpath)


@given(pattern=patterns(), relpath=RELPATH, prefix=RELPATH)
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_property_pattern_without_inner_slash_matches_at_any_depth(
    pattern: str, relpath: str, prefix: str
) -> None:
    assume("/" not in pattern.strip("/") and not pattern.startswith("/"))
    path_filter = PathFilter(excludes=valid_patterns([pattern]))
    if not path_filter.selects(relpath):
        assert not path_filter.selects(f"{prefix}/{relpath}")


@given(relpath=RELPATH, prefix=SEGMENT)
def test_property_leading_slash_anchors_to_new(relpath: str, prefix: str) -> None:
    path_filter = PathFilter(excludes=(f"/{relpath}",))
    assert not path_filter.selects(relpath)
    deeper = f"{prefix}/{relpath}"
    assume(not deeper.startswith(f"{relpath}/"))  # e.g. 'a' and 'a/a': the directory matches
    assert path_filter.selects(deeper)


# -- differential: the same answers as Git itself ------------------------------------------

GIT = shutil.which("git")


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GIT is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("gitrepo")
    subprocess.run([GIT, "init", "-q", str(repo)], check=True)
    return repo


def git_ignores(repo: Path, excludes: tuple[str, ...], relpaths: list[str]) -> set[str]:
    assert GIT is not None
    (repo / ".gitignore").write_text("".join(f"{p}\n" for p in excludes))
    done = subprocess.run(
        [GIT, "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="".join(f"{p}\n" for p in relpaths),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in {0, 1}, done.stderr  # 1: nothing ignored
    return set(done.stdout.splitlines())


@given(excludes=PATTERN_LISTS, relpaths=st.lists(RELPATH, min_size=1, max_size=8, unique=True))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much],
)
def test_property_excludes_agree_with_git_check_ignore(
    git_repo: Path, excludes: tuple[str, ...], relpaths: list[str]
) -> None:
    path_filter = PathFilter(excludes=excludes)
    ours = {p for p in relpaths if not path_filter.selects(p)}
    assert ours == git_ignores(git_repo, excludes, relpaths)
