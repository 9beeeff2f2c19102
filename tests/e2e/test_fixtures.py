"""The suite's own fixtures: what they leave behind on the host."""
from __future__ import annotations

import functools
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import OtherStores, has_subuid_range, need_reachable, wait_for
from tests.registry_fixture import PASSWORD, bcrypt_hash, refused_port


def _not_mine(top: Path) -> list[str]:
    """Everything under top that belongs to another uid than the test's (walked without
    following links; unreadable directories are listed, not entered)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: None):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_uid != os.getuid():
                found.append(path)
    return found


def test_another_store_leaves_no_file_of_a_subordinate_id(tmp_path: Path, busybox_tar: Path,
                                                          other_store: OtherStores) -> None:
    if not has_subuid_range():
        pytest.skip("a file of another id needs a subordinate id range")
    second = other_store(tmp_path / "second")
    second("import", str(busybox_tar), "busybox:latest")
    second("run", "--name", "c", "busybox", "sh", "-c", "echo x > /owned && chown 1000:1000 /owned")
    assert _not_mine(tmp_path), "the container's file belongs to a subordinate id on the host"
    other_store.remove()
    assert _not_mine(tmp_path) == []


def test_the_htpasswd_file_needs_no_crypt_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import bcrypt

    monkeypatch.setitem(sys.modules, "crypt", None)  # as in Python 3.13, where it is gone
    try:
        hashed = bcrypt_hash(PASSWORD)
    except pytest.skip.Exception as e:
        pytest.fail(f"the Basic-auth tests would be skipped: {e}")
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())


def test_an_unreachable_package_mirror_skips_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "Release").write_text("here\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}"
    with refused_port() as port:
        refused = f"http://127.0.0.1:{port}"
        try:
            need_reachable(mirror, f"{mirror}/Release")
            with pytest.raises(pytest.skip.Exception, match=f"the package mirror {mirror} is unreachable"):
                need_reachable(mirror, f"{mirror}/missing")
            with pytest.raises(pytest.skip.Exception, match=f"the package mirror {refused} is unreachable"):
                need_reachable(refused, f"{refused}/Release")
        finally:
            server.shutdown()
            server.server_close()


def test_wait_for_returns_what_came_true_and_names_what_never_did() -> None:
    answers = iter([0, "", "ready"])
    assert wait_for(lambda: next(answers), 10, "an answer") == "ready"
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_for(lambda: False, 0.1, "the impossible")
