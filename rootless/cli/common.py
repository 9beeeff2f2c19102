"""What every command needs: the store the global options point at."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rootless.errors import ContainerNotFound, RlError
from rootless.paths import default_root
from rootless.store.records import ContainerRecord
from rootless.store.store import Store


def open_store(args: argparse.Namespace) -> Store:
    return Store(Path(args.root) if args.root else default_root())


def for_each_container(args: argparse.Namespace, action: Callable[[Store, ContainerRecord, str], None]) -> int:
    """Run action on each container named (its record made current first), reporting failures one
    per line as Docker does: exit code 1 when one was not found, 125 for other errors."""
    from rootless.runtime.supervisor import refresh

    code = 0
    with open_store(args) as store:
        for ref in args.containers:
            try:
                action(store, refresh(store, store.container(ref)), ref)
            except ContainerNotFound as e:
                sys.stderr.write(f"Error: {e}\n")
                code = max(code, 1)
            except RlError as e:
                sys.stderr.write(f"Error: {e}\n")
                code = 125
    return code
