"""Image names normalize the way Docker's do, so `busybox` means what a Docker user expects."""
from __future__ import annotations

import pytest

from rootless.errors import NameInvalid
from rootless.image.reference import looks_like_id, parse


@pytest.mark.parametrize("name, full, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost/app:v1", "localhost/app:v1", "localhost/app:v1"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("quay.io/podman/hello", "quay.io/podman/hello:latest", "quay.io/podman/hello:latest"),
    ("index.docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm", "debian:bookworm"),
    ("127.0.0.1:5000/x@sha256:" + "a" * 64, "127.0.0.1:5000/x@sha256:" + "a" * 64, "127.0.0.1:5000/x@sha256:" + "a" * 64),
])
def test_normalization(name: str, full: str, familiar: str) -> None:
    ref = parse(name)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize("bad", ["", "UPPER", "a//b", "name:bad tag", "x@sha256:123", "-lead", "a:b:c/d",
                                 "name:" + "t" * 129])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(NameInvalid):
        parse(bad)


def test_ids() -> None:
    assert looks_like_id("0123abcd")
    assert looks_like_id("sha256:" + "f" * 64)
    assert not looks_like_id("busybox")
