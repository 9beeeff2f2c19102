"""`python -m fuse_overlay [-f] [-d] [--ready-fd N] -o lowerdir=..,upperdir=..,workdir=.. MOUNTPOINT`.

Without -f it daemonizes as fuse-overlayfs does: the command returns 0 once the mount is live,
or 1 with a one-line error, so a caller can use the mount right after it returns.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from fuse_overlay.options import Config, OptionsError, parse_args

PROG = "fuse-overlay"


def _reporter(fd: int | None) -> tuple[list[str], Callable[[str | None], None]]:
    errors: list[str] = []

    def report(message: str | None) -> None:
        if message is not None:
            errors.append(message)
        if fd is None:
            return
        try:
            os.write(fd, b"ok\n" if message is None else f"error: {message}\n".encode())
            os.close(fd)
        except OSError:
            pass  # the caller gave up waiting; the mount serves anyway

    return errors, report


def _foreground(config: Config) -> int:
    from fuse_overlay import daemon

    errors, report = _reporter(config.ready_fd)
    status = daemon.serve(config, report)
    for message in errors:
        print(f"{PROG}: {message}", file=sys.stderr)
    return status


def _daemonize(argv: list[str], config: Config) -> int:
    """Start ourselves with -f in a new session and wait until it says the mount is live."""
    read, write = os.pipe()
    args = [a for a in argv if a != "-f"]
    child_argv = [sys.executable, "-m", "fuse_overlay", "-f", "--ready-fd", str(write)]
    # A --ready-fd of our own caller is answered by us, once the child has answered.
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--ready-fd":
            skip = True
            continue
        if not a.startswith("--ready-fd="):
            child_argv.append(a)
    with open(os.devnull, "r+b") as null:
        subprocess.Popen(child_argv, stdin=null, stdout=null, stderr=null, pass_fds=(write,),
                         start_new_session=True, close_fds=True)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode(errors="replace").strip()
    _, report = _reporter(config.ready_fd)
    if answer == "ok":
        report(None)
        return 0
    message = answer.removeprefix("error: ") or "the daemon exited before mounting"
    report(message)
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    try:
        config = parse_args(argv)
    except OptionsError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if config.foreground:
        return _foreground(config)
    return _daemonize(argv, config)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
