"""COPY and ADD as Docker places and owns what they copy: a single file into a directory the image
already has (whichever layer made it), the owners an archive of ADD carries."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import DRIVERS, Rl, has_subuid_range
from tests.e2e.helpers import LONG, make_archive

INTO_EXISTING = """\
FROM busybox AS builder
RUN mkdir /src && echo from-builder > /src/file

FROM busybox
WORKDIR /app
COPY hello.py /app
RUN echo 'u:x:1001:1001::/app:/bin/sh' >> /etc/passwd && mkdir -p /app/ll-tests /made/by/run && pwd > /made/by/run/pwd
COPY --chown=u:root --from=builder /src/file /app
COPY hello.py /made/by/run
COPY tree/ /copied/
COPY hello.py /copied
COPY --chown=1001 hello.py /etc
COPY hello.py /app/renamed.py
RUN ln -s /made/by/run /linkdir
COPY tree/t.txt /linkdir
COPY hello.py /linkdir/sub/
WORKDIR /linkdir/wd
RUN pwd -P > here
"""


def _layer_members(rl: Rl, image: str, tmp_path: Path) -> dict[str, tarfile.TarInfo]:
    """The entries of every layer of the image, the topmost one of each name winning."""
    rl("save", "-o", str(tmp_path / "saved.tar"), image)
    out: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(tmp_path / "saved.tar") as saved:
        manifest = json.load(saved.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        for name in manifest["Layers"]:
            with tarfile.open(fileobj=saved.extractfile(name)) as layer:
                out.update({m.name.rstrip("/"): m for m in layer})
    return out


def _build_into_existing(rl: Rl, tmp_path: Path, *driver: str) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t.txt").write_text("t\n")
    (tmp_path / "hello.py").write_text("print('hello')\n")
    (tmp_path / "Dockerfile").write_text(INTO_EXISTING)
    rl(*driver, "build", "-t", "into", str(tmp_path))
    r = rl(*driver, "run", "--rm", "into", "sh", "-c",
           "cat /made/by/run/pwd; stat -c '%n %F' /app /app/hello.py /app/ll-tests /app/file /made/by/run/hello.py "
           "/copied/t.txt /copied/hello.py /etc/hello.py /etc /app/renamed.py /linkdir /made/by/run/t.txt "
           "/made/by/run/sub/hello.py; cat /app/file /made/by/run/wd/here")
    assert r.out.splitlines() == [
        "/app",
        "/app directory", "/app/hello.py regular file", "/app/ll-tests directory", "/app/file regular file",
        "/made/by/run/hello.py regular file", "/copied/t.txt regular file", "/copied/hello.py regular file",
        "/etc/hello.py regular file", "/etc directory", "/app/renamed.py regular file",
        "/linkdir symbolic link", "/made/by/run/t.txt regular file", "/made/by/run/sub/hello.py regular file",
        "from-builder", "/made/by/run/wd",
    ]
    members = _layer_members(rl, "into", tmp_path)
    owners = {n: (members[n].uid, members[n].gid) for n in ("app/file", "etc/hello.py", "etc", "app/hello.py")}
    assert owners == {"app/file": (1001, 0), "etc/hello.py": (1001, 1001), "etc": (0, 0), "app/hello.py": (0, 0)}


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_file_copied_to_an_existing_directory_goes_into_it(rl: Rl, busybox: str, tmp_path: Path,
                                                             driver: str) -> None:
    _build_into_existing(rl, tmp_path, "--storage-driver", driver)


@pytest.mark.single_id
def test_a_file_copied_to_an_existing_directory_in_single_id_mode(rl: Rl, busybox: str, tmp_path: Path) -> None:
    _build_into_existing(rl, tmp_path)


@pytest.mark.parametrize("step, message", [
    ("WORKDIR /etc/passwd/sub", "WORKDIR /etc/passwd/sub: /etc/passwd is not a directory in the image"),
    ("COPY f /etc/passwd/", "COPY: cannot copy to /etc/passwd: /etc/passwd is not a directory in the image"),
])
def test_a_file_in_the_way_of_a_destination_is_said_in_one_line(rl: Rl, busybox: str, tmp_path: Path, step: str,
                                                                message: str) -> None:
    (tmp_path / "f").write_text("f\n")
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\n{step}\n")
    r = rl("build", str(tmp_path), check=False)
    assert (r.code, r.err) == (1, f"Error: Dockerfile:2: {message}\n")


def test_a_file_copied_over_an_existing_file_replaces_it(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("replaced\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo old > /f && ln -s /f /link\nCOPY f /f\nCOPY f /link\n")
    rl("build", "-t", "over", str(tmp_path))
    r = rl("run", "--rm", "over", "sh", "-c", "cat /f; stat -c %F /link")
    assert r.out == "replaced\nregular file\n", "a symlink to a file is replaced, not written through"


CHOWN_EXPANDED = """\
FROM busybox
ARG UID=1000
ARG GID=$UID
ENV OWNER=app
RUN echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group
COPY --chown=$UID:${GID} f /by-arg
ADD --chown=$OWNER f /by-env
"""


def test_chown_expands_args_and_env(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("f\n")
    (tmp_path / "Dockerfile").write_text(CHOWN_EXPANDED)
    rl("build", "--build-arg", "UID=7", "-t", "expanded", str(tmp_path))
    members = _layer_members(rl, "expanded", tmp_path)
    assert {n: (members[n].uid, members[n].gid) for n in ("by-arg", "by-env")} == {
        "by-arg": (7, 7), "by-env": (1234, 1234)}


ADD_OWNERS = """\
FROM busybox
ADD rootfs.tar.gz /
ADD site.tar.gz /srv/site/
ADD --chown=7:8 site.tar.gz /chowned/
"""


@pytest.mark.parametrize("driver", DRIVERS)
def test_add_keeps_the_owners_of_a_local_archive(rl: Rl, busybox: str, tmp_path: Path, driver: str) -> None:
    make_archive(tmp_path / "rootfs.tar.gz", [
        ("./", tarfile.DIRTYPE, 0o755, 0, 0, ""),
        ("home/user", tarfile.DIRTYPE, 0o750, 1000, 1000, ""),
        ("home/user/.profile", tarfile.REGTYPE, 0o644, 1000, 1000, "x=1\n"),
        ("usr/bin/sg-tool", tarfile.REGTYPE, 0o2755, 0, 50, "#!/bin/sh\n"),
        ("root/.profile", tarfile.REGTYPE, 0o600, 0, 0, "y=2\n"),  # /root and /tmp not listed: the image's stay
        ("tmp/scratch", tarfile.REGTYPE, 0o644, 0, 0, ""),
    ])
    make_archive(tmp_path / "site.tar.gz", [
        ("index.html", tarfile.REGTYPE, 0o640, 33, 33, "<p>hi</p>\n"),
        ("static", tarfile.DIRTYPE, 0o755, 33, 33, ""),
        (LONG, tarfile.REGTYPE, 0o600, 33, 33, "long\n"),  # named in a pax record
    ])
    (tmp_path / "Dockerfile").write_text(ADD_OWNERS)
    rl("--storage-driver", driver, "build", "-t", "added", str(tmp_path))
    members = _layer_members(rl, "added", tmp_path)
    got = {n: (members[n].uid, members[n].gid, members[n].mode & 0o7777) for n in (
        "home/user", "home/user/.profile", "usr/bin/sg-tool", "srv/site/index.html", "srv/site/static",
        "chowned/index.html", f"srv/site/{LONG}", f"chowned/{LONG}")}
    assert got == {
        "home/user": (1000, 1000, 0o750), "home/user/.profile": (1000, 1000, 0o644),
        "usr/bin/sg-tool": (0, 50, 0o2755), "srv/site/index.html": (33, 33, 0o640),
        "srv/site/static": (33, 33, 0o755), "chowned/index.html": (7, 8, 0o640),
        f"srv/site/{LONG}": (33, 33, 0o600), f"chowned/{LONG}": (7, 8, 0o600),
    }
    assert LONG not in members and "" not in members, "a long name lands under the destination too, ./ nowhere"
    r = rl("--storage-driver", driver, "run", "--rm", "added", "stat", "-c", "%n %a", "/root", "/tmp")
    assert r.out == "/root 700\n/tmp 1777\n", "directories the archive does not list stay as the image has them"
    if has_subuid_range():  # in single-id mode a container cannot show other ids
        r = rl("--storage-driver", driver, "run", "--rm", "added", "stat", "-c", "%n %u:%g %a",
               "/home/user", "/home/user/.profile", "/usr/bin/sg-tool", "/srv/site/index.html", "/chowned/index.html")
        assert r.out.splitlines() == [
            "/home/user 1000:1000 750", "/home/user/.profile 1000:1000 644", "/usr/bin/sg-tool 0:50 2755",
            "/srv/site/index.html 33:33 640", "/chowned/index.html 7:8 640"]


def test_copy_and_workdir_through_the_merged_usr_symlinks(rl: Rl, debian_tar: Path, tmp_path: Path) -> None:
    """Debian's /bin and /lib are symlinks into /usr: the most common place a destination has one."""
    rl("import", str(debian_tar), "debian:bookworm")
    (tmp_path / "tool").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "tool").chmod(0o755)
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm\nCOPY tool /bin/\nCOPY tool /sbin\nWORKDIR /lib/app\nRUN pwd -P > where\n")
    rl("build", "-t", "usr", str(tmp_path))
    r = rl("run", "--rm", "usr", "sh", "-c", "tool; stat -c '%n %F' /bin /usr/bin/tool /usr/sbin/tool; cat where")
    assert r.out.splitlines() == ["tool", "/bin symbolic link", "/usr/bin/tool regular file",
                                  "/usr/sbin/tool regular file", "/usr/lib/app"]
