"""`rl info`, `rl system df`, `rl system prune`, `rl system check`, `rl version`."""
from __future__ import annotations

import argparse
import os
import platform
import sys

from rootless import __version__
from rootless.cli.common import open_store
from rootless.cli.output import human_size, json_doc, json_lines, table
from rootless.errors import UsageError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any

    from rootless.store.check import Problem
    from rootless.store.store import Store


def cmd_version(args: argparse.Namespace) -> int:
    print(f"rl version {__version__}")
    print(f"Python {platform.python_version()}, kernel {platform.release()}")
    return 0


def gather_info(args: argparse.Namespace) -> dict[str, Any]:
    from rootless.host import probe
    from rootless.runtime.storage import choose_driver

    with open_store(args) as store:
        mapping = store.mapping
        xattrs = probe.user_xattrs(store.root)
        overlay = probe.kernel_overlay(mapping, store.scratch.dir)
        fuse = probe.fuse()
        images = len(store.images())
        containers = len(store.containers())
        root = str(store.root)
        choice = choose_driver(store, args.storage_driver)
    driver, why = choice.name, choice.reason
    tun = probe.tun()
    return {
        "version": __version__,
        "store": {"root": root, "runtime": _runtime_state(), "images": images, "containers": containers},
        "idMapping": {"mode": mapping.mode, "description": mapping.describe(), "reason": mapping.reason,
                      "uidMap": [[r.inside, r.outside, r.count] for r in mapping.uids],
                      "gidMap": [[r.inside, r.outside, r.count] for r in mapping.gids]},
        "storage": {"driver": driver, "reason": why,
                    "kernelOverlay": {"usable": overlay.ok, "detail": overlay.detail},
                    "fuse": {"usable": fuse.ok, "detail": fuse.detail},
                    "userXattrs": {"usable": xattrs.ok, "detail": xattrs.detail}},
        "network": {"helpers": probe.network_helpers(), "tun": {"usable": tun.ok, "detail": tun.detail}},
        "cgroups": {"usable": (cg := probe.cgroups()).ok, "detail": cg.detail},
        "host": {"kernel": platform.release(), "arch": platform.machine(), "uid": os.getuid()},
    }


def _runtime_state() -> str:
    """The runtime directory, or why rl does without one."""
    from rootless.errors import RuntimeDirError
    from rootless.paths import open_runtime_dir, runtime_dir

    try:
        os.close(open_runtime_dir())
    except RuntimeDirError as e:
        return f"none, {e}"
    return str(runtime_dir())


def cmd_info(args: argparse.Namespace) -> int:
    info = gather_info(args)
    if args.format == "json":
        json_doc(info)
        return 0
    if args.format is not None:
        raise UsageError(f"--format {args.format!r} is not supported: use 'json'")
    s, m, st, n = info["store"], info["idMapping"], info["storage"], info["network"]
    yes = {True: "yes", False: "no"}
    lines = [
        f"rl version:       {info['version']}",
        f"store:            {s['root']} ({s['images']} images, {s['containers']} containers)",
        f"runtime state:    {s['runtime']}",
        f"id mapping:       {m['description']}",
        f"                  {m['reason']}",
        f"storage driver:   {st['driver']} ({st['reason']})",
        f"kernel overlay:   {yes[st['kernelOverlay']['usable']]}: {st['kernelOverlay']['detail']}",
        f"FUSE:             {yes[st['fuse']['usable']]}: {st['fuse']['detail']}",
        f"user xattrs:      {yes[st['userXattrs']['usable']]}: {st['userXattrs']['detail']}",
        "network helpers:  " + (", ".join(f"{k} ({v})" for k, v in n["helpers"].items() if v) or "none found"),
        f"/dev/net/tun:     {yes[n['tun']['usable']]}: {n['tun']['detail']}",
        f"cgroups:          {yes[info['cgroups']['usable']]}: {info['cgroups']['detail']}",
        f"kernel:           {info['host']['kernel']} ({info['host']['arch']})",
    ]
    if m["mode"] == "single":
        lines.append("warning:          single-id mode: files of other owners are emulated with xattrs, "
                     "setuid programs and chown to other ids cannot work for real")
    print("\n".join(lines))
    return 0


