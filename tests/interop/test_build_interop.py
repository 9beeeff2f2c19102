"""rl build against podman build: the same Dockerfile on the same base image gives the same files
(names, types, owners, modes, sizes, link targets) and the same config.

One known difference is kept out of the Dockerfile: a WORKDIR that does not exist yet is made by
rl as BuildKit does (root's, at once), by buildah only when something is put in it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range
from tests.interop.conftest import Podman, build_both, listing, need, run

DOCKERFILE = """\
FROM busybox
ENV APP=/opt/app
COPY --chown=1000:100 --chmod=640 config.ini $APP/
WORKDIR $APP
COPY tree/ ./tree/
RUN mkdir -p /srv/data/old && echo x > /srv/data/old/f && echo y > /srv/keep \\
    && chown -R 1000:1000 /srv/data && chmod 2775 /srv/data && ln -s /srv/keep /srv/link \\
    && rm -rf /etc/network /bin/vi
RUN rm -rf /srv/data/old && mkdir /srv/data/new && echo z > /srv/data/new/g && rm /srv/keep
USER 1000:100
LABEL org.example.name="interop test"
EXPOSE 8080/udp
CMD ["sh", "-c", "ls"]
"""

def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "config.ini").write_text("[app]\nx=1\n")
    (ctx / "tree" / "a.txt").write_text("a\n")
    (ctx / "tree" / "sub" / "b.sh").write_text("echo b\n")
    (ctx / "tree" / "sub" / "b.sh").chmod(0o755)
    return ctx


def test_same_tree_and_config_as_podman_build(rl: Rl, busybox: str, podman: Podman, tmp_path: Path) -> None:
    if not has_subuid_range():
        pytest.skip("the Dockerfile chowns to other ids, which needs a subordinate id range")
    ctx = _context(tmp_path)
    theirs = build_both(rl, podman, ctx, tmp_path)

    mine_list, theirs_list = listing(rl, "mine"), listing(rl, theirs)
    assert mine_list == theirs_list, ("only rl: " + repr(sorted(set(mine_list) - set(theirs_list))) +
                                      "\nonly podman: " + repr(sorted(set(theirs_list) - set(mine_list))))

    def config(image: str) -> dict:  # type: ignore[type-arg]
        c = json.loads(rl("inspect", image).out)[0]["Config"]
        return {k: c.get(k) for k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts")}

    mine_config, theirs_config = config("mine"), config(theirs)
    # podman adds its own labels (io.buildah.version): compare ours within theirs.
    theirs_labels = theirs_config.pop("Labels") or {}
    mine_labels = mine_config.pop("Labels") or {}
    assert mine_labels.items() <= theirs_labels.items()
    assert mine_config == theirs_config


def test_oci_image_tool_validates_a_built_image(rl: Rl, busybox: str, tmp_path: Path) -> None:
    tool = need("oci-image-tool")
    ctx = _context(tmp_path)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY tree/ /tree/\nRUN rm -rf /tree/sub /etc/network\n"
                                    "ENV A=1\nCMD [\"sh\"]\n")
    rl("build", "-t", "validated", str(ctx))
    rl("save", "--format", "oci-dir", "-o", str(tmp_path / "dir"), "validated")
    assert "Validation succeeded" in run(tool, "validate", "--type", "image", tmp_path / "dir")
