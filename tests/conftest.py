"""Fixtures shared by every test: a private store, the CLI, and the locally made test images."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent


# scripts/test's last pass: the tests marked as_root, run as root (root runs rl in single-id
# mode, where an escape from a container is an escape to root).
AS_ROOT = os.environ.get("RL_TEST_AS_ROOT") == "1"


def pytest_configure(config: pytest.Config) -> None:
    if os.getuid() == 0 and not AS_ROOT:
        pytest.exit("the suite proves rootless operation, so it refuses to run as root: "
                    "run ./scripts/test, which runs it as the unprivileged test users", returncode=4)
    if AS_ROOT and os.getuid() != 0:
        pytest.exit("RL_TEST_AS_ROOT=1 is scripts/test's pass as root", returncode=4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """As root only the as_root tests run; as a user they do not (scripts/test runs them as root)."""
    keep = [item for item in items if bool(item.get_closest_marker("as_root")) == AS_ROOT]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Polls predicate until it returns something true, and returns that; fails the test when
    timeout seconds pass first (a guard against a hang, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


def test_images_dir() -> Path:
    env = os.environ.get("RL_TEST_IMAGES")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "rl" / "test-images"


def _test_image(name: str) -> Path:
    d = test_images_dir()
    path = d / name
    if not path.exists():
        subprocess.run([str(REPO / "scripts" / "make-test-images"), str(d)], check=True)
    assert path.exists(), f"scripts/make-test-images did not make {path}"
    return path


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    return _test_image("busybox.tar")


@pytest.fixture(scope="session")
def debian_tar() -> Path:
    return _test_image("debian-bookworm.tar")


def need_reachable(what: str, url: str, timeout: float = 5) -> None:
    """Skips the test unless an HTTP HEAD of url, a file the test will fetch, succeeds (an error
    status counts as unreachable: it is what a proxy that blocks the host answers)."""
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except OSError as e:
        pytest.skip(f"the package mirror {what} is unreachable: HEAD {url}: {e}")


# Session-scoped: checked once, and a skip is cached with the fixture for every test after.
@pytest.fixture(scope="session")
def apt_mirror() -> str:
    """The host's Debian mirror, which the Debian test image's apt uses."""
    url = subprocess.run([str(REPO / "scripts" / "make-test-images"), "--mirror"], capture_output=True,
                         text=True, check=True).stdout.strip()
    need_reachable(url, f"{url}/dists/bookworm/Release")
    return url


@pytest.fixture(scope="session")
def pypi() -> str:
    """PyPI itself: pip in the Debian test image has no other index configured."""
    url = "https://pypi.org/simple/"
    need_reachable(url, f"{url}six/")
    return url


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class Rl:
    """Runs the real `rl` command line against a private store."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 300,
                 env: dict[str, str] | None = None) -> Result:
        p = subprocess.run([sys.executable, "-m", "rootless", *args], input=input, capture_output=True,
                           env={**self.env, **(env or {})}, timeout=timeout)
        r = Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
        if check and r.code != 0:
            raise AssertionError(f"rl {' '.join(args)} exited {r.code}\nstdout: {r.out}\nstderr: {r.err}")
        return r

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "rootless", *args], env=self.env, **kw)  # type: ignore[call-overload]


# What rl needs from the environment the suite runs in; everything else (a developer's
# REGISTRY_AUTH_FILE, DOCKER_CONFIG, CONTAINERS_REGISTRIES_CONF, ~/.docker/config.json...)
# would change what rl does, so the tests must not see it.
_KEPT_ENV = ("PATH", "XDG_RUNTIME_DIR", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "TERM")


