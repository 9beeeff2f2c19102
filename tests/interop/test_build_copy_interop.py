"""COPY into directories the image has and ADD of archives with owners, rl build against podman
build of the same Dockerfile: the same files, owners and modes.

`ADD --chown` of an archive is left out: BuildKit (since moby/buildkit's go-archive unpack)
gives the unpacked files the --chown owner, as rl does, buildah keeps the archive's."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range
from tests.e2e.helpers import LONG, make_archive
from tests.interop.conftest import Podman, build_both, listing

DOCKERFILE = """\
FROM busybox AS builder
RUN mkdir /src && echo from-builder > /src/file && chown 1000:1000 /src/file && chmod 640 /src/file

FROM busybox
WORKDIR /app
COPY hello.py /app
RUN echo 'u:x:1001:1001::/app:/bin/sh' >> /etc/passwd && mkdir -p /app/ll-tests /made/by/run \\
    && ln -s /made/by/run /linkdir
COPY --chown=u:root --from=builder /src/file /app
COPY --from=builder /src/file /made/by/run
COPY hello.py /linkdir
COPY --chown=1001 hello.py /etc
ADD rootfs.tar.gz /
ADD site.tar.gz /srv/site/
"""


def test_copy_and_add_own_files_as_podman_build(rl: Rl, busybox: str, podman: Podman, tmp_path: Path) -> None:
    if not has_subuid_range():
        pytest.skip("the files belong to other ids, which needs a subordinate id range")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.py").write_text("print('hello')\n")
    make_archive(ctx / "rootfs.tar.gz", [
        ("./", tarfile.DIRTYPE, 0o755, 0, 0, ""),
        ("home/user", tarfile.DIRTYPE, 0o750, 1000, 1000, ""),
        ("home/user/.profile", tarfile.REGTYPE, 0o644, 1000, 1000, "x=1\n"),
        ("usr/bin/sg-tool", tarfile.REGTYPE, 0o2755, 0, 50, "#!/bin/sh\n"),
        ("root/.profile", tarfile.REGTYPE, 0o600, 0, 0, "y=2\n"),
        ("tmp/scratch", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ])
    make_archive(ctx / "site.tar.gz", [
        ("index.html", tarfile.REGTYPE, 0o640, 33, 33, "<p>hi</p>\n"),
        ("static", tarfile.DIRTYPE, 0o755, 33, 33, ""),
        (LONG, tarfile.REGTYPE, 0o600, 33, 33, "long\n"),
    ])
    theirs = build_both(rl, podman, ctx, tmp_path)

    mine, podmans = listing(rl, "mine"), listing(rl, theirs)
    assert mine == podmans, ("only rl: " + repr(sorted(set(mine) - set(podmans))) +
                             "\nonly podman: " + repr(sorted(set(podmans) - set(mine))))
    for line in ("/app/file regular file 1001:0 640 ", "/srv/site/index.html regular file 33:33 640 ",
                 "/tmp directory 0:0 1777"):
        assert any(ln.startswith(line) for ln in mine), line
