""".dockerignore with Docker's rules (cases from moby/patternmatcher's tests) and Go's
filepath.Match (cases from Go's path/filepath tests)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rootless.build.ignore import Ignore, clean, go_match
from rootless.errors import RlError

# patternmatcher_test.go TestMatches: (pattern, path, ignored).
MATCHES = [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    # a pattern matching a directory takes everything under it
    ("build", "build/out/app.o", True),
    ("*/tmp", "src/tmp/x/y", True),
    ("*.md", "docs/README.md", False),
    ("/node_modules", "node_modules/x", True),
    ("./a/../b", "b/c", True),
]


@pytest.mark.parametrize(("pattern", "path", "ignored"), MATCHES)
def test_patternmatcher_cases(pattern: str, path: str, ignored: bool) -> None:
    assert Ignore([pattern]).ignored(path) is ignored


def test_last_match_wins_and_exceptions_reach_under_excluded_dirs() -> None:
    ignore = Ignore(["*.md", "!README*.md", "README-secret.md", "docs", "!docs/keep.txt"])
    assert ignore.ignored("CHANGES.md")
    assert not ignore.ignored("README.md")
    assert ignore.ignored("README-secret.md")
    assert ignore.ignored("docs") and ignore.ignored("docs/other.txt")
    assert not ignore.ignored("docs/keep.txt")
    assert not ignore.ignored("src/main.py")


def test_file_syntax(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text(
        "\ufeff# comment\n"
        "  spaced  \n"
        "\n"
        " # not a comment: a pattern\n"
        "/abs/path/\n"
        "! /abs/path/keep\n"
        "a//b/./c/../d\n"
    )
    ignore = Ignore.load(str(tmp_path))
    assert [(p.text, p.exception) for p in ignore.patterns] == [
        ("spaced", False), ("# not a comment: a pattern", False), ("abs/path", False),
        ("abs/path/keep", True), ("a/b/d", False)]
    assert ignore.ignored("spaced") and ignore.ignored("abs/path/x")
    assert not ignore.ignored("abs/path/keep") and not ignore.ignored("# comment")
    assert ignore.ignored("a/b/d/e")


def test_no_file_ignores_nothing(tmp_path: Path) -> None:
    assert not Ignore.load(str(tmp_path)).ignored("anything/at/all")


def test_dockerfile_and_dockerignore_only_if_listed() -> None:
    assert not Ignore(["*.txt"]).ignored("Dockerfile")
    assert not Ignore(["*.txt"]).ignored(".dockerignore")
    assert Ignore(["Dockerfile", ".dockerignore"]).ignored(".dockerignore")


@pytest.mark.parametrize("line", ["!", "[", "a[", "x\\"])
def test_bad_patterns_are_refused(line: str) -> None:
    with pytest.raises(RlError, match=".dockerignore: "):
        Ignore([line])


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), (".", "."), ("a/", "a"), ("/a/../..", "/"), ("../a", "../a"), ("a/../../b", "../b"),
    ("//a//b/", "/a/b"), ("a/./b/.", "a/b"),
])
def test_clean_is_gos(path: str, cleaned: str) -> None:
    assert clean(path) == cleaned


# path/filepath match_test.go: (pattern, name, matched), None for ErrBadPattern.
GO_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", None),
    ("[-]", "-", None),
    ("[x-]", "x", None),
    ("[-x]", "x", None),
    ("\\", "a", None),
    ("[a-b-c]", "a", None),
    ("[", "a", None),
    ("[^", "a", None),
    ("[^bc", "a", None),
    ("a[", "ab", None),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "name", "matched"), GO_MATCH)
def test_go_filepath_match(pattern: str, name: str, matched: bool | None) -> None:
    if matched is None:
        with pytest.raises(ValueError):
            go_match(pattern, name)
    else:
        assert go_match(pattern, name) is matched
