"""Two processes at once: writing and renaming in one directory, and copying up the same lower
files. No errors, no lost writes, a consistent tree."""
from __future__ import annotations

import os
import pickle
import traceback
from collections.abc import Callable

from tests.fs.conftest import MakeOverlay
from tests.fs.harness import File, listdir, read, snapshot, write

ROUNDS = 160  # a multiple of 20: every lower file ends back under its name
SHARED = 6
PAYLOAD = b"x" * 20000  # more than one FUSE write request's worth of small pages


def _content(tag: str, i: int) -> bytes:
    return f"{tag}:{i}:".encode() + PAYLOAD


def _churn(d: str, tag: str) -> None:
    """Write temp files and rename them over names the other process renames over too; move
    lower files away and back; list the directory while the other one changes it."""
    for i in range(ROUNDS):
        tmp = os.path.join(d, f"{tag}.tmp{i}")
        write(tmp, _content(tag, i))
        os.rename(tmp, os.path.join(d, f"shared{i % SHARED}"))
        lower = os.path.join(d, f"lower-{tag}{i % 10}")
        moved = os.path.join(d, f"moved-{tag}{i % 10}")
        if i % 20 < 10:
            os.rename(lower, moved)
        else:
            os.rename(moved, lower)
        if i % 10 == 0:
            os.listdir(d)
            write(os.path.join(d, f"{tag}.gone"), b"")
            os.unlink(os.path.join(d, f"{tag}.gone"))


COPY_UP_FILES = 40
LOWER_DATA = b"." * 8192


def _write_into_lower_files(d: str, tag: str) -> None:
    """Write this process's tag into every lower file at its own offset: both processes race to
    copy up the same files."""
    offset = 100 if tag == "A" else 5000
    for i in range(COPY_UP_FILES):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_WRONLY)
        try:
            os.pwrite(fd, tag.encode() * 10, offset)
        finally:
            os.close(fd)


def _run_together(d: str, tags: list[str], work: Callable[[str, str], None]) -> list[str]:
    """Run work(d, tag) for each tag in its own process, released at the same moment;
    returns the tracebacks of the ones that failed."""
    go_r, go_w = os.pipe()
    children = []
    for tag in tags:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(go_w)
            os.read(go_r, 1)
            try:
                work(d, tag)
                result = ""
            except BaseException:  # noqa: BLE001 - reported to the test
                result = f"{tag}: {traceback.format_exc()}"
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(result))
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    os.close(go_r)
    os.write(go_w, b"1" * len(tags))
    os.close(go_w)
    failures = []
    for pid, r in children:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        result = pickle.loads(data) if data else "a writer died without a word"
        if result:
            failures.append(result)
    return failures


def test_two_processes_write_and_rename_in_one_directory(make_overlay: MakeOverlay) -> None:
    lower = {f"d/lower-{tag}{i}": File(f"{tag}{i}".encode()) for tag in "AB" for i in range(10)}
    ov = make_overlay([lower])
    failures = ov(_run_together, ov.p("d"), ["A", "B"], _churn)
    assert not failures, "\n".join(failures)
    names = ov(listdir, ov.p("d"))
    assert names == sorted([f"shared{i}" for i in range(SHARED)] + [n.split("/")[1] for n in lower])
    for i in range(SHARED):
        data = ov(read, ov.p(f"d/shared{i}"))
        tag, n, payload = data.split(b":", 2)
        assert tag in (b"A", b"B") and int(n) % SHARED == i and payload == PAYLOAD, data[:20]
    for rel, f in lower.items():
        assert ov(read, ov.p(rel)) == f.data  # type: ignore[union-attr]
    before = ov(snapshot, ov.p())
    ov.remount()
    assert ov(snapshot, ov.p()) == before


def test_two_processes_copy_up_the_same_files_at_once(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{f"d/f{i}": File(LOWER_DATA) for i in range(COPY_UP_FILES)}])
    failures = ov(_run_together, ov.p("d"), ["A", "B"], _write_into_lower_files)
    assert not failures, "\n".join(failures)
    want = bytearray(LOWER_DATA)
    want[100:110] = b"A" * 10
    want[5000:5010] = b"B" * 10
    for i in range(COPY_UP_FILES):
        assert ov(read, ov.p(f"d/f{i}")) == want, f"f{i}: a write was lost in the copy-up race"
    ov.remount()
    assert all(ov(read, ov.p(f"d/f{i}")) == want for i in range(COPY_UP_FILES))
