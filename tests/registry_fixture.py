"""A real registry for the tests: Debian's docker-registry on 127.0.0.1, plain HTTP, no auth.

Test modules import the fixtures they use from here. A test that needs it is skipped only when
docker-registry is not installed; a registry that does not come up fails it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCKER_REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT, what image names start with
    storage: Path
    log: Path

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def request_count(self, needle: str) -> int:
        """How many requests the registry logged whose line contains needle (e.g. a blob digest)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "response completed" in line and needle in line)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, storage: Path, extra: str = "") -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{extra}"
    )


def _wait_ready(proc: subprocess.Popen[bytes], host: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 when auth is on)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"docker-registry did not answer on {host} within {START_TIMEOUT} s")


def start_registry(workdir: Path, extra_config: str = "") -> Iterator[LocalRegistry]:
    """Run a registry until the generator is closed (for use with `yield from` in a fixture)."""
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry is not installed")
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_config(port, storage, extra_config))
    log = workdir / "registry.log"
    host = f"127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(proc, host, log)
        yield LocalRegistry(host, storage, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One registry per test module; tests use their own repository names in it."""
    yield from start_registry(tmp_path_factory.mktemp("registry"))
