#!/usr/bin/env python3
"""The overlay file systems side by side: ours, fuse-overlayfs, the kernel overlay and a plain
directory, on the workloads of issue 4, interleaved, as medians and ratios to fuse-overlayfs.

    scripts/bench_fs.py [--rounds N] [--only WORKLOAD...] [--targets TARGET...] [--markdown] [--dir DIR]

Run as an unprivileged user. Every measurement is a fresh worker process (this file with
--worker) in a new user+mount+pid namespace: it mounts the target on a fresh upper dir, times the
workload, unmounts and waits for the daemon. The pid namespace dies with the worker, so a hung
or crashed daemon is killed with it. Not a test: see docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
BIG_SIZE = 512 * MIB
BIG = "big.bin"
# The small-file tree: TOP x SUB directories of FILES files each (30,000 files, 330 dirs).
TREE = "tree"
TOP, SUB, FILES = 30, 10, 100
# Deleting the files of the first DELETE_TOP top directories removes 5,000 lower files.
DELETE_TOP = 5
CREATES = 10_000
CREATE_SIZE = 1024
TARGETS = ("ours", "fuse-overlayfs", "kernel", "host")
FUSE_OVERLAYFS = "/usr/bin/fuse-overlayfs"
# Per measurement: far above the slowest honest run, so hitting it means a hung file system.
TIMEOUT = 300
DAEMON_EXIT_TIMEOUT = 15.0
NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child", "--"]


@dataclass(frozen=True)
class Row:
    key: str
    what: str
    goal: float  # the minimum fuse-overlayfs/ours ratio issue 4 asks for


@dataclass(frozen=True)
class Workload:
    name: str
    rows: tuple[Row, ...]


# "Cold metadata" (goal 0.3x) covers every metadata-heavy row on a fresh mount.
WORKLOADS = (
    Workload("write", (Row("write", "seq write 512 MiB + fsync", 0.8),)),
    Workload("read", (Row("read", "seq read 512 MiB lower file", 0.8),)),
    Workload("copyup", (Row("copyup", "copy-up 512 MiB (append 1 byte)", 0.8),)),
    Workload("create", (Row("create", "create 10,000 files of 1 KiB", 0.3),)),
    Workload("stat", (Row("stat-cold", "stat walk 30,331 entries, cold", 0.3),
                      Row("stat-warm", "stat walk, warm (2nd walk)", 0.8))),
    Workload("tar", (Row("tar", "tar c tree | wc -c, cold", 0.3),)),
    Workload("delete", (Row("delete", "delete 5,000 lower files", 0.3),)),
)


@dataclass(frozen=True)
class Job:
    """One measurement, handed to the worker as JSON."""

    target: str
    workload: str
    lower: str
    scratch: str  # a fresh directory of this measurement alone


@dataclass(frozen=True)
class Outcome:
    times: dict[str, float]
    error: str | None = None
    warning: str | None = None


class BenchError(Exception):
    """An expected failure; its text is the one-line message."""


# --- the lower tree --------------------------------------------------------------------------

def tree_files(top: range) -> list[str]:
    return [f"{TREE}/d{d:02}/s{s:02}/f{f:03}" for d in top for s in range(SUB) for f in range(FILES)]


def build_lower(lower: Path) -> None:
    lower.mkdir()
    block = os.urandom(MIB)
    with open(lower / BIG, "wb") as f:
        f.writelines(block for _ in range(BIG_SIZE // MIB))
    pool = os.urandom(8192)
    for d in range(TOP):
        for s in range(SUB):
            (lower / TREE / f"d{d:02}" / f"s{s:02}").mkdir(parents=True)
    for i, rel in enumerate(tree_files(range(TOP))):
        # Sizes 64 B .. 4 KiB, spread, so tar reads like a real tree rather than empty files.
        size = 64 + (i * 1237) % 4033
        fd = os.open(lower / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, pool[i % 4096:i % 4096 + size])
        finally:
            os.close(fd)
    # Flushed now, so writeback of the build does not land in the first measurements.
    os.sync()


# --- the workloads, run in the worker on `root`, the merged view --------------------------------

def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _run(cmd: list[str] | str) -> str:
    p = subprocess.run(cmd, shell=isinstance(cmd, str), executable="/bin/bash" if isinstance(cmd, str) else None,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise BenchError(f"{cmd if isinstance(cmd, str) else cmd[0]} exited {p.returncode}: {_one_line(p.stderr)}")
    return p.stdout


def w_write(root: Path) -> dict[str, float]:
    block = os.urandom(MIB)

    def write() -> None:
        fd = os.open(root / "seq-write.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for _ in range(BIG_SIZE // MIB):
                if os.write(fd, block) != MIB:
                    raise BenchError("short write")
            os.fsync(fd)
        finally:
            os.close(fd)

    return {"write": _timed(write)}


def w_read(root: Path) -> dict[str, float]:
    buf = bytearray(MIB)
    total = 0

    def read() -> None:
        nonlocal total
        with open(root / BIG, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n

    t = _timed(read)
    if total != BIG_SIZE:
        raise BenchError(f"read {total} bytes of {BIG}, expected {BIG_SIZE}")
    return {"read": t}


def w_copyup(root: Path) -> dict[str, float]:
    def append() -> None:
        fd = os.open(root / BIG, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)

    t = _timed(append)
    size = os.stat(root / BIG).st_size
    if size != BIG_SIZE + 1:
        raise BenchError(f"{BIG} is {size} bytes after the append, expected {BIG_SIZE + 1}")
    return {"copyup": t}


def w_create(root: Path) -> dict[str, float]:
    data = os.urandom(CREATE_SIZE)
    top = root / "created"

    def create() -> None:
        top.mkdir()
        for d in range(CREATES // 100):
            sub = top / f"{d:02}"
            sub.mkdir()
            for f in range(100):
                fd = os.open(sub / f"f{f:02}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)

    return {"create": _timed(create)}


def w_stat(root: Path) -> dict[str, float]:
    expected = 1 + TOP + TOP * SUB + TOP * SUB * FILES
    out = ""

    def walk() -> None:
        nonlocal out
        # `find -printf ''` reads d_type and never stats files; %s makes it lstat every entry.
        out = _run(["find", str(root / TREE), "-printf", "%s\n"])

    times = {}
    for key in ("stat-cold", "stat-warm"):
        times[key] = _timed(walk)
        if (n := out.count("\n")) != expected:
            raise BenchError(f"the walk saw {n} entries, expected {expected}")
    return times


def w_tar(root: Path) -> dict[str, float]:
    out = ""

    def tar() -> None:
        nonlocal out
        # Into a pipe, since GNU tar does not read file data when the archive is /dev/null.
        out = _run(f"set -o pipefail; tar -C {shlex.quote(str(root))} -cf - {TREE} | wc -c")

    t = _timed(tar)
    if int(out) < TOP * SUB * FILES * 64:
        raise BenchError(f"tar wrote only {out.strip()} bytes")
    return {"tar": t}


def w_delete(root: Path) -> dict[str, float]:
    paths = [root / rel for rel in tree_files(range(DELETE_TOP))]

    def delete() -> None:
        for p in paths:
            os.unlink(p)

    return {"delete": _timed(delete)}


RUNNERS: dict[str, Callable[[Path], dict[str, float]]] = {
    "write": w_write, "read": w_read, "copyup": w_copyup, "create": w_create,
    "stat": w_stat, "tar": w_tar, "delete": w_delete,
}


# --- the worker: one measurement inside its own namespaces -------------------------------------

def _one_line(text: str) -> str:
    # The tail, where a traceback's exception and mount(8)'s reason both are.
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return (line if len(line) <= 240 else "..." + line[-240:]) or "(no message)"


def _mount(job: Job) -> Path:
    s = Path(job.scratch)
    upper, work, mnt = s / "upper", s / "work", s / "mnt"
    for d in (upper, work, mnt):
        d.mkdir()
    opts = f"lowerdir={job.lower},upperdir={upper},workdir={work}"
    if job.target == "ours":
        cmd = [sys.executable, "-m", "fuse_overlay", "-o", opts, str(mnt)]
    elif job.target == "fuse-overlayfs":
        cmd = [FUSE_OVERLAYFS, "-o", opts, str(mnt)]
    else:
        cmd = ["mount", "-t", "overlay", "overlay", "-o", opts + ",userxattr", str(mnt)]
    # The log is a file, not a pipe: a daemon that keeps its stderr would hold a pipe open.
    log = s / "mount.log"
    with open(log, "wb") as err:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, check=False, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    if p.returncode != 0:
        raise BenchError(f"mount exited {p.returncode}: {_one_line(log.read_text(errors='replace'))}")
    if not os.path.ismount(mnt):
        raise BenchError(f"mount returned 0 but {mnt} is not a mount point")
    return mnt


def _unmount(mnt: Path) -> str | None:
    """Unmount and reap the daemon (our child: we are pid 1 of the namespace); a warning or None."""
    p = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return f"umount exited {p.returncode}: {_one_line(p.stderr)}"
    deadline = time.monotonic() + DAEMON_EXIT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid and (code := os.waitstatus_to_exitcode(status)) != 0:
            return f"the daemon exited {code} after unmount"
        if not pid:
            time.sleep(0.05)
    return f"the daemon still runs {DAEMON_EXIT_TIMEOUT:.0f} s after unmount"


def _host_view(job: Job) -> Path:
    """The plain directory the host target works in: the lower tree itself where the workload only
    reads, a private copy where it deletes, an empty one where it creates."""
    if job.workload in ("read", "copyup", "stat", "tar"):
        return Path(job.lower)
    view = Path(job.scratch) / "host"
    if job.workload == "delete":
        for d in range(DELETE_TOP):
            shutil.copytree(Path(job.lower) / TREE / f"d{d:02}", view / TREE / f"d{d:02}")
    else:
        view.mkdir()
    return view


def measure(job: Job) -> Outcome:
    lower_big = Path(job.lower) / BIG
    if job.workload == "read":
        # Every target then reads the lower data from the host page cache, none from the disk:
        # the comparison is of the file systems, not of the VM's disk. Unprivileged, we cannot
        # drop caches; the overlay's own cache is empty anyway, since each mount is fresh.
        with open(lower_big, "rb", buffering=0) as f:
            while f.read(8 * MIB):
                pass
    root = _host_view(job) if job.target == "host" else _mount(job)
    error = warning = None
    times: dict[str, float] = {}
    try:
        os.sync()  # earlier measurements' dirty data is not this one's to write back
        times = RUNNERS[job.workload](root)
    except (OSError, BenchError, subprocess.SubprocessError, ValueError) as e:
        error = str(e)
    finally:
        if job.target == "host" and job.workload == "copyup":
            os.truncate(lower_big, BIG_SIZE)  # the host appended to the lower file itself
        elif job.target != "host":
            warning = _unmount(root)
    return Outcome(times, error, warning)


def worker(spec: str) -> int:
    job = Job(**json.loads(spec))
    try:
        outcome = measure(job)
    except (OSError, BenchError, subprocess.SubprocessError) as e:
        outcome = Outcome({}, str(e))
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


# --- the driver -------------------------------------------------------------------------------

def in_namespace(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NAMESPACE, *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=timeout)


def run_job(job: Job) -> Outcome:
    Path(job.scratch).mkdir()
    try:
        p = in_namespace([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(job))],
                         TIMEOUT)
    except subprocess.TimeoutExpired:
        return Outcome({}, f"timed out after {TIMEOUT} s (a hung file system?)")
    finally:
        # As root of a namespace: the kernel overlay's work dir holds a mode 000 directory.
        in_namespace(["rm", "-rf", job.scratch], TIMEOUT)
    try:
        return Outcome(**json.loads(p.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError):
        return Outcome({}, f"worker exited {p.returncode}: {_one_line(p.stderr)}")


def kernel_overlay_problem(base: Path) -> str | None:
    d = base / "probe"
    for sub in ("l", "u", "w", "m"):
        (d / sub).mkdir(parents=True)
    p = in_namespace(["mount", "-t", "overlay", "overlay", "-o",
                      f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w,userxattr", str(d / "m")], 60)
    in_namespace(["rm", "-rf", str(d)], 60)
    return None if p.returncode == 0 else f"overlay not mountable in a user namespace: {_one_line(p.stderr)}"


@dataclass(frozen=True)
class Result:
    samples: dict[str, dict[str, list[float]]]  # row key -> target -> seconds
    errors: dict[tuple[str, str], list[str]]  # (target, workload) -> one per failed round
    skipped: dict[str, str]  # target -> why


def run(base: Path, rounds: int, workloads: list[Workload], targets: list[str], skipped: dict[str, str]) -> Result:
    lower = base / "lower"
    t = time.perf_counter()
    build_lower(lower)
    print(f"built the lower tree in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    samples: dict[str, dict[str, list[float]]] = {r.key: {t: [] for t in targets} for w in workloads for r in w.rows}
    errors: dict[tuple[str, str], list[str]] = {}
    n = 0
    # Workload by workload within a round, target after target: the targets compared are timed
    # seconds apart, which is what keeps their ratio steady on a machine shared with others.
    for rnd in range(1, rounds + 1):
        for w in workloads:
            for target in targets:
                if target in skipped:
                    continue
                n += 1
                out = run_job(Job(target, w.name, str(lower), str(base / f"m{n}")))
                for key, secs in out.times.items():
                    samples[key][target].append(secs)
                if out.error is not None:
                    errors.setdefault((target, w.name), []).append(out.error)
                shown = "failed: " + out.error if out.error else ", ".join(
                    f"{k} {fmt_time(v)}" for k, v in out.times.items())
                print(f"round {rnd}/{rounds} {w.name:7} {target:15} {shown}", file=sys.stderr, flush=True)
                if out.warning:
                    print(f"  warning: {target}/{w.name}: {out.warning}", file=sys.stderr, flush=True)
    return Result(samples, errors, skipped)


# --- the report -------------------------------------------------------------------------------

def fmt_time(secs: float) -> str:
    if secs < 0.01:
        return f"{secs * 1000:.2f} ms"
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.2f} s"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def table(result: Result, workloads: list[Workload], targets: list[str], rounds: int) -> list[list[str]]:
    shown = [t for t in targets if t not in result.skipped]
    goals = "ours" in shown
    rows = [["workload", *shown, *(["goal (ours)"] if goals else [])]]
    for w in workloads:
        for r in w.rows:
            med = {t: statistics.median(v) for t, v in result.samples[r.key].items() if v}
            base = med.get("fuse-overlayfs")
            cells = [r.what]
            for t in shown:
                if t not in med:
                    cells.append("failed")
                    continue
                cell = fmt_time(med[t])
                if base is not None:
                    cell += " " + fmt_ratio(base / med[t])
                if (k := len(result.samples[r.key][t])) < rounds:
                    cell += f" (n={k})"
                cells.append(cell)
            if goals:
                met = "n/a" if base is None or "ours" not in med else (
                    "met" if base / med["ours"] >= r.goal else "missed")
                cells.append(f">= {r.goal}x: {met}")
            rows.append(cells)
    return rows


def render(rows: list[list[str]], markdown: bool) -> str:
    left = {0} | {i for i, h in enumerate(rows[0]) if h.startswith("goal")}
    if markdown:
        rule = ["---" if i in left else "---:" for i in range(len(rows[0]))]
        cells = [[c.replace("|", "\\|") for c in r] for r in rows]
        return "\n".join("| " + " | ".join(r) + " |" for r in [cells[0], rule, *cells[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i])
                               for i, c in enumerate(r)).rstrip() for r in rows)


def report(result: Result, workloads: list[Workload], targets: list[str], rounds: int, markdown: bool) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{rounds} round{'s' if rounds > 1 else ''}, {when}, kernel {platform.release()}, {os.cpu_count()} CPUs; median per target and "
          "fuse-overlayfs time / target time (>= 1: at least as fast as fuse-overlayfs)")
    for t, why in result.skipped.items():
        print(f"skipped {t}: {why}")
    print()
    print(render(table(result, workloads, targets, rounds), markdown))
    for (t, w), errs in result.errors.items():
        print(f"{t}/{w} failed in {len(errs)} of {rounds} rounds: {errs[0]}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_fs.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every workload on every target (default 3)")
    ap.add_argument("--only", nargs="+", choices=[w.name for w in WORKLOADS], metavar="WORKLOAD",
                    help="run only these workloads: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--targets", nargs="+", choices=TARGETS, metavar="TARGET",
                    help="run only on these targets: " + ", ".join(TARGETS))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--dir", help="where to build the trees (default: the temp dir); needs user xattrs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if shutil.which("unshare") is None:
        print("bench_fs: unshare (util-linux) is not installed", file=sys.stderr)
        return 1
    p = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        print(f"bench_fs: cannot enter a user namespace: {_one_line(p.stderr)}", file=sys.stderr)
        return 1
    workloads = [w for w in WORKLOADS if not args.only or w.name in args.only]
    targets = [t for t in TARGETS if not args.targets or t in args.targets]
    base = Path(tempfile.mkdtemp(prefix="rl-bench-fs-", dir=args.dir))
    try:
        skipped: dict[str, str] = {}
        if "fuse-overlayfs" in targets and not os.access(FUSE_OVERLAYFS, os.X_OK):
            skipped["fuse-overlayfs"] = f"{FUSE_OVERLAYFS} is not installed"
        if "kernel" in targets and (why := kernel_overlay_problem(base)):
            skipped["kernel"] = why
        result = run(base, args.rounds, workloads, targets, skipped)
    except KeyboardInterrupt:
        print("bench_fs: interrupted", file=sys.stderr)
        return 130
    except (OSError, BenchError) as e:
        print(f"bench_fs: {e}", file=sys.stderr)
        return 1
    finally:
        in_namespace(["rm", "-rf", str(base)], TIMEOUT)
    report(result, workloads, targets, args.rounds, args.markdown)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
