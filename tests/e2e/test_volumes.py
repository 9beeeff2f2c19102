"""Volumes as a user meets them: `rl volume ...` and `-v NAME:/path` / `--mount type=volume` on every
storage driver: made on first use, filled from the image once, kept across `rl rm`."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range



def _names(rl: Rl) -> list[str]:
    return rl("volume", "ls", "-q").out.split()


def test_create_ls_inspect_rm(rl: Rl) -> None:
    assert rl("volume", "create", "--label", "a=b", "--label", "flag", "v1").out == "v1\n"
    assert rl("volume", "create", "v1").out == "v1\n"  # an existing name is no error, as in docker
    anon = rl("volume", "create").out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert _names(rl) == sorted([anon, "v1"])
    lines = rl("volume", "ls").out.splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split() for line in lines[1:]) == sorted([["local", "v1"], ["local", anon]])
    rows = [json.loads(line) for line in rl("volume", "ls", "--format", "json").out.splitlines()]
    v1 = next(r for r in rows if r["Name"] == "v1")
    assert v1["Driver"] == "local" and v1["Labels"] == "a=b,flag="
    assert sorted(rl("volume", "ls", "--format", "{{.Name}}").out.split()) == sorted([anon, "v1"])
    [doc] = json.loads(rl("volume", "inspect", "v1").out)
    mountpoint = rl.root / "volumes" / "v1" / "_data"
    assert doc["Name"] == "v1" and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Mountpoint"] == str(mountpoint) and mountpoint.is_dir()
    assert doc["Labels"] == {"a": "b", "flag": ""}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["CreatedAt"])
    r = rl("volume", "inspect", "v1", "nosuch", check=False)
    assert r.code == 1 and [d["Name"] for d in json.loads(r.out)] == ["v1"]
    assert r.err == "Error: no such volume: nosuch\n"
    assert rl("volume", "rm", "v1", anon).out.split() == ["v1", anon]
    assert _names(rl) == [] and os.listdir(rl.root / "volumes") == []
    r = rl("volume", "rm", "v1", check=False)
    assert r.code == 1 and r.err == "Error: no such volume: v1\n"
    assert rl("volume", "rm", "-f", "v1").code == 0


@pytest.mark.parametrize("args", [
    ("volume", "create", "bad/name"),
    ("volume", "create", ".hidden"),
    ("volume", "create", "-x"),
    ("volume", "create", "--label", "=v", "ok"),
    ("run", "--rm", "-v", "bad name:/x", "busybox", "true"),
    ("run", "--rm", "--mount", "type=volume,source=_x,target=/x", "busybox", "true"),
    ("run", "--rm", "-v", "v:/x:nocopy,nocopy", "busybox", "true"),
])
def test_bad_names_and_options_are_one_line_errors(rl: Rl, busybox: str, args: tuple[str, ...]) -> None:
    r = rl(*args, check=False)
    assert r.code == 125 and r.err.startswith("Error: ") and len(r.err.splitlines()) == 1, r.err
    assert _names(rl) == []


def test_created_on_first_use_and_data_survives_rm(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    run("--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert _names(rl) == ["data"]
    rl("rm", "writer")
    assert run("--rm", "--mount", "type=volume,source=data,target=/m", "busybox", "cat", "/m/f").out == "kept\n"
    # Root in the container is the invoking user on the host.
    st = (rl.root / "volumes" / "data" / "_data" / "f").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_first_use_copies_the_image_s_content_once(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    out = run("--rm", "-v", "etc:/etc", "busybox", "sh", "-c", "grep ^root: /etc/passwd; rm /etc/passwd").out
    assert out.startswith("root:x:0:0:")
    # Populated once: what the first container removed stays removed.
    r = run("--rm", "-v", "etc:/etc", "busybox", "ls", "/etc/passwd", check=False)
    assert (r.code, r.err) == (1, "ls: /etc/passwd: No such file or directory\n")
    assert run("--rm", "-v", "etc:/etc", "busybox", "cat", "/etc/group").out.startswith("root:")


def test_copy_keeps_owners(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    if not has_subuid_range():
        pytest.skip("other owners need a subordinate range")
    out = run("--rm", "-v", "etc:/etc", "-v", "home:/home", "busybox",
              "stat", "-c", "%n %u:%g %a", "/etc/shadow", "/home/user").out
    assert out.splitlines() == ["/etc/shadow 0:42 640", "/home/user 1000:1000 755"]
    # The volume's own directory takes the image directory's owner and mode.
    assert run("--rm", "--mount", "type=volume,src=home,dst=/home", "-u", "user", "busybox",
               "sh", "-c", "touch /home/user/mine && stat -c %u /home/user/mine").out == "1000\n"


def test_anonymous_volume_goes_with_its_rm_container(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    assert run("--rm", "-v", "/etc", "busybox", "grep", "-c", "^root:", "/etc/passwd").out == "1\n"
    assert _names(rl) == []
    rl("volume", "create", "named")
    run("--rm", "-v", "named:/data", "busybox", "true")
    assert _names(rl) == ["named"]
    rl("volume", "rm", "named")
    run("--name", "withanon", "-v", "/data", "busybox", "true")
    assert len(_names(rl)) == 1
    rl("rm", "-v", "withanon")
    assert _names(rl) == []


def test_anonymous_volume_is_copied_and_pruned(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    assert run("--name", "keeper", "-v", "/etc", "busybox", "grep", "-c", "^root:", "/etc/passwd").out == "1\n"
    rl("rm", "keeper")
    [anon] = _names(rl)
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    out = rl("volume", "prune", "-f").out
    assert out.startswith(f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: ") and not out.endswith(" 0B\n")
    assert _names(rl) == []


def test_nocopy(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    # The image's /etc is not copied in: ls runs (rl's own error would be 125) and finds no passwd.
    for args in (("-v", "a:/etc:nocopy"), ("--mount", "type=volume,source=b,target=/etc,volume-nocopy")):
        r = run("--rm", *args, "busybox", "ls", "/etc/passwd", check=False)
        assert (r.code, r.err) == (1, "ls: /etc/passwd: No such file or directory\n"), r


def test_read_only_volume(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    rl("volume", "create", "ro")
    r = run("--rm", "-v", "ro:/data:ro", "busybox", "touch", "/data/x", check=False)
    assert (r.code, r.err) == (1, "touch: /data/x: Read-only file system\n")
    r = run("--rm", "--mount", "type=volume,source=ro,target=/data,readonly", "busybox", "touch", "/data/x",
            check=False)
    assert (r.code, r.err) == (1, "touch: /data/x: Read-only file system\n")
    assert os.listdir(rl.root / "volumes" / "ro" / "_data") == []


def test_rm_and_prune_spare_a_volume_in_use(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "user1", "-v", "inuse:/data", "busybox", "true")
    rl("volume", "create", "idle")
    r = rl("volume", "rm", "inuse", check=False)
    assert r.code == 1 and len(r.err.splitlines()) == 1 and "in use by container user1" in r.err
    r = rl("volume", "rm", "-f", "inuse", check=False)
    assert r.code == 1 and "in use" in r.err
    assert rl("volume", "prune", "-f").out.startswith("Deleted Volumes:\nidle\n\n")
    assert _names(rl) == ["inuse"]
    rl("rm", "user1")
    assert rl("volume", "rm", "inuse").out == "inuse\n"


def test_prune_asks_first(rl: Rl) -> None:
    rl("volume", "create", "v")
    r = rl("volume", "prune", input=b"n\n")
    assert "Are you sure you want to continue? [y/N]" in r.out and _names(rl) == ["v"]
    r = rl("volume", "prune", input=b"y\n")
    assert "Deleted Volumes:\nv\n" in r.out and _names(rl) == []


def test_a_crash_s_leftovers_are_replaced_and_pruned(rl: Rl) -> None:
    # A directory without a row is what a crash between rename and commit leaves: not a volume.
    (rl.root / "volumes" / "ghost" / "_data").mkdir(parents=True)
    (rl.root / "volumes" / "ghost" / "_data" / "stale").write_text("x")
    (rl.root / "volumes" / "orphan" / "_data").mkdir(parents=True)
    assert _names(rl) == []
    rl("volume", "create", "ghost")
    assert os.listdir(rl.root / "volumes" / "ghost" / "_data") == []
    assert rl("volume", "prune", "-f").out.startswith("Deleted Volumes:\nghost\n\n")
    assert os.listdir(rl.root / "volumes") == []
    assert not (rl.root / "tmp").exists() or os.listdir(rl.root / "tmp") == []


def test_image_dirs_follow_the_overlay_rules(tmp_path: Path) -> None:
    from rootless.errors import VolumeError
    from rootless.runtime.volumes import image_dirs

    low, mid, top = (tmp_path / n for n in ("low", "mid", "top"))
    (low / "a" / "b").mkdir(parents=True)
    (low / "gone").mkdir()
    (low / "opq").mkdir()
    (mid / "a" / "b").mkdir(parents=True)
    (mid / "link").mkdir()
    os.symlink("../a", mid / "link" / "up")
    os.symlink("/a/b", mid / "abs")
    (mid / ".wh.gone").write_text("")
    (mid / "opq").mkdir()
    (mid / "opq" / ".wh..wh..opq").write_text("")
    (top / "a").mkdir(parents=True)
    layers = [str(low), str(mid), str(top)]
    assert image_dirs(layers, "/a") == [str(low / "a"), str(mid / "a"), str(top / "a")]
    assert image_dirs(layers, "/a/b") == [str(low / "a" / "b"), str(mid / "a" / "b")]
    assert image_dirs(layers, "/link/up/b") == image_dirs(layers, "/abs") == image_dirs(layers, "/a/b")
    assert image_dirs(layers, "/a/../a/b/") == image_dirs(layers, "/a/b")
    assert image_dirs(layers, "/gone") == []
    assert image_dirs(layers, "/opq") == [str(mid / "opq")]
    assert image_dirs(layers, "/nosuch/dir") == []
    (top / "file").write_text("")
    with pytest.raises(VolumeError, match="cannot mount a volume on /file: the image has a file there"):
        image_dirs(layers, "/file")


def test_image_dirs_are_opened_below_their_layer(tmp_path: Path) -> None:
    from rootless.errors import StoreError
    from rootless.runtime.volumes import _open_in_layer

    layer = tmp_path / "layer"
    (layer / "a").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    os.symlink(tmp_path / "host", layer / "link")
    fd = _open_in_layer([str(layer)], str(layer / "a"))
    os.close(fd)
    # A name that became a symlink after the image was read is refused, never followed.
    with pytest.raises(StoreError, match="cannot copy the image's /link into a volume"):
        _open_in_layer([str(layer)], str(layer / "link"))


@pytest.mark.single_id
def test_single_id_volume_is_copied_and_kept(rl: Rl, busybox: str) -> None:
    assert rl("run", "--rm", "-v", "etc:/etc", "busybox", "sh", "-c",
              "grep -c ^root: /etc/passwd; echo kept > /etc/new").out == "1\n"
    assert rl("run", "--rm", "-v", "etc:/etc:ro", "busybox", "cat", "/etc/new").out == "kept\n"
    st = (rl.root / "volumes" / "etc" / "_data" / "new").stat()
    assert st.st_uid == os.getuid()
    assert rl("volume", "rm", "etc").out == "etc\n"


def test_system_df_counts_volumes(rl: Rl, busybox: str) -> None:
    rl("volume", "create", "dfvol")
    rl("run", "--rm", "-v", "dfvol:/data", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /data/f")
    rows = {line.split()[0] + line.split()[1]: line.split() for line in rl("system", "df").out.splitlines()[1:]}
    local = rows["LocalVolumes"]
    assert local[2:4] == ["1", "0"]  # total, active
    assert local[4] in ("300kB", "301kB", "303kB", "304kB")
    rl("volume", "rm", "dfvol")


def _build(rl: Rl, context: Path, tag: str, dockerfile: str) -> None:
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    rl("build", "-q", "-t", tag, str(context))


def test_image_volume_is_an_anonymous_volume_of_each_container(run, rl: Rl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A RUN after VOLUME sees the directory the build made in the image, as buildah makes it.
    _build(rl, tmp_path / "ctx", "withvol", "FROM busybox\nVOLUME /root/temp/data\n"
           "RUN stat -c '%a %u' /root/temp/data > /made\n")
    assert run("--rm", "withvol", "cat", "/made").out == "755 0\n"
    assert _names(rl) == []
    run("--name", "c", "withvol", "sh", "-c", "ls -A /root/temp/data && echo kept > /root/temp/data/f")
    # A run refused after its volumes were made leaves none behind.
    assert run("--name", "c", "withvol", "true", check=False).code == 125
    [anon] = _names(rl)
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert (rl.root / "volumes" / anon / "_data" / "f").read_text() == "kept\n"
    [doc] = json.loads(rl("inspect", "c").out)
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in doc["Mounts"]] == \
        [("volume", anon, "/root/temp/data", True)]
    # Each container gets its own volume, removed with it by `rm -v`.
    assert run("--rm", "withvol", "ls", "-A", "/root/temp/data").out == ""
    assert _names(rl) == [anon]
    rl("rm", "-v", "c")
    assert _names(rl) == []
    # A mount of the user's own on that path takes the place of the image's volume.
    run("--rm", "-v", "mine:/root/temp/data", "withvol", "touch", "/root/temp/data/g")
    run("--rm", "--tmpfs", "/root/temp/data", "withvol", "touch", "/root/temp/data/g")
    # One below it goes on top of the image's, whatever the order of the command line.
    run("--rm", "-v", "sub:/root/temp/data/sub", "withvol", "touch", "/root/temp/data/sub/h")
    assert os.listdir(rl.root / "volumes" / "sub" / "_data") == ["h"]
    assert _names(rl) == ["mine", "sub"]


def test_build_volume_below_a_symlink_keeps_the_symlink(rl: Rl, busybox: str, tmp_path: Path) -> None:
    _build(rl, tmp_path / "ctx", "linked", "FROM busybox\nRUN ln -s /tmp /linked\nVOLUME /linked/v\n")
    assert rl("run", "--rm", "linked", "sh", "-c", "readlink /linked; ls -d /tmp/v").out == "/tmp\n/tmp/v\n"
    assert _names(rl) == []


def test_image_volume_is_filled_from_the_image(run, rl: Rl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chown = "chown -R 1000:1000 /seed/sub && " if has_subuid_range() else ""
    _build(rl, tmp_path / "ctx", "seeded", "FROM busybox\n"
           f"RUN mkdir -p /seed/sub && echo hi > /seed/sub/f && {chown}chmod 700 /seed/sub && chmod 1777 /seed"
           " && ln -s /etc/passwd /seed/link\n"
           "VOLUME /seed/\n")
    out = run("--name", "s", "seeded", "sh", "-c", "stat -c '%a %u %n' /seed /seed/sub; cat /seed/sub/f; "
              "readlink /seed/link; echo new > /seed/new").out
    owner = "1000" if chown else "0"
    assert out.splitlines() == ["1777 0 /seed", f"700 {owner} /seed/sub", "hi", "/etc/passwd"]
    [anon] = _names(rl)
    data = rl.root / "volumes" / anon / "_data"
    assert sorted(os.listdir(data)) == ["link", "new", "sub"] and os.readlink(data / "link") == "/etc/passwd"
    assert run("--rm", "seeded", "ls", "/seed").out.split() == ["link", "sub"]
    rl("rm", "-v", "s")
    assert _names(rl) == []


def test_image_volume_the_image_lacks_is_made_empty(run, rl: Rl, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    # `import --change` records the VOLUME without making its directory, as docker's does.
    rl("import", "-c", "VOLUME /new/deep", "-c", "VOLUME relative", str(busybox_tar), "novol")
    out = run("--rm", "novol", "sh", "-c", "ls -A /new/deep; ls -A /relative; touch /new/deep/x /relative/y && "
              "stat -c '%a %n' /new /new/deep").out
    assert out.splitlines() == ["755 /new", "755 /new/deep"]
    assert _names(rl) == []
    # A VOLUME on a file of the image is refused, as Docker refuses it, and leaves no volume.
    rl("import", "-c", "VOLUME /etc/passwd", str(busybox_tar), "onfile")
    r = run("--rm", "onfile", "true", check=False)
    assert r.code == 125 and r.err.splitlines()[-1] == \
        "Error: cannot mount a volume on /etc/passwd: the image has a file there, not a directory"
    assert _names(rl) == []


@pytest.mark.single_id
def test_single_id_image_volume(rl: Rl, busybox: str, tmp_path: Path) -> None:
    _build(rl, tmp_path / "ctx", "seeded", "FROM busybox\nRUN mkdir /seed && echo hi > /seed/f && chmod 1777 /seed\n"
           "VOLUME /seed\n")
    assert rl("run", "--name", "s", "seeded", "sh", "-c", "stat -c '%a %u' /seed; cat /seed/f; echo x > /seed/new").out \
        == "1777 0\nhi\n"
    [anon] = _names(rl)
    assert (rl.root / "volumes" / anon / "_data" / "new").read_text() == "x\n"
    rl("rm", "-v", "s")
    assert _names(rl) == []
