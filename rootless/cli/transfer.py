"""`rl cp`, `rl export`, `rl commit`."""
from __future__ import annotations

import argparse
import os
import sys

from rootless.cli.common import open_store
from rootless.errors import UsageError


def _split(arg: str) -> tuple[str | None, str]:
    """(container, path) of CONTAINER:PATH; (None, path) for a host path. As in Docker, a path
    starting with / or . is the host's even when it holds a colon."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def cmd_cp(args: argparse.Namespace) -> int:
    from rootless.runtime.execute import find_container
    from rootless.runtime.transfer import copy_in, copy_in_archive, copy_out

    src_ctr, src = _split(args.source)
    dest_ctr, dest = _split(args.dest)
    if (src_ctr is None) == (dest_ctr is None):
        raise UsageError("rl cp copies between a container and the host: give CONTAINER:PATH on exactly one side")
    if src_ctr is not None and dest == "-":
        raise UsageError("rl cp does not write tar streams to stdout (-) yet: give a path")
    if not (src if src_ctr else dest):
        raise UsageError("the container path is empty: use CONTAINER:/path")
    with open_store(args) as store:
        c = find_container(store, src_ctr or dest_ctr or "")
        if src == "-" and src_ctr is None:
            copy_in_archive(store, c, sys.stdin.fileno(), dest, args.archive)
        elif src_ctr is not None:
            copy_out(store, c, src, os.path.abspath(dest) + ("/" if dest.endswith("/") else ""))
        else:
            copy_in(store, c, os.path.abspath(src) + ("/." if src.endswith("/.") else ""), dest, args.archive)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rootless.runtime.execute import find_container
    from rootless.runtime.transfer import export

    if not args.output and os.isatty(1):
        # As Docker: a tar is no use on a terminal, and would garble it.
        raise UsageError("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
    with open_store(args) as store:
        c = find_container(store, args.container)
        if not args.output:
            sys.stdout.flush()
            export(store, c, 1)
            return 0
        tmp = f"{args.output}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                export(store, c, fd)
            finally:
                os.close(fd)
            os.rename(tmp, args.output)
        except BaseException:
            os.unlink(tmp)
            raise
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from rootless.runtime.execute import find_container
    from rootless.runtime.transfer import CommitOptions, commit

    opts = CommitOptions(args.reference, tuple(args.change), args.message, args.author)
    with open_store(args) as store:
        image_id = commit(store, find_container(store, args.container), opts)
    print(image_id)
    return 0
