"""Which ids rl maps: the /etc/subuid range when there is one, else the user's own id only."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootless.userns import idmap


def test_subid_file_parsing(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\n# comment\nbob:bad:1\n1234:200000:1000\ncarol:300000:0\n")
    assert idmap.read_subid_file(f, "alice", 1) == (100000, 65536)
    assert idmap.read_subid_file(f, "someone", 1234) == (200000, 1000)
    assert idmap.read_subid_file(f, "bob", 5) is None
    assert idmap.read_subid_file(f, "carol", 6) is None
    assert idmap.read_subid_file(tmp_path / "missing", "alice", 1) is None


def test_mapping_translates_both_ways() -> None:
    m = idmap.IdMapping("subuid", (idmap.IdRange(0, 1000, 1), idmap.IdRange(1, 100000, 65536)),
                        (idmap.IdRange(0, 1000, 1), idmap.IdRange(1, 100000, 65536)), "test")
    assert m.host_uid(0) == 1000 and m.host_uid(33) == 100032 and m.host_uid(70000) is None
    assert m.container_uid(100032) == 33 and m.container_uid(5) is None
    assert m.size == 65537


def test_without_a_range_the_reason_tells_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(idmap, "SUBUID_FILE", tmp_path / "none")
    m = idmap.detect_mapping()
    assert m.mode == "single"
    assert m.uids == (idmap.IdRange(0, os.getuid(), 1),)
    assert "/etc/subuid" in m.reason and "usermod" in m.reason


@pytest.mark.single_id
def test_single_id_user_gets_single_mapping() -> None:
    assert idmap.detect_mapping().mode == "single"


@pytest.mark.needs_subuid
def test_range_user_gets_full_mapping() -> None:
    if os.environ.get("RL_IDMAP") == "single" or idmap.detect_mapping().mode != "subuid":
        pytest.skip("this user has no subordinate range (the single-id user runs the other tests)")
    m = idmap.detect_mapping()
    assert m.size > 1 and m.uids[0].outside == os.getuid()


def test_missing_newuidmap_falls_back_to_single_id_and_says_why(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import pwd

    name = pwd.getpwuid(os.getuid()).pw_name
    sub = tmp_path / "subuid"
    sub.write_text(f"{name}:100000:65536\n")
    monkeypatch.setattr(idmap, "SUBUID_FILE", sub)
    monkeypatch.setattr(idmap, "SUBGID_FILE", sub)
    monkeypatch.delenv("RL_IDMAP", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no newuidmap on PATH
    m = idmap.detect_mapping()
    assert m.mode == "single"
    assert "newuidmap" in m.reason and "uidmap" in m.reason
