"""What every command needs: the store the global options point at."""
from __future__ import annotations

import argparse
from pathlib import Path

from rootless.paths import default_root
from rootless.store.store import Store


def open_store(args: argparse.Namespace) -> Store:
    return Store(Path(args.root) if args.root else default_root())
