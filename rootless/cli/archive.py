"""`rl save` and `rl load`."""
from __future__ import annotations

import argparse
import os

from rootless.cli.common import open_store
from rootless.errors import UsageError


def cmd_save(args: argparse.Namespace) -> int:
    from rootless.image.save import save_archive, save_layout_dir

    if args.format == "oci-dir":
        if not args.output:
            raise UsageError("--format oci-dir needs -o DIR: the directory to write the layout to")
    elif not args.output and os.isatty(1):
        # As Docker: a tar is no use on a terminal, and would garble it.
        raise UsageError("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
    with open_store(args) as store:
        if args.format == "oci-dir":
            save_layout_dir(store, args.images, args.output)
        else:
            save_archive(store, args.images, args.output)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from rootless.image.load import load_images

    with open_store(args) as store:
        loaded = load_images(store, args.input)
    # -q only silences progress in Docker and podman, and rl shows none: these lines always print.
    for item in loaded:
        for name, old in item.replaced:
            print(f"The image {name.familiar()} already exists, renaming the old one with ID {old} to empty string")
        for name in item.names:
            print(f"Loaded image: {name.familiar()}")
        if not item.names:
            print(f"Loaded image ID: {item.image.id}")
    return 0
