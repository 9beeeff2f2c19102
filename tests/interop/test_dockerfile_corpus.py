"""Dockerfiles of public projects (tests/interop/corpus/NAME: Dockerfile, reduced context, SOURCE
saying where each comes from and what was changed, `run`: a shell command whose output is compared,
or nothing for the image's default command),
built by rl and by podman build on the same base: the same config, files and output.

Left out of the comparison, each for a reason:
- timestamps and inode numbers: they record when and where, not what, was built;
- the image and layer digests: they follow from the timestamps;
- /run, the mount point buildah leaves in every image (BUILDAH_MOUNT_POINTS);
- the contents of /etc/hostname and /etc/hosts, which the runtime writes for each container
  (its id is in them; RUNTIME_FILES);
- the label io.buildah.version, which buildah adds to every image it builds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range
from tests.interop.conftest import Podman, build_both
from tests.interop.test_build_interop import BUILDAH_MOUNT_POINTS

CORPUS = Path(__file__).parent / "corpus"
# Cases where rl and podman build disagree, with what differs and whose bug it is taken to be.
DIFFERENCES = {
    "busybox-file-type-mix": (
        "`RUN ln file-1.txt hardlink-1` on a file of a lower layer: rl's image keeps the two names "
        "one inode (link count 2, as BuildKit's overlay diff gives), podman build's (buildah 1.28, "
        "vfs driver) has two separate files (link count 1 each); taken as buildah's layer diff "
        "losing the hard link, not yet confirmed against its layer tar"),
}
CASES = [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DIFFERENCES[name]))
         if name in DIFFERENCES else name
         for name in sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())]

# LISTING of test_build_interop, one line a path, with the link count (hard links) and a content
# hash of each file. A directory's link count is left out: overlay file systems report 1.
LISTING = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -print | sort | "
           "while read -r p; do l=$(stat -c '%n %F %u:%g %a' \"$p\"); "
           "if [ -L \"$p\" ]; then l=\"$l -> $(readlink \"$p\")\"; "
           "elif [ -f \"$p\" ]; then l=\"$l $(stat -c '%h %s' \"$p\") $(md5sum < \"$p\" | cut -d' ' -f1)\"; fi; "
           "echo \"$l\"; done")

RUNTIME_FILES = ("/etc/hostname", "/etc/hosts")

CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels")


def _config(rl: Rl, image: str) -> dict[str, object]:
    config = json.loads(rl("inspect", image).out)[0]["Config"]
    config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if k != "io.buildah.version"}
    # An empty list or map and an absent one mean the same to a runtime.
    return {k: config.get(k) or None for k in CONFIG_KEYS}


@pytest.mark.parametrize("case", CASES)
def test_corpus_dockerfile_builds_as_podman_build(case: str, rl: Rl, busybox: str, podman: Podman,
                                                  tmp_path: Path) -> None:
    if not has_subuid_range():
        pytest.skip("the images hold files of other ids, which needs a subordinate id range")
    ctx = tmp_path / "ctx"
    shutil.copytree(CORPUS / case, ctx, ignore=shutil.ignore_patterns("SOURCE", "run"))
    script = (CORPUS / case / "run").read_text().strip()
    command = ["sh", "-c", script] if script else []
    # Names some of the Dockerfiles give the base, all for the one local busybox.
    rl("tag", "busybox", "busybox:1.35-musl")
    theirs = build_both(rl, podman, ctx, tmp_path, bases=("busybox", "busybox:1.35-musl"), fmt="docker")

    assert _config(rl, "mine") == _config(rl, theirs)

    def listing(image: str) -> list[str]:
        lines = rl("run", "--rm", "-u", "0", image, "sh", "-c", LISTING).out.splitlines()
        return [ln.rsplit(" ", 1)[0] if ln.split(" ", 1)[0] in RUNTIME_FILES else ln
                for ln in lines if ln not in BUILDAH_MOUNT_POINTS]

    mine, podmans = listing("mine"), listing(theirs)
    assert mine == podmans, ("only rl: " + repr(sorted(set(mine) - set(podmans))) +
                             "\nonly podman: " + repr(sorted(set(podmans) - set(mine))))
    assert rl("run", "--rm", "mine", *command).out == rl("run", "--rm", theirs, *command).out