def rl_env(store_root: Path, home: Path) -> dict[str, str]:
    """A clean environment for rl: HOME and XDG_CONFIG_HOME private to the test."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k in _KEPT_ENV or k.startswith(("LC_", "PYTHON")) or (k.startswith("RL_") and k != "RL_DEBUG")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), RL_ROOT=str(store_root))
    return env


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def remove_store_trees(root: Path) -> None:
    """Layers and containers hold files of subordinate ids, which pytest cannot remove from its
    temp dirs: rl removes them, in its user namespace."""
    if root.exists():
        from rootless.store.store import Store

        with Store(root) as s:
            s.remove_trees([p for p in root.iterdir() if p.name not in ("rl.db", "rl.db-wal", "rl.db-shm")])


@pytest.fixture
def rl(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rl]:
    # HOME beside the test's tmp_path, not in it: tests own what is in theirs.
    env = rl_env(store_root, tmp_path_factory.mktemp("home"))
    yield Rl(store_root, env)
    remove_store_trees(store_root)


class OtherStores:
    """Makes `Rl`s on further stores (rl's environment, another RL_ROOT) and removes their trees
    as the `rl` fixture does its own."""

    def __init__(self, rl: Rl) -> None:
        self._env = rl.env
        self._roots: list[Path] = []

    def __call__(self, root: Path, **env: str) -> Rl:
        self._roots.append(root)
        return Rl(root, {**self._env, **env, "RL_ROOT": str(root)})

    def remove(self) -> None:
        for root in self._roots:
            remove_store_trees(root)


@pytest.fixture
def other_store(rl: Rl) -> Iterator[OtherStores]:
    """`other_store(root, VAR=value...)`: an `Rl` on the store at root, cleaned up after the test."""
    stores = OtherStores(rl)
    yield stores
    stores.remove()


@pytest.fixture
def store(store_root: Path) -> Iterator["Store"]:  # noqa: F821
    from rootless.store.store import Store

    with Store(store_root) as s:
        yield s


@pytest.fixture
def busybox(rl: Rl, busybox_tar: Path) -> str:
    """busybox:latest imported into the test's store; returns its image id."""
    return rl("import", str(busybox_tar), "busybox:latest").out.strip()


def kernel_allows_overlay(where: Path) -> bool:
    """Asked of the kernel without rl: overlayfs with userxattr in a fresh user namespace, on the
    test's file system, deleting a lower entry (where a missing userxattr shows, as EIO)."""
    for d in ("lower/d", "upper", "work", "merged"):
        (where / d).mkdir(parents=True)
    (where / "lower" / "d" / "f").write_text("")
    script = (f"mount -t overlay overlay -o lowerdir={where}/lower,upperdir={where}/upper,"
              f"workdir={where}/work,userxattr {where}/merged && rm {where}/merged/d/f && rmdir {where}/merged/d")
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True)
    for work in (where / "work").iterdir():
        work.chmod(0o700)  # the kernel's own work directory is mode 000
    return p.returncode == 0


def has_subuid_range() -> bool:
    from rootless.userns.idmap import detect_mapping

    return detect_mapping().mode == "subuid"


@pytest.fixture(autouse=True)
def _single_id_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked single_id run without a subordinate range: really (the second test user),
    or, when the suite runs as a user that has one, by asking rl for a single-id mapping."""
    if request.node.get_closest_marker("single_id") and has_subuid_range():
        monkeypatch.setenv("RL_IDMAP", "single")


def tree_snapshot(root: Path) -> dict[str, tuple]:  # type: ignore[type-arg]
    """Names, types, modes, sizes and link targets of a tree, for comparing two unpackings."""
    out: dict[str, tuple] = {}  # type: ignore[type-arg]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            target = os.readlink(p) if p.is_symlink() else None
            out[rel] = (st.st_mode, st.st_size if not p.is_dir() else 0, target)
    return out


DRIVERS = ["overlay", "fuse-overlay", "vfs"]


@pytest.fixture(params=DRIVERS)
def run(request: pytest.FixtureRequest, rl: Rl, busybox: str):  # type: ignore[no-untyped-def]
    """`rl --storage-driver D run ...` for each storage driver D: every e2e test of run uses it."""
    driver = request.param

    def call(*args: str, **kw: object) -> Result:
        return rl("--storage-driver", driver, "run", *args, **kw)  # type: ignore[arg-type]

    call.driver = driver  # type: ignore[attr-defined]
    return call
