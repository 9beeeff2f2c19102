"""COPY/ADD sources: what a source names in the context, what is copied under it, and the
content hash of the cache key (stale never, missed only when the sources really changed)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rootless.build.context import hash_entries, hash_sources, match_sources, walk_sources
from rootless.errors import SourceError
from rootless.build.ignore import Ignore


def make(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = make(tmp_path / "ctx", {
        "app.py": "print('hi')\n",
        "setup.py": "",
        ".hidden.py": "",
        "src/a.py": "a",
        "src/b.py": "b",
        "src/sub/c.py": "c",
        "conf/one.ini": "1",
        "conf/two.ini": "2",
        "docs/keep.txt": "k",
        "docs/drop.txt": "d",
        "README.md": "r",
    })
    os.symlink("src/a.py", root / "link.py")
    return root


def test_plain_paths_and_context_root(ctx: Path) -> None:
    none = Ignore()
    assert match_sources(str(ctx), ["app.py", "src/", "/conf/one.ini", "./src/../setup.py"], none) == [
        "app.py", "src", "conf/one.ini", "setup.py"]
    assert match_sources(str(ctx), ["."], none) == ["."]
    assert match_sources(str(ctx), ["/"], none) == ["."]


def test_wildcards_match_one_component_at_a_time_sorted(ctx: Path) -> None:
    none = Ignore()
    assert match_sources(str(ctx), ["*.py"], none) == [".hidden.py", "app.py", "link.py", "setup.py"]
    assert match_sources(str(ctx), ["src/*.py"], none) == ["src/a.py", "src/b.py"]
    assert match_sources(str(ctx), ["*/???.ini"], none) == ["conf/one.ini", "conf/two.ini"]
    assert match_sources(str(ctx), ["s[q-s]c/[^a].py"], none) == ["src/b.py"]
    # in the order given, each once
    assert match_sources(str(ctx), ["src/b.py", "src/*.py"], none) == ["src/b.py", "src/a.py"]


def test_missing_or_excluded_source(ctx: Path) -> None:
    ignore = Ignore(["README.md", "docs/*.txt"])
    for name in ("nothere.txt", "README.md", "docs/drop.txt"):
        with pytest.raises(SourceError) as info:
            match_sources(str(ctx), [name], ignore)
        assert str(info.value) == (f"COPY failed: file not found in build context or excluded by "
                                   f".dockerignore: stat {name}: file does not exist")
        assert info.value.exit_code == 1
    with pytest.raises(SourceError, match="^ADD failed: no source files were specified$"):
        match_sources(str(ctx), ["docs/*.txt"], ignore, "ADD")
    with pytest.raises(SourceError, match="^COPY failed: no source files were specified$"):
        match_sources(str(ctx), ["*.go"], ignore)


@pytest.mark.parametrize("source, found", [("..", "."), ("../../app.py", "app.py"), ("src/../../src/a.py", "src/a.py"),
                                           ("/../s*.py", "setup.py")])
def test_paths_above_the_context_stay_at_its_root(ctx: Path, source: str, found: str) -> None:
    assert match_sources(str(ctx), [source], Ignore()) == [found]


def test_symlinks_resolve_inside_the_context(ctx: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    os.symlink(str(tmp_path / "secret"), ctx / "abs")  # absolute: taken from the context root
    os.symlink("../../secret", ctx / "src" / "up")  # `..` stops at the context root
    os.symlink("/app.py", ctx / "rooted")
    for name in ("abs", "src/up"):
        with pytest.raises(SourceError, match="file not found"):
            match_sources(str(ctx), [name], Ignore())
    [entry] = walk_sources(str(ctx), ["rooted"], Ignore())
    assert (entry.source, entry.path, entry.kind) == ("rooted", "app.py", "file")
    [entry] = walk_sources(str(ctx), ["link.py"], Ignore())
    assert (entry.path, entry.kind, entry.size) == ("src/a.py", "file", 1)


def test_walk_yields_the_tree_after_dockerignore(ctx: Path) -> None:
    ignore = Ignore(["docs", "!docs/keep.txt", "src/sub", "*.md"])
    entries = list(walk_sources(str(ctx), ["."], ignore))
    names = [e.name for e in entries]
    assert names == ["", ".hidden.py", "app.py", "conf", "conf/one.ini", "conf/two.ini",
                     "docs", "docs/keep.txt", "link.py", "setup.py", "src", "src/a.py", "src/b.py"]
    assert [e.name for e in walk_sources(str(ctx), match_sources(str(ctx), ["docs"], ignore), ignore)] == [
        "", "keep.txt"]
    link = entries[names.index("link.py")]
    assert (link.kind, link.target) == ("symlink", "src/a.py")
    src = list(walk_sources(str(ctx), ["src"], Ignore()))
    assert [(e.name, e.path, e.kind) for e in src] == [
        ("", "src", "dir"), ("a.py", "src/a.py", "file"), ("b.py", "src/b.py", "file"),
        ("sub", "src/sub", "dir"), ("sub/c.py", "src/sub/c.py", "file")]


def _hash(root: Path, sources: list[str] | None = None, ignore: Ignore | None = None) -> str:
    return hash_sources(str(root), sources or ["."], ignore or Ignore())


def test_hash_ignores_location_and_times(ctx: Path, tmp_path: Path) -> None:
    before = _hash(ctx)
    assert before.startswith("sha256:") and len(before) == 71
    moved = tmp_path / "elsewhere" / "ctx"
    shutil.copytree(ctx, moved, symlinks=True)  # new inodes, new mtimes
    for path in [moved / "app.py", moved / "src", moved]:
        os.utime(path, (1, 1))
    assert _hash(moved) == before
    assert _hash(ctx, ["src", "app.py"]) == _hash(moved, ["src", "app.py"])
    walked = list(walk_sources(str(moved), ["."], Ignore()))
    assert hash_entries(str(moved), walked) == before


@pytest.mark.parametrize("change", ["byte", "mode", "rename", "link", "new-dir", "dir-mode", "truncate"])
def test_hash_changes_with_the_sources(ctx: Path, change: str) -> None:
    before = _hash(ctx)
    if change == "byte":
        (ctx / "src/sub/c.py").write_text("C")
    elif change == "mode":
        os.chmod(ctx / "app.py", 0o755)
    elif change == "rename":
        os.rename(ctx / "src/b.py", ctx / "src/b2.py")
    elif change == "link":
        os.unlink(ctx / "link.py")
        os.symlink("src/b.py", ctx / "link.py")
    elif change == "new-dir":
        (ctx / "empty").mkdir()
    elif change == "dir-mode":
        os.chmod(ctx / "conf", 0o700)
    else:
        (ctx / "app.py").write_text("")
    assert _hash(ctx) != before


def test_hash_leaves_out_what_is_not_copied(ctx: Path) -> None:
    ignore = Ignore(["docs/drop.txt"])
    whole, src = _hash(ctx, ["."], ignore), _hash(ctx, ["src"])
    (ctx / "docs/drop.txt").write_text("excluded, so not copied")
    assert _hash(ctx, ["."], ignore) == whole
    (ctx / "app.py").write_text("not under src")
    assert _hash(ctx, ["src"]) == src
    assert _hash(ctx, ["."], ignore) != whole


def test_hash_tells_contents_apart_across_files(tmp_path: Path) -> None:
    one = make(tmp_path / "one", {"a": "xy", "b": ""})
    two = make(tmp_path / "two", {"a": "x", "b": "y"})
    assert _hash(one) != _hash(two)


def test_large_file_is_hashed_past_the_read_buffer(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    data = os.urandom(3 << 20)
    (root / "blob").write_bytes(data)
    before = _hash(root)
    (root / "blob").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert _hash(root) != before


def test_unreadable_context_file_is_a_clear_error(ctx: Path) -> None:
    os.chmod(ctx / "src/b.py", 0)
    with pytest.raises(SourceError, match="cannot read src/b.py in the build context: Permission denied"):
        _hash(ctx, ["src"])
    os.chmod(ctx / "src/sub", 0)
    with pytest.raises(SourceError, match="cannot read src/sub in the build context"):
        list(walk_sources(str(ctx), ["src"], Ignore()))
    os.chmod(ctx / "src/sub", 0o755)
