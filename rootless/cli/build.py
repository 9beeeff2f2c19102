"""`rl build`."""
from __future__ import annotations

import argparse
import os
import sys

from rootless.cli.common import open_store
from rootless.errors import UsageError
from rootless.registry.policy import check_policy


def _pairs(values: list[str], flag: str) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        k, eq, val = v.partition("=")
        if not k:
            raise UsageError(f"{flag} needs KEY=VALUE, not {v!r}")
        if not eq:
            # Docker: `--build-arg NAME` takes NAME's value from the environment, if it has one.
            if k not in os.environ:
                continue
            val = os.environ[k]
        out.append((k, val))
    return tuple(out)


def cmd_build(args: argparse.Namespace) -> int:
    from rootless.build.engine import Builder, BuildOptions

    if args.network not in ("host", "none", "default"):
        raise UsageError(f"--network {args.network} is not supported for builds: use host or none")
    opts = BuildOptions(
        context=args.context, dockerfile=args.file, tags=tuple(args.tag),
        build_args=_pairs(args.build_arg, "--build-arg"), target=args.target, no_cache=args.no_cache,
        labels=_pairs(args.label, "--label"), quiet=args.quiet, storage_driver=args.storage_driver,
        network="host" if args.network == "default" else args.network, format=args.format,
        pull=check_policy(args.pull),
    )
    from rootless.runtime.supervisor import reap

    with open_store(args) as store:
        reap(store)  # step containers of a build whose rl was killed go now
        image = Builder(store, opts).build()
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(image.id)
    sys.stdout.write(image.id + "\n")
    return 0
