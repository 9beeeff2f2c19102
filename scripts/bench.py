"""Side-by-side timings of rl and its peers, interleaved, as medians and ratios (not a test).

Run through scripts/bench, as an unprivileged user. Each workload names a setup that runs once,
and for each tool a `prepare` (untimed, e.g. empty the store) and a `run` (timed) command.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Contender:
    name: str
    run: str
    prepare: str = "true"
    # "wall": the run command's wall time; "dd": the seconds dd itself reports (summed), which
    # leaves out everything around the I/O, such as a container's start.
    timing: str = "wall"


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    contenders: tuple[Contender, ...]
    setup: str = "true"
    rounds: int = 5
    needs: tuple[str, ...] = field(default_factory=tuple)
    teardown: str = "true"


def sh(cmd: str, env: dict[str, str]) -> str:
    """Runs cmd; returns its stderr."""
    p = subprocess.run(["bash", "-c", cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {cmd}\n{p.stderr[-2000:]}")
    return p.stderr


def timed(c: Contender, env: dict[str, str]) -> float:
    t = time.perf_counter()
    err = sh(c.run, env)
    elapsed = time.perf_counter() - t
    if c.timing == "dd":
        # GNU dd's last line: "536870912 bytes (537 MB, 512 MiB) copied, 0.402 s, 1.3 GB/s"
        spans = re.findall(r"copied, ([0-9.]+) s", err)
        if not spans:
            raise RuntimeError(f"no dd timing in the output of: {c.run}\n{err[-2000:]}")
        return sum(float(x) for x in spans)
    return elapsed


def workloads(w: Path, images: Path) -> list[Workload]:
    # The `rl` command a user types (the venv's entry script), not `python -m`, whose runpy
    # costs a start ~5 ms that no user pays.
    entry = Path(sys.executable).parent / "rl"
    rl = f"{entry if entry.exists() else sys.executable + ' -m rootless'} --root {w}/rl"
    podman = (f"podman --root {w}/podman --runroot {w}/podman-run --storage-driver overlay "
              "--cgroup-manager=cgroupfs --events-backend=none")
    deb = images / "debian-bookworm.tar"
    return [
        Workload(
            "load", "load the debian image archive into an empty store",
            (Contender("rl", f"{rl} load -q -i {w}/deb-rl.tar", f"{rl} system prune -a -f"),
             Contender("podman", f"{podman} load -q -i {w}/deb-podman.tar", f"{podman} rmi -a -f")),
            setup=(f"{rl} import {deb} deb:bench && {rl} save -o {w}/deb-rl.tar deb:bench && "
                   f"{podman} import {deb} deb:bench && {podman} save --format oci-archive -o {w}/deb-podman.tar deb:bench"),
            needs=("podman",),
        ),
        Workload(
            "import", "import the debian rootfs tarball into an empty store",
            (Contender("rl", f"{rl} import {deb} deb:imp", f"{rl} system prune -a -f"),
             Contender("podman", f"{podman} import {deb} deb:imp", f"{podman} rmi -a -f")),
            needs=("podman",),
        ),
        Workload(
            "images", "list images (a store holding one)",
            (Contender("rl", f"{rl} images"), Contender("podman", f"{podman} images")),
            setup=f"{rl} import {images}/busybox.tar bb && {podman} import {images}/busybox.tar bb",
            rounds=15, needs=("podman",),
        ),
        Workload(
            "run", "start-to-exit of `run --rm busybox true` (kernel overlay)",
            (Contender("rl", f"{rl} --storage-driver overlay run --rm busybox true"),
             Contender("podman", f"{podman} run --rm --cgroups=disabled --network host busybox true"),
             Contender("bwrap", f"bwrap --unshare-all --share-net --bind {w}/bbroot / --proc /proc --dev /dev true"),
             Contender("unshare", f"unshare --user --map-root-user --mount --pid --fork --root {w}/bbroot /bin/true")),
            setup=(f"{rl} import {images}/busybox.tar busybox && {podman} import {images}/busybox.tar busybox && "
                   f"mkdir -p {w}/bbroot && tar -C {w}/bbroot -xf {images}/busybox.tar --no-same-owner "
                   "--exclude='./dev/*' --exclude='dev/*'"),
            rounds=20, needs=("podman", "bwrap", "unshare"),
        ),
        Workload(
            "fileio", "write 512 MB with fsync and read it back, in a --rm container (overlay, volatile) vs the host",
            (Contender("rl", f"{rl} --storage-driver overlay run --rm busybox sh -c "
                             "'dd if=/dev/zero of=/f bs=1M count=512 conv=fsync 2>/dev/null && cat /f > /dev/null'"),
             Contender("host", f"busybox sh -c 'dd if=/dev/zero of={w}/f bs=1M count=512 conv=fsync 2>/dev/null "
                               f"&& cat {w}/f > /dev/null && rm {w}/f'")),
            setup=f"{rl} images -q busybox | grep -q . || {rl} import {images}/busybox.tar busybox",
            rounds=5, needs=("busybox",),
        ),
        Workload(
            "io", "the same file I/O timed by dd itself: the container's I/O without its start",
            # Not --rm: that mounts the overlay volatile, which skips the fsync (as podman does).
            (Contender("rl", f"{rl} --storage-driver overlay run --name rl-io deb:io sh -c '{DD_IO.format(f='/f')}'"
                             f" && {rl} rm rl-io >/dev/null", timing="dd"),
             Contender("host", f"sh -c '{DD_IO.format(f=w / 'f')}; rm {w}/f'", timing="dd")),
            setup=f"{rl} images -q deb:io | grep -q . || {rl} import {deb} deb:io",
            rounds=5,
        ),
        *build_workloads(w, rl, podman, deb),
        *registry_workloads(w, rl, podman, deb),
        Workload(
            "help", "print the help text",
            (Contender("rl", f"{rl} --help"), Contender("podman", "podman --help")),
            rounds=15, needs=("podman",),
        ),
    ]


# Write 512 MB with fsync, then read it back: GNU dd (the host's, and the debian image's) reports
# each part's time on stderr.
DD_IO = "dd if=/dev/zero of={f} bs=1M count=512 conv=fsync && dd if={f} of=/dev/null bs=1M"

BUILD_DOCKERFILE = """\
FROM deb:build
ENV APP=/srv/app
RUN mkdir -p /gen && for i in $(seq 1 2000); do echo "file $i" > /gen/$i; done
COPY . /srv/app/
CMD ["ls", "/srv/app"]
"""


def build_workloads(w: Path, rl: str, podman: str, deb: Path) -> list[Workload]:
    """The issue's 5-step Dockerfile (FROM debian, ENV, RUN writing files, COPY of a 50 MB
    context, CMD): a cold build, a fully cached rebuild, and a rebuild after one copied file
    changed; against buildah bud --layers and podman build, each on a store of its own."""
    buildah = (f"buildah --root {w}/buildah --runroot {w}/buildah-run --storage-driver overlay")
    podman_b = (f"podman --root {w}/buildah --runroot {w}/buildah-run --storage-driver overlay "
                "--cgroup-manager=cgroupfs --events-backend=none")
    ctx = w / "build-ctx"
    setup = (f"mkdir -p {ctx} && head -c 50000000 /dev/urandom > {ctx}/data.bin && echo 1 > {ctx}/small.txt && "
             f"printf %s '{BUILD_DOCKERFILE}' > {ctx}/Dockerfile && "
             f"({rl} images -q deb:build | grep -q . || {rl} import {deb} deb:build) && "
             f"({podman} images -q deb:build | grep -q . || {podman} import {deb} deb:build) && "
             f"({podman_b} images -q deb:build | grep -q . || {podman_b} import {deb} deb:build)")
    rl_b = f"{rl} build -q -t out:b {ctx}"
    podman_build = f"{podman} build -q --layers --network host -t out:b {ctx}"
    buildah_bud = f"{buildah} bud -q --layers --network host -t out:b {ctx}"
    forget = {"rl": f"{rl} rmi -f out:b; {rl} system prune -f",
              "podman": f"{podman} rmi -f out:b; {podman} image prune -f",
              "buildah": f"{buildah} rmi -f out:b; {buildah} rmi --prune"}
    change = f"echo $RANDOM >> {ctx}/small.txt"
    needs = ("podman", "buildah")
    return [
        Workload("build-cold", "build the 5-step Dockerfile with an empty cache",
                 (Contender("rl", rl_b, forget["rl"] + " >/dev/null 2>&1 || true"),
                  Contender("buildah", buildah_bud, forget["buildah"] + " >/dev/null 2>&1 || true"),
                  Contender("podman", podman_build, forget["podman"] + " >/dev/null 2>&1 || true")),
                 setup=setup, rounds=3, needs=needs),
        Workload("build-cached", "rebuild it, every step cached",
                 (Contender("rl", rl_b), Contender("buildah", buildah_bud), Contender("podman", podman_build)),
                 setup=f"{setup} && {rl_b} && {buildah_bud} && {podman_build}", rounds=5, needs=needs),
        Workload("build-changed", "rebuild it after one copied file changed",
                 (Contender("rl", rl_b, change), Contender("buildah", buildah_bud, change),
                  Contender("podman", podman_build, change)),
                 setup=f"{setup} && {rl_b} && {buildah_bud} && {podman_build}", rounds=3, needs=needs),
    ]


def registry_workloads(w: Path, rl: str, podman: str, deb: Path) -> list[Workload]:
    """Pull of the debian image (gzip layers, as registries hold them) from a docker-registry on
    127.0.0.1 into an empty store, and push of it to an empty registry, against podman."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reg = w / "registry"
    host = f"127.0.0.1:{port}"
    config = (f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {reg}/storage\n"
              f"  delete:\n    enabled: true\nhttp:\n  addr: {host}\n")
    start = (f"mkdir -p {reg}/storage && printf '%s' '{config}' > {reg}/config.yml && "
             f"(setsid docker-registry serve {reg}/config.yml > {reg}/log 2>&1 & echo $! > {reg}/pid) && "
             f"for i in $(seq 100); do curl -sf http://{host}/v2/ >/dev/null && break; sleep 0.1; done && "
             f"({rl} images -q deb:reg | grep -q . || {rl} import {deb} deb:reg) && "
             f"({podman} images -q deb:reg | grep -q . || {podman} import {deb} deb:reg)")
    stop = f"kill $(cat {reg}/pid) 2>/dev/null || true"
    empty_registry = f"rm -rf {reg}/storage/docker"
    needs = ("podman", "docker-registry", "curl")
    return [
        Workload("pull", "pull the debian image (gzip) from a local registry into an empty store",
                 (Contender("rl", f"{rl} pull -q {host}/bench/deb:1", f"{rl} system prune -a -f"),
                  Contender("podman", f"{podman} pull -q --tls-verify=false {host}/bench/deb:1",
                            f"{podman} rmi -a -f")),
                 setup=f"{start} && {rl} push -q --compression gzip deb:reg {host}/bench/deb:1",
                 rounds=5, needs=needs, teardown=stop),
        # Both compress what they push by default (gzip): like for like.
        Workload("push", "push the debian image (gzip, both tools' default) to an empty local registry",
                 (Contender("rl", f"{rl} push -q deb:reg {host}/bench/push:1", empty_registry),
                  Contender("podman", f"{podman} push -q --tls-verify=false deb:reg {host}/bench/push:1",
                            empty_registry)),
                 setup=start, rounds=5, needs=needs, teardown=stop),
        Workload("push-plain", "push it with rl's layers as stored (--compression none) to an empty local registry",
                 (Contender("rl", f"{rl} push -q --compression none deb:reg {host}/bench/plain:1", empty_registry),
                  Contender("podman", f"{podman} push -q --tls-verify=false deb:reg {host}/bench/plain:1",
                            empty_registry)),
                 setup=start, rounds=5, needs=needs, teardown=stop),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help="workloads to run (default: all but fs; fs: the overlay file "
                                             "systems side by side, scripts/bench_fs.py)")
    ap.add_argument("--rounds", type=int, help="override the rounds of every workload")
    ap.add_argument("--images", default=os.environ.get("RL_TEST_IMAGES") or
                    os.path.expanduser("~/.cache/rl/test-images"))
    args = ap.parse_args()
    if "fs" in args.names:
        # The file-system workloads (overlays side by side) have a runner of their own.
        sys.path.insert(0, str(REPO / "scripts"))
        import bench_fs

        fs_args = ["--rounds", str(args.rounds)] if args.rounds else []
        code = bench_fs.main(fs_args)
        args.names.remove("fs")
        if not args.names:
            return code
    if os.getuid() == 0:
        print("scripts/bench must run as an unprivileged user (scripts/bench does that for you)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="rl-bench-xdg-"))
    if not (Path(sys.executable).parent / "rl").exists():
        env["PYTHONPATH"] = str(REPO)  # for `python -m rootless`; the rl command knows its path
    # The rl a user runs reads its modules' cached bytecode; this switch (set in some sessions)
    # would make it compile every module it imports on every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results = []
    with tempfile.TemporaryDirectory(prefix="rl-bench-") as tmp:
        w = Path(tmp)
        for wl in workloads(w, Path(args.images)):
            if args.names and wl.name not in args.names:
                continue
            missing = [t for t in wl.needs if shutil.which(t) is None]
            if missing:
                print(f"{wl.name}: skipped, {', '.join(missing)} not installed")
                continue
            sh(wl.setup, env)
            times: dict[str, list[float]] = {c.name: [] for c in wl.contenders}
            for _ in range(args.rounds or wl.rounds):
                for c in wl.contenders:
                    sh(c.prepare, env)
                    times[c.name].append(timed(c, env))
            sh(wl.teardown, env)
            med = {k: statistics.median(v) for k, v in times.items()}
            base = med[wl.contenders[0].name]
            for c in wl.contenders:
                results.append((wl.name, c.name, med[c.name], base / med[c.name] if c is not wl.contenders[0] else 1.0,
                                len(times[c.name])))
            print(f"{wl.name:8} {wl.what}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items()), flush=True)
        # podman leaves files owned by subordinate ids in its scratch store.
        if shutil.which("podman"):
            subprocess.run(["podman", "unshare", "rm", "-rf", str(w)], env=env, capture_output=True)
    print()
    print(f"{'workload':10} {'tool':8} {'median':>10} {'rl/tool':>8}  (ratio < 1: rl is faster)")
    for name, tool, m, ratio, n in results:
        r = "" if tool == "rl" else f"{ratio:.2f}"
        print(f"{name:10} {tool:8} {m * 1000:8.0f}ms {r:>8}  n={n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
