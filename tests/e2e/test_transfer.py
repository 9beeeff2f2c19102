"""`rl cp`, `rl export` and `rl commit`, on stopped and running containers, on every storage driver."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DRIVERS, Rl, has_subuid_range
from tests.e2e.helpers import start_container, stop_container

RL = [sys.executable, "-m", "rootless"]
# Changes of every kind: a new file with another owner, a deleted file, a replaced directory.
CHANGES = ("echo hi > /marker; chown 1234:5678 /marker 2>/dev/null; rm /bin/vi; "
           "rm -rf /etc/network; mkdir -p /etc/network; echo new > /etc/network/only; "
           "mkdir -p /d/sub; echo x > /d/sub/f; ln -s /etc /d/etclink")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, busybox: str) -> str:
    return str(request.param)


@pytest.fixture
def stopped(rl: Rl, driver: str) -> Iterator[str]:
    """A stopped container that made CHANGES."""
    rl("--storage-driver", driver, "run", "--name", "made", "busybox", "sh", "-c", CHANGES)
    yield "made"
    rl("rm", "made")


def test_cp_out_files_dirs_and_symlinks(rl: Rl, stopped: str, tmp_path: Path) -> None:
    rl("cp", f"{stopped}:/marker", str(tmp_path / "m"))
    assert (tmp_path / "m").read_text() == "hi\n"
    st = (tmp_path / "m").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # the invoking user's
    rl("cp", f"{stopped}:/d", str(tmp_path / "newd"))  # a new name: the directory becomes it
    assert (tmp_path / "newd/sub/f").read_text() == "x\n"
    assert os.readlink(tmp_path / "newd/etclink") == "/etc"  # a symlink copied as itself
    (tmp_path / "into").mkdir()
    rl("cp", f"{stopped}:/d", str(tmp_path / "into"))  # an existing directory: into it
    rl("cp", f"{stopped}:/d/.", str(tmp_path / "into"))  # /. : the contents
    assert sorted(os.listdir(tmp_path / "into")) == ["d", "etclink", "sub"]
    # SRC/. through a symlink to /etc reads the container's /etc, not the host's.
    rl("cp", f"{stopped}:/d/etclink/.", str(tmp_path / "etc"))
    image_etc = set(rl("run", "--rm", "busybox", "ls", "-A", "/etc").out.split())
    assert set(os.listdir(tmp_path / "etc")) == image_etc | {"network"}
    r = rl("cp", f"{stopped}:/nosuch", str(tmp_path / "x"), check=False)
    assert r.code == 125 and "no such file or directory: /nosuch" in r.err
    r = rl("cp", f"{stopped}:/marker", str(tmp_path / "missing") + "/", check=False)
    assert r.code == 125 and "does not exist" in r.err
    r = rl("cp", f"{stopped}:/d", str(tmp_path / "m"), check=False)
    assert r.code == 125 and "cannot copy a directory to a file" in r.err


def test_cp_in_owners_and_symlinks_stay_inside(rl: Rl, stopped: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hostdata\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/a").write_text("a\n")
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    rl("cp", str(tmp_path / "f"), f"{stopped}:/d/")
    rl("cp", str(tmp_path / "dir"), f"{stopped}:/newdir")
    rl("cp", "-a", str(tmp_path / "f"), f"{stopped}:/kept")
    # /d/etclink/ is the container's /etc: the file lands there, never in the host's /etc.
    rl("cp", str(tmp_path / "f"), f"{stopped}:/d/etclink/fromhost")
    listing = _ls(rl, stopped, "/d/hf /d/f /newdir/a /kept /etc/fromhost")
    assert listing["/d/f"][:2] == (0, 0) and listing["/newdir/a"][:2] == (0, 0)
    assert listing["/etc/fromhost"][:2] == (0, 0)
    assert listing["/kept"][:2] == (os.getuid(), os.getgid())  # -a keeps the source's ids
    assert not Path("/etc/fromhost").exists()
    # A container symlink to a host directory is resolved inside the container: the host
    # directory is neither written nor read.
    rl("--storage-driver", "vfs", "run", "--name", "linker", "busybox", "ln", "-s", str(hostdir), "/out")
    try:
        rl("cp", str(tmp_path / "f"), "linker:/out", check=False)
        assert os.listdir(hostdir) == []
        (hostdir / "secret").write_text("s")
        rl("cp", "linker:/out/.", str(tmp_path / "read"), check=False)
        assert not (tmp_path / "read" / "secret").exists()
    finally:
        rl("rm", "linker")


def _ls(rl: Rl, container: str, paths: str) -> dict[str, tuple[int, int, int]]:
    """uid, gid and size of container files, from `rl export` (works on stopped containers)."""
    data = subprocess.run([*RL, "export", container], env=rl.env, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {"/" + m.name: m for m in tf.getmembers()}
    return {p: (members[p].uid, members[p].gid, members[p].size) for p in paths.split() if p in members}


def test_export_has_the_changes_and_real_owners(rl: Rl, stopped: str, tmp_path: Path) -> None:
    out = tmp_path / "fs.tar"
    rl("export", "-o", str(out), stopped)
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["marker"].size == 3
    if has_subuid_range():
        assert (members["marker"].uid, members["marker"].gid) == (1234, 5678)
    assert (members["bin/busybox"].uid, members["bin/busybox"].gid) == (0, 0)
    assert "bin/vi" not in members and "etc/network/only" in members
    assert not any(n.startswith(("proc/", "sys/")) and n.count("/") > 1 for n in members)
    assert not any(".wh." in n for n in members)
    r = subprocess.run([*RL, "export", stopped], env=rl.env, capture_output=True)
    with open(out, "rb") as f:
        assert r.stdout == f.read()  # the same bytes to stdout


def test_running_container_cp_and_export(rl: Rl, driver: str, tmp_path: Path) -> None:
    p = start_container(rl, driver, "live", "--tmpfs", "/scratch")
    try:
        (tmp_path / "f").write_text("into a running one\n")
        rl("cp", str(tmp_path / "f"), "live:/tmp/f")
        assert rl("exec", "live", "cat", "/tmp/f").out == "into a running one\n"
        rl("exec", "live", "sh", "-c", "echo out > /made; mkdir -p /mnt/x; echo tmp > /scratch/t")
        rl("cp", "live:/made", str(tmp_path / "made"))
        assert (tmp_path / "made").read_text() == "out\n"
        # The tmpfs exists only in the container's mount namespace, which cp joins.
        rl("cp", "live:/scratch/t", str(tmp_path / "t"))
        assert (tmp_path / "t").read_text() == "tmp\n"
        r = subprocess.run([*RL, "export", "live"], env=rl.env, capture_output=True, check=True)
        names = subprocess.run(["tar", "tf", "-"], input=r.stdout, capture_output=True, check=True).stdout.split()
        assert b"made" in names and b"tmp/f" in names and b"mnt/x/" in names
        assert not any(n.startswith(b"proc/1") for n in names)
    finally:
        stop_container(rl, p, "live")


def test_commit_keeps_changes_deletions_and_replaced_dirs(rl: Rl, stopped: str, driver: str,
                                                          tmp_path: Path) -> None:
    image_id = rl("commit", "-c", "ENV COMMITTED=yes", "-m", "a message", "-a", "someone", stopped,
                  "committed:v1").out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    out = rl("run", "--rm", "committed:v1", "sh", "-c",
             "cat /marker; ls /etc/network; test -e /bin/vi || echo vi-gone; echo $COMMITTED").out
    assert out.splitlines() == ["hi", "only", "vi-gone", "yes"]
    history = rl("history", "--no-trunc", "committed:v1").out
    assert "a message" in history
    # The committed image survives save and load.
    rl("save", "-o", str(tmp_path / "img.tar"), "committed:v1")
    rl("rmi", "committed:v1")
    rl("load", "-i", str(tmp_path / "img.tar"))
    assert rl("run", "--rm", "committed:v1", "cat", "/marker").out == "hi\n"
    assert rl("images", "-q", "--no-trunc", "committed:v1").out.strip() == image_id


def test_commit_of_a_replaced_directory_shows_only_its_new_contents(rl: Rl, driver: str) -> None:
    rl("--storage-driver", driver, "run", "--name", "first", "busybox", "sh", "-c",
       "mkdir -p /data/sub; echo a > /data/a; echo b > /data/sub/b")
    try:
        rl("commit", "first", "base:1")
        rl("--storage-driver", driver, "run", "--name", "replacer", "base:1", "sh", "-c",
           "rm -rf /data; mkdir /data; echo new > /data/only")
        try:
            rl("commit", "replacer", "base:2")
        finally:
            rl("rm", "replacer")
        assert rl("--storage-driver", driver, "run", "--rm", "base:2", "find", "/data").out.split() == \
            ["/data", "/data/only"]
        assert rl("--storage-driver", driver, "run", "--rm", "base:1", "cat", "/data/sub/b").out == "b\n"
    finally:
        rl("rm", "first")


def test_commit_of_a_running_container(rl: Rl, busybox: str) -> None:
    p = start_container(rl, "overlay", "busy")
    try:
        rl("exec", "busy", "sh", "-c", "echo live > /live")
        rl("commit", "busy", "fromlive")
    finally:
        stop_container(rl, p, "busy")
    assert rl("run", "--rm", "fromlive", "cat", "/live").out == "live\n"


def test_unknown_container_and_bad_arguments(rl: Rl, busybox: str, tmp_path: Path) -> None:
    for args in (("cp", "ghost:/x", str(tmp_path)), ("export", "ghost"), ("commit", "ghost")):
        r = rl(*args, check=False)
        assert r.code == 125 and r.err == "Error: no such container: ghost\n"
    r = rl("cp", str(tmp_path), str(tmp_path / "y"), check=False)
    assert r.code == 125 and "exactly one side" in r.err


@pytest.mark.single_id
@pytest.mark.parametrize("single_driver", DRIVERS)
def test_single_id_cp_export_commit(rl: Rl, busybox: str, tmp_path: Path, single_driver: str) -> None:
    rl("--storage-driver", single_driver, "run", "--name", "one", "busybox", "sh", "-c", "echo s > /s; rm /bin/vi")
    try:
        rl("cp", "one:/s", str(tmp_path / "s"))
        assert (tmp_path / "s").read_text() == "s\n"
        (tmp_path / "in").write_text("in\n")
        rl("cp", str(tmp_path / "in"), "one:/in")
        rl("export", "-o", str(tmp_path / "fs.tar"), "one")
        with tarfile.open(tmp_path / "fs.tar") as tf:
            members = {m.name: m for m in tf.getmembers()}
        assert (members["in"].uid, members["s"].uid, members["bin/busybox"].uid) == (0, 0, 0)
        rl("commit", "one", "single:1")
        assert rl("run", "--rm", "single:1", "sh", "-c", "cat /s /in; test -e /bin/vi || echo gone").out == \
            "s\nin\ngone\n"
    finally:
        rl("rm", "one")


def test_commit_leaves_out_the_mount_points_rl_made(rl: Rl, driver: str, tmp_path: Path) -> None:
    rl("--storage-driver", driver, "run", "--name", "mp", "-v", f"{tmp_path}/vol:/data/vol", "--tmpfs", "/scratch",
       "busybox", "sh", "-c", "echo x > /newfile && echo y > /data/own")
    rl("commit", "mp", "mp:1")
    rl("rm", "mp")
    rl("save", "-o", str(tmp_path / "mp.tar"), "mp:1")
    with tarfile.open(tmp_path / "mp.tar") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = outer.extractfile(manifest[0]["Layers"][-1])
        with tarfile.open(fileobj=layer) as tf:  # type: ignore[arg-type]
            names = {m.name.rstrip("/") for m in tf.getmembers()}
    assert {"newfile", "data/own"} <= names
    assert not names & {"data/vol", "scratch", "etc/hosts", "etc/resolv.conf", "proc", "sys", "dev"}, names
