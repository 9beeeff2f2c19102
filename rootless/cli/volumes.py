"""`rl volume create | ls | inspect | rm | prune`, printed as Docker prints them."""
from __future__ import annotations

import argparse
import sys

from rootless.cli.common import open_store
from rootless.cli.output import human_size, json_doc, listing
from rootless.errors import UsageError, VolumeError
from rootless.store import volumes as volstore
from rootless.store.store import Store

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any


def _labels(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}: use KEY=VALUE or KEY")
        out[key] = value
    return out


def cmd_create(args: argparse.Namespace) -> int:
    labels = _labels(args.label)
    with open_store(args) as store:
        rec = volstore.create(store, args.name, labels)
    print(rec.name)
    return 0


def _inspect(store: Store, rec: volstore.VolumeRecord) -> dict[str, Any]:
    from datetime import datetime, timezone

    return {
        "CreatedAt": datetime.fromtimestamp(rec.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Driver": "local",
        "Labels": rec.labels,
        "Mountpoint": str(volstore.data_path(store, rec.name)),
        "Name": rec.name,
        "Options": {},
        "Scope": "local",
    }


def cmd_ls(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        recs = volstore.list_volumes(store)
        if args.quiet:
            sys.stdout.write("".join(r.name + "\n" for r in recs))
            return 0
        rows = [{"Availability": "N/A", "Driver": "local", "Group": "N/A",
                 "Labels": ",".join(f"{k}={v}" for k, v in r.labels.items()), "Links": "N/A",
                 "Mountpoint": str(volstore.data_path(store, r.name)), "Name": r.name,
                 "Scope": "local", "Size": "N/A", "Status": "N/A"} for r in recs]
    listing(args.format, rows, ["DRIVER", "VOLUME NAME"], [[row["Driver"], row["Name"]] for row in rows])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Docker's exit code: 1 when a volume is not found, the others still shown."""
    out: list[dict[str, Any]] = []
    missing: list[str] = []
    with open_store(args) as store:
        for name in args.names:
            try:
                out.append(_inspect(store, volstore.get(store, name)))
            except VolumeError as e:
                missing.append(str(e))
    json_doc(out)
    for m in missing:
        sys.stderr.write(f"Error: {m}\n")
    return 1 if missing else 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Docker's exit code: 1 when a volume is missing or in use (-f: a missing one is no error)."""
    code = 0
    with open_store(args) as store:
        for name in args.names:
            try:
                volstore.remove(store, name)
            except VolumeError as e:
                if args.force and not volstore.exists(store, name):
                    continue
                sys.stderr.write(f"Error: {e}\n")
                code = 1
                continue
            print(name)
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    if not args.force:
        sys.stdout.write("WARNING! This will remove all local volumes not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Total reclaimed space: 0B")
            return 0
    with open_store(args) as store:
        deleted = volstore.prune(store)
    if deleted:
        print("Deleted Volumes:")
        for name, _ in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(sum(size for _, size in deleted))}")
    return 0
