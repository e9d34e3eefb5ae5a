"""globs: what a pattern matches, normalising, exact and symmetric overlap, task file lines."""

from __future__ import annotations

import pytest

from swarmfile import globs
from swarmfile.errors import ValidationError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("pattern, path, expected", [
    ("lib/*.py", "lib/a.py", True),
    ("lib/*.py", "lib/sub/a.py", False),  # * stays inside one component
    ("lib/?.py", "lib/ab.py", False),
    ("lib/**", "lib/sub/deep/a.py", True),
    ("**/a.py", "a.py", True),
    ("**/a.py", "x/y/a.py", True),
    ("**/a.py", "xa.py", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("lib", "lib/sub/a.py", True),  # a literal covers everything beneath it
    ("lib", "library.py", False),
    ("lib/[ab].py", "lib/b.py", True),
    ("lib/[!ab].py", "lib/a.py", False),
    ("lib/[!ab].py", "lib/c.py", True),
    ("x[/]y", "x/y", False),  # a class never matches '/'
    ("lib/.*", "lib/.env", True),  # dot files are not special
])
def test_pattern_matches(pattern, path, expected):
    assert globs.pattern_matches(pattern, path) is expected


@pytest.mark.parametrize("first, second, expected", [
    ("lib/a.py", "lib/a.py", True),
    ("lib/a.py", "lib/b.py", False),
    ("lib/*.py", "lib/a.py", True),
    ("lib/*.py", "lib/*.txt", False),
    ("lib/*.py", "**/a.py", True),
    ("lib/*", "lib/sub/a.py", False),
    ("lib", "lib/sub/*.py", True),
    ("lib/**", "lib", True),
    ("docs/**", "lib/**", False),
    ("a*", "b*", False),
    ("*a", "*b", False),
    ("*a*", "*b*", True),
    ("**", "anything/at/all", True),
    ("lib/[ab].py", "lib/[bc].py", True),
    ("lib/[a].py", "lib/[bc].py", False),
    ("lib/[!a].py", "lib/a.py", False),
    ("a/**/b", "a/*/b", True),
    ("tests/test_*.py", "tests/*_fileio.py", True),
    ("tests/test_*.py", "tests/unit/test_x.py", False),
])
def test_patterns_overlap_is_exact_and_symmetric(first, second, expected):
    assert globs.patterns_overlap(first, second) is expected
    assert globs.patterns_overlap(second, first) is expected


def test_overlap_agrees_with_matching_on_a_corpus():
    """Sound: whenever one path matches both patterns, they are reported as overlapping."""
    patterns = ["lib/*.py", "lib/**", "**/a.py", "lib/a.py", "lib", "*.md", "lib/?.py", "lib/[!b]*",
                "tests/**/test_*.py", "a/**/b", "**"]
    paths = ["lib/a.py", "lib/b.py", "lib/sub/a.py", "README.md", "a.py", "lib/ab.py", "tests/test_x.py",
             "tests/u/test_y.py", "a/b", "a/x/b", "lib"]
    for first in patterns:
        for second in patterns:
            both = [p for p in paths if globs.pattern_matches(first, p) and globs.pattern_matches(second, p)]
            if both:
                assert globs.patterns_overlap(first, second), (first, second, both)
        for path in paths:  # a literal path is a pattern too, covering itself and what is beneath
            if globs.pattern_matches(first, path):
                assert globs.patterns_overlap(first, path), (first, path)
            if not globs.patterns_overlap(first, path):
                assert not any(globs.pattern_matches(first, q) for q in paths
                               if q == path or q.startswith(path + "/")), (first, path)


@pytest.mark.parametrize("given, stored", [
    ("./lib/a.py", "lib/a.py"), ("lib//a.py", "lib/a.py"), ("lib/./x", "lib/x"),
    ("lib/", "lib/**"), (" tests/*.py ", "tests/*.py"),
])
def test_normalize_pattern(given, stored):
    assert globs.normalize_pattern(given) == stored


def test_patterns_for_task_cleans_files_to_modify_lines():
    lines = ["- `lib/a.py` (new)", "lib/b.py - add the parser", "lib/c.py: why", "   ",
             "* [ ] ./tests/test_x.py", "lib/a.py", "docs/"]
    assert globs.patterns_for_task(lines) == ["lib/a.py", "lib/b.py", "lib/c.py", "tests/test_x.py", "docs/**"]
    with pytest.raises(ValidationError):
        globs.patterns_for_task("lib/a.py")
    with pytest.raises(ValidationError):
        globs.patterns_for_task(["/abs/path.py"])


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "lib/../../x", "./", "", "C:\\x", "a\nb", 7])
def test_bad_patterns_are_refused(bad):
    with pytest.raises(ValidationError):
        globs.normalize_pattern(bad)


def test_escape_makes_a_name_match_only_itself():
    name = "odd[1]*?.py"
    pattern = globs.escape(name)
    assert pattern == "odd[[]1][*][?].py"
    assert globs.pattern_matches(pattern, name)
    assert not globs.pattern_matches(pattern, "odd1xy.py")
    assert not globs.patterns_overlap(pattern, "odd1xy.py")
