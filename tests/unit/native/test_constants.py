"""The kernel's and libseccomp's constants come from their headers (through cffi), once: no module
types one by hand, and the values are the ones the rest of Python knows."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import native

REPO = Path(__file__).resolve().parents[3]
# Prefixes of the constants native reads from the headers.
FROM_HEADERS = ("CLONE_", "MS_", "MNT_", "RENAME_", "AT_", "RESOLVE_", "CLOSE_RANGE_", "OPEN_TREE_",
                "MOVE_MOUNT_", "MOUNT_ATTR_", "PR_", "FUSE_", "SCMP_", "FICLONE", "SIOC", "IFF_")


def test_no_module_types_a_header_constant_by_hand() -> None:
    typed = []
    for package in ("native", "rootless", "fuse_overlay"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                typed_number = isinstance(node, ast.Assign) and any(
                    isinstance(n, ast.Constant) and type(n.value) is int for n in ast.walk(node.value))
                if typed_number:
                    for target in node.targets:
                        name = target.id if isinstance(target, ast.Name) else ""
                        if name.lstrip("_").upper().startswith(FROM_HEADERS) and name.isupper():
                            typed.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert not typed


def test_the_values_are_the_kernel_s() -> None:
    assert native.OPEN_TREE_CLOEXEC == os.O_CLOEXEC
    assert native.AT_FDCWD == -100
    assert (native.MS_RDONLY, native.MS_NOSUID, native.MS_NODEV, native.MS_NOEXEC) == (
        os.ST_RDONLY, os.ST_NOSUID, os.ST_NODEV, os.ST_NOEXEC)  # the kernel's statfs flags mirror them
    assert native.RESOLVE_CONTAINED == native.RESOLVE_BENEATH | native.RESOLVE_NO_SYMLINKS | native.RESOLVE_NO_MAGICLINKS
    assert native.FUSE_C_FH == 1 << 62 and native.FUSE_CACHE_DIR != native.FUSE_NO_CAPS
