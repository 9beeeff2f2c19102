"""Tar extraction escapes (the class of CVE-2018-15664, CVE-2019-14271's cousins in tar handling,
and CVE-2007-4131 / CVE-2001-1267 in tar itself): a hostile archive aims an entry outside the
directory it is unpacked into.

Every path that unpacks a tar the user or an image supplies goes through one descriptor-based
extractor (rootless/image/extract.py): `rl cp - CONTAINER:DIR` (a tar on stdin), `rl import`, and
`rl load` (pull's layers too). Each hostile archive must leave the victim, a host file next to
the destination, untouched, and end with one error line or a safe result.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Rl, wait_for

Members = list[tuple[tarfile.TarInfo, bytes]]

CASES = ("dotdot", "absolute", "symlink_then_file", "relative_symlink_then_file", "hardlink_out",
         "hardlink_absolute", "symlink_to_dir_then_new_file", "device", "long_name",
         "directory_replaced_by_symlink")


def _file(name: str, data: bytes = b"owned\n") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    return ti, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, linkname, 0o755
    if kind == tarfile.CHRTYPE:
        ti.devmajor, ti.devminor = 1, 3
    return ti, b""


def hostile(case: str, outside: str, up: str) -> Members:
    """The archive of `case`: `outside` is the victim's directory as the extractor sees it,
    `up` the relative way there from the destination."""
    return {
        "dotdot": lambda: [_file(f"{up}/victim")],
        "absolute": lambda: [_file(f"{outside}/victim")],
        "symlink_then_file": lambda: [_special("l", tarfile.SYMTYPE, outside), _file("l/victim")],
        "relative_symlink_then_file": lambda: [_special("r", tarfile.SYMTYPE, up), _file("r/victim")],
        "hardlink_out": lambda: [_special("h", tarfile.LNKTYPE, f"{up}/victim"), _file("h")],
        "hardlink_absolute": lambda: [_special("h", tarfile.LNKTYPE, f"{outside}/victim"), _file("h")],
        "symlink_to_dir_then_new_file": lambda: [_special("sd", tarfile.SYMTYPE, outside), _file("sd/new")],
        "device": lambda: [_special("dev", tarfile.CHRTYPE)],
        "long_name": lambda: [_file("d/" * 2100 + "f")],
        "directory_replaced_by_symlink": lambda: [_special("d", tarfile.DIRTYPE),
                                                  _special("d", tarfile.SYMTYPE, outside), _file("d/victim")],
    }[case]()


def tar_bytes(members: Members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


class Victim:
    """A host file and the directory it is in, which no archive may change."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        self.dir = directory
        self.file = directory / "victim"
        self.file.write_text("precious\n")
        self.names = sorted(os.listdir(directory))

    def assert_untouched(self) -> None:
        assert self.file.read_text() == "precious\n", "the archive wrote the victim"
        assert self.file.stat().st_nlink == 1, "the archive hard-linked the victim"
        assert sorted(os.listdir(self.dir)) == self.names, "the archive wrote next to the victim"


def assert_safe(r) -> None:  # type: ignore[no-untyped-def]
    assert r.code in (0, 125), r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 1, r.err


@pytest.fixture
def live(rl: Rl, busybox: str, tmp_path: Path) -> Iterator[Path]:
    """A running container with the volume tmp_path/vol at /vol; yields the volume."""
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)
    p = rl.popen("run", "--name", "live", "-v", f"{vol}:/vol", "busybox", "sh", "-c",
                 "mkdir -p /vol/dst; trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    wait_for(lambda: rl("exec", "live", "true", check=False).code == 0, 60, "rl exec to enter the container")
    try:
        yield vol
    finally:
        p.terminate()
        p.communicate(timeout=60)
        rl("rm", "-f", "live")


@pytest.mark.parametrize("case", CASES)
def test_cp_from_stdin_stays_in_the_directory(rl: Rl, live: Path, case: str) -> None:
    """`rl cp - live:/vol/dst` with a hostile tar: /vol/victim (a host file, through the volume)
    stays as it was; what is unpacked stays under /vol/dst."""
    victim = Victim(live)
    r = rl("cp", "-", "live:/vol/dst", input=tar_bytes(hostile(case, "/vol", "..")), check=False)
    assert_safe(r)
    victim.assert_untouched()
    if case == "absolute":
        assert r.code == 0 and (live / "dst/vol/victim").read_text() == "owned\n"  # as tar -P would not
    if case in ("dotdot", "symlink_then_file", "relative_symlink_then_file", "hardlink_out", "device",
                "symlink_to_dir_then_new_file", "directory_replaced_by_symlink"):
        assert r.code == 125, f"{case} was not refused"


def _import(rl: Rl, tmp_path: Path, data: bytes) -> object:
    path = tmp_path / "hostile.tar"
    path.write_bytes(data)
    return rl("import", str(path), "hostile", check=False)


def _load(rl: Rl, tmp_path: Path, data: bytes) -> object:
    """A docker-archive of one image whose one layer is `data`."""
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["hostile:latest"],
                            "Layers": ["layer/layer.tar"]}]).encode()
    archive = tmp_path / "hostile-archive.tar"
    archive.write_bytes(tar_bytes([_file("manifest.json", manifest), _file(config_name, config),
                                   _file("layer/layer.tar", data)]))
    return rl("load", "-i", str(archive), check=False)


@pytest.mark.parametrize("unpack", [_import, _load], ids=["import", "load"])
@pytest.mark.parametrize("case", CASES)
def test_image_layers_stay_in_the_layer(rl: Rl, tmp_path: Path, case: str,
                                        unpack: Callable[[Rl, Path, bytes], object]) -> None:
    """`rl import` and `rl load` of a layer with a hostile entry: the host victim stays as it was."""
    victim = Victim(tmp_path / "victims")
    up = "../" * 40 + str(victim.dir).lstrip("/")
    r = unpack(rl, tmp_path, tar_bytes(hostile(case, str(victim.dir), up)))
    assert_safe(r)
    victim.assert_untouched()