def cmd_df(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        images = store.images()
        used_images = {c.image_id for c in store.containers()}
        layer_users: dict[str, set[str]] = {}
        for img in images:
            for c in img.chain_ids:
                layer_users.setdefault(c, set()).add(img.id)
        sizes = store.layer_sizes()
        total = sum(sizes.get(c, 0) for c in layer_users)
        reclaim = sum(sizes.get(c, 0) for c, users in layer_users.items() if not users & used_images)
        n_containers = len(store.containers())
        from rootless.store import volumes

        vols = volumes.list_volumes(store)
        vol_users = volumes.users(store)
        vol_sizes = store.in_userns(volumes.tree_sizes, [str(volumes.data_path(store, v.name)) for v in vols]) \
            if vols else []
    vol_total = sum(vol_sizes)
    vol_free = sum(sz for v, sz in zip(vols, vol_sizes) if v.name not in vol_users)
    pct = f" ({round(100 * reclaim / total)}%)" if total else ""
    rows = [
        {"Type": "Images", "TotalCount": len(images), "Active": len(used_images), "Size": total,
         "Reclaimable": reclaim},
        {"Type": "Containers", "TotalCount": n_containers, "Active": 0, "Size": 0, "Reclaimable": 0},
        {"Type": "Local Volumes", "TotalCount": len(vols), "Active": len([v for v in vols if v.name in vol_users]),
         "Size": vol_total, "Reclaimable": vol_free},
    ]
    if args.format == "json":
        json_lines([{**r, "Size": human_size(r["Size"]), "Reclaimable": human_size(r["Reclaimable"])} for r in rows])
        return 0
    if args.format is not None:
        raise UsageError(f"--format {args.format!r} is not supported: use 'json'")
    table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
          [[r["Type"], str(r["TotalCount"]), str(r["Active"]), human_size(r["Size"]),
            human_size(r["Reclaimable"]) + (pct if r["Type"] == "Images" else "")] for r in rows])
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if not args.force:
        what = "all images without at least one container" if args.all else "all dangling images"
        sys.stdout.write(f"WARNING! This will remove:\n  - {what}\n  - all layers and blobs no image uses\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("Total reclaimed space: 0B")
            return 0
    from rootless.runtime.supervisor import reap

    with open_store(args) as store:
        reap(store)  # a container left by a killed rl does not keep an image
        deleted = store.prune_images(args.all)
        stats = store.gc()
    if deleted:
        print("Deleted Images:")
        for d in deleted:
            print(f"deleted: {d}")
        print()
    print(f"Total reclaimed space: {human_size(stats.bytes)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """One line per problem; exit 1 while problems remain (as `podman system check`)."""
    from rootless.store import check

    if args.format not in (None, "json"):
        raise UsageError(f"--format {args.format!r} is not supported: use 'json'")
    if args.force and not args.repair:
        raise UsageError("--force goes with --repair")
    with open_store(args) as store:
        problems = _container_problems(store) + check.check(store, quick=args.quick)
        left = problems
        if args.repair and problems:
            left = _repair(store, problems, args.force)
    repaired = [p for p in problems if p not in left]
    if args.format == "json":
        json_doc({"problems": [{"kind": p.kind, "subject": p.subject, "detail": p.detail,
                                "repaired": p not in left} for p in problems]})
    else:
        for p in problems:
            print(p.line() + (" (repaired)" if p in repaired else ""))
        if left and args.repair:
            sys.stderr.write(f"{len(left)} problem{'s' if len(left) > 1 else ''} left"
                             + (": --force removes damaged images with their containers\n"
                                if any(p.needs_force for p in left) else "\n"))
    return 1 if left else 0


def _container_problems(store: Store) -> list[Problem]:
    """Records whose rl or supervisor was killed: still said to run, or a --rm container or build
    step nobody is left to remove."""
    from rootless.runtime.spec import ContainerSpec
    from rootless.runtime.supervisor import owner_gone
    from rootless.store.check import REAP, Problem

    out: list[Problem] = []
    for rec in store.containers():
        if not owner_gone(rec):
            continue
        if ContainerSpec.from_json(rec.spec).goes_with_its_rl:
            detail = f"({rec.name}) its rl was killed before removing it"
        else:
            detail = f"({rec.name}) its supervisor was killed: said to be {rec.status}"
        out.append(Problem("container", rec.id, detail, REAP))
    return out


def _repair(store: Store, problems: list[Problem], force: bool) -> list[Problem]:
    from rootless.errors import ContainerNotFound
    from rootless.runtime.launch import remove_container
    from rootless.runtime.supervisor import kill, reap
    from rootless.store import check

    def remove(cid: str) -> None:
        try:
            rec = store.container(cid)
        except ContainerNotFound:
            return
        if rec.status == "running":
            kill(store, rec)
        remove_container(store, rec, anonymous_volumes=True)

    return check.repair(store, problems, force, lambda: reap(store), remove)
