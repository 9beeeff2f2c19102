"""`rl exec`."""
from __future__ import annotations

import argparse

from rootless.cli.common import open_store
from rootless.errors import UsageError


def cmd_exec(args: argparse.Namespace) -> int:
    from rootless.runtime.execute import ExecOptions, exec_in, running_container
    from rootless.runtime.handoff import check_preserved

    check_preserved(args.preserve_fds)

    if args.tty and args.detach:
        raise UsageError("-t/--tty cannot be used with -d for rl exec: a detached command has no terminal to relay")
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    opts = ExecOptions(tuple(args.command), tuple(args.env), tuple(args.env_file), args.workdir, args.user,
                       args.interactive, args.tty, args.detach, args.preserve_fds)
    if not opts.command:
        raise UsageError("exec needs a command to run: rl exec CONTAINER COMMAND [ARG...]")
    with open_store(args) as store:
        c = running_container(store, args.container)
    return exec_in(c, opts)
