"""Image commands: import, images, tag, rmi, inspect, history."""
from __future__ import annotations

import argparse
import sys

from rootless.cli.common import open_store
from rootless.cli.output import docker_rfc3339, docker_time, human_age, human_size, json_doc, listing
from rootless.errors import (
    ContainerNotFound,
    ImageInUse,
    ImageNotFound,
    RlError,
    UsageError,
)
from rootless.image.reference import Reference, parse
from rootless.store.records import ImageRecord
from rootless.store.store import Store, _parse_time

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any


def cmd_import(args: argparse.Namespace) -> int:
    from rootless.image.importer import import_rootfs

    ref = parse(args.reference) if args.reference else None
    with open_store(args) as store:
        image = import_rootfs(store, args.source, ref, args.change, args.message)
    print(image.id)
    return 0


def _rows(store: Store, name: str | None, intermediate: bool) -> list[tuple[ImageRecord, Reference | None]]:
    want = None
    if name:
        want = parse(name, default_tag=False)
    out: list[tuple[ImageRecord, Reference | None]] = []
    for img in store.images(intermediate):
        refs = [parse(t) for t in img.tags] or [None]
        for r in refs:
            if want is not None:
                if r is None or r.repository != want.repository or (want.tag and r.tag != want.tag):
                    continue
            out.append((img, r))
    return out


def cmd_images(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        rows = _rows(store, args.name, args.all)
    if args.quiet:
        seen: list[str] = []
        for img, _ in rows:
            i = img.id if args.no_trunc else img.short_id
            if i not in seen:
                seen.append(i)
        sys.stdout.write("".join(i + "\n" for i in seen))
        return 0
    listed = [{
        "Containers": "N/A",
        "CreatedAt": docker_time(img.created),
        "CreatedSince": human_age(img.created),
        "Digest": img.manifest_digest,
        "ID": img.id if args.no_trunc else img.short_id,
        "Repository": r.familiar_repository if r else "<none>",
        "Tag": r.tag if r else "<none>",
        "Size": human_size(img.size),
        "VirtualSize": human_size(img.size),
    } for img, r in rows]
    columns = ["Repository", "Tag"] + (["Digest"] if args.digests else []) + ["ID", "CreatedSince", "Size"]
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    listing(args.format, listed, headers, [[row[c] for c in columns] for row in listed])
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    target = parse(args.target)
    if target.digest:
        raise UsageError("a tag cannot contain a digest")
    with open_store(args) as store:
        store.tag(store.resolve(args.source), target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    """Exit codes as podman's: 1 when an image was not found, 2 when one is in use."""
    from rootless.runtime.supervisor import reap

    code = 0
    with open_store(args) as store:
        reap(store)  # a container left by a killed rl does not keep an image
        for name in args.images:
            try:
                res = store.remove_image(name, force=args.force)
            except (ImageNotFound, ImageInUse) as e:
                sys.stderr.write(f"Error: {e}\n")
                code = max(code, 2 if isinstance(e, ImageInUse) else 1)
                continue
            for t in res.untagged:
                print(f"Untagged: {parse(t).familiar()}")
            for d in res.deleted:
                print(f"Deleted: {d}")
    return code


def _iso(ts: float) -> str:
    from rootless.image.oci import rfc3339

    return rfc3339(ts) if ts > 0 else ""


def inspect_image(store: Store, img: ImageRecord) -> dict[str, Any]:
    cfg = store.config(img)
    history = cfg.get("history") or []
    tags = [parse(t) for t in img.tags]
    return {
        "Id": img.id,
        "Digest": img.manifest_digest,
        "RepoTags": [t.familiar() for t in tags],
        "RepoDigests": sorted({f"{t.familiar_repository}@{img.manifest_digest}" for t in tags}),
        "Parent": "",
        "Comment": (history[-1].get("comment", "") if history else ""),
        "Created": cfg.get("created", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Size": img.size,
        "VirtualSize": img.size,
        "RootFS": {"Type": "layers", "Layers": list(cfg["rootfs"]["diff_ids"])},
        "Metadata": {"LastTagTime": _iso(img.added)},
        "ManifestMediaType": store.manifest(img).media_type,
        "History": history,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    out: list[dict[str, Any]] = []
    missing: list[str] = []
    with open_store(args) as store:
        for name in args.objects:
            try:
                if args.type != "container":
                    try:
                        out.append(inspect_image(store, store.resolve(name)))
                        continue
                    except ImageNotFound:
                        if args.type == "image":
                            raise
                from rootless.cli.lifecycle import inspect_container

                out.append(inspect_container(store, store.container(name)))
            except ContainerNotFound:
                missing.append(f"no such object: {name}")
            except RlError as e:
                missing.append(str(e))
    if args.format not in (None, "json"):
        from rootless.cli.template import render

        for o in out:
            print(render(args.format, o))
    else:
        json_doc(out)
    for m in missing:
        sys.stderr.write(f"Error: {m}\n")
    return 1 if missing else 0


def cmd_history(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        img = store.resolve(args.image)
        cfg = store.config(img)
        sizes = store.layer_sizes()
    layer_sizes = [sizes.get(c, 0) for c in img.chain_ids]
    entries = []
    li = 0
    for h in cfg.get("history") or []:
        size = 0
        if not h.get("empty_layer"):
            size = layer_sizes[li] if li < len(layer_sizes) else 0
            li += 1
        entries.append((h, size))
    entries.reverse()
    ids = [img.id if args.no_trunc else img.short_id] + ["<missing>"] * (len(entries) - 1)
    if args.quiet:
        print("\n".join(ids))
        return 0
    rows = []
    for i, (h, s) in zip(ids, entries):
        by = h.get("created_by", "")
        if not args.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        created = _parse_time(h.get("created"))
        at = docker_rfc3339(created)
        rows.append({"ID": i, "CreatedAt": at, "CreatedSince": human_age(created) if args.human else at,
                     "CreatedBy": by, "Size": human_size(s) if args.human else str(s),
                     "Comment": h.get("comment", "")})
    listing(args.format, rows, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            [[row[k] for k in ("ID", "CreatedSince", "CreatedBy", "Size", "Comment")] for row in rows])
    return 0
