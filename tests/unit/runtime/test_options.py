"""-v, --mount, --tmpfs, --env-file, -e and --stop-signal read the way Docker reads them."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.runtime.options import (
    DEFAULT_PATH,
    MountSpec,
    build_env,
    parse_env_file,
    parse_mount,
    parse_signal,
    parse_tmpfs,
    parse_volume,
)

# -v / --volume

def test_volume_host_path_is_a_bind_mount() -> None:
    assert parse_volume("/srv/data:/data") == MountSpec("bind", "/srv/data", "/data", False, ())
    assert parse_volume("/srv/data:/data:ro").readonly
    m = parse_volume("/srv/data:/data:rw,z")
    assert not m.readonly and m.options == ()  # z: SELinux relabelling, accepted and ignored


def test_volume_paths_are_cleaned_like_docker() -> None:
    assert parse_volume("/srv//data/:/a/b/../c/") == MountSpec("bind", "/srv/data", "/a/c", False, ())


def test_volume_name_and_anonymous_volume() -> None:
    assert parse_volume("cache:/var/cache") == MountSpec("volume", "cache", "/var/cache", False, ())
    assert parse_volume("my_vol.1-x:/v:ro,nocopy") == MountSpec("volume", "my_vol.1-x", "/v", True, ("nocopy",))
    assert parse_volume("/scratch") == MountSpec("volume", None, "/scratch", False, ())


def test_volume_propagation_is_kept_for_binds() -> None:
    assert parse_volume("/a:/b:ro,rshared").options == ("rshared",)


@pytest.mark.parametrize("spec", ["data/dir:/d", "./data:/d", "../d:/d", "~/d:/d"])
def test_relative_host_path_is_refused_with_a_hint(spec: str) -> None:
    with pytest.raises(UsageError, match=r"includes invalid characters for a local volume name.*absolute path"):
        parse_volume(spec)


@pytest.mark.parametrize("spec, message", [
    ("/a:data", "must be an absolute path"),
    ("/a:/", "can't be '/'"),
    ("/a:/b:rw,ro", "invalid options 'rw,ro'"),
    ("/a:/b:exec", "invalid options 'exec'"),
    ("/a:/b:nocopy", "nocopy applies to volumes"),
    ("vol:/b:rshared", "applies to bind mounts"),
    ("/b:ro", "options need both a source and a destination"),
    ("/a:", "destination path is missing"),
    (":/b", "use \\[SOURCE:\\]DESTINATION"),
    ("/a:/b:ro:x", "use \\[SOURCE:\\]DESTINATION"),
])
def test_bad_volume_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_volume(spec)
    assert "\n" not in str(info.value)


# --mount

def test_mount_bind_with_aliases_and_readonly() -> None:
    assert parse_mount("type=bind,source=/a,target=/b,readonly") == MountSpec("bind", "/a", "/b", True, ())
    assert parse_mount("type=bind,src=/a,dst=/b,ro=false") == MountSpec("bind", "/a", "/b", False, ())
    assert parse_mount("type=bind,src=/a,destination=/b,readonly=1,bind-propagation=rslave") == \
        MountSpec("bind", "/a", "/b", True, ("rslave",))


def test_mount_defaults_to_a_volume() -> None:
    assert parse_mount("source=data,target=/d") == MountSpec("volume", "data", "/d", False, ())
    assert parse_mount("target=/d,volume-nocopy") == MountSpec("volume", None, "/d", False, ("nocopy",))


def test_mount_relative_dot_source_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_mount("type=bind,src=./sub,dst=/x").source == str(tmp_path / "sub")
    assert parse_mount("type=bind,src=.,dst=/x").source == str(tmp_path)


def test_mount_fields_may_be_quoted_csv() -> None:
    assert parse_mount('type=bind,"source=/a,b",target=/c').source == "/a,b"


def test_mount_tmpfs_size_and_mode_become_mount_data() -> None:
    m = parse_mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770")
    assert m == MountSpec("tmpfs", None, "/run", False, ("noexec", "nosuid", "nodev", "mode=1770", "size=64m"))
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1048576").options[-1] == "size=1m"
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1000").options[-1] == "size=1000"
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1.5g").options[-1] == "size=1536m"
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=0").options == ("noexec", "nosuid", "nodev")


@pytest.mark.parametrize("spec, message", [
    ("type=bind,src=/a,target=/b,color=red", "unknown key 'color'"),
    ("type=bind,src=/a", "target is required"),
    ("type=tmpfs,src=/a,target=/b", "takes no source"),
    ("type=bind,target=/b", "needs a source"),
    ("type=bind,src=rel,target=/b", "must be an absolute path"),
    ("type=volume,src=/abs,target=/b", "use type=bind"),
    ("type=volume,src=bad/name,target=/b", "invalid characters"),
    ("type=npipe,target=/b", "unsupported mount type 'npipe'"),
    ("type=bind,src=/a,target=/b,tmpfs-size=1m", "cannot mix 'tmpfs-\\*' options with mount type 'bind'"),
    ("type=tmpfs,target=/b,bind-propagation=rshared", "cannot mix 'bind-\\*'"),
    ("type=bind,src=/a,target=/b,volume-nocopy", "cannot mix 'volume-\\*'"),
    ("type=bind,src=/a,target=/b,readonly=maybe", "invalid value for readonly"),
    ("type=bind,src=/a,target=/b,bind-propagation=sideways", "invalid bind-propagation"),
    ("type=tmpfs,target=/b,tmpfs-size=lots", "invalid value for tmpfs-size"),
    ("type=tmpfs,target=/b,tmpfs-mode=999", "invalid value for tmpfs-mode"),
    ("type=bind,src=/a,target=/b,nonsense", "must be a key=value pair"),
    ("type=bind,src=/a,target=b", "must be an absolute path"),
])
def test_bad_mounts_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_mount(spec)
    assert "\n" not in str(info.value)


# --tmpfs

def test_tmpfs_gets_dockers_defaults() -> None:
    assert parse_tmpfs("/run") == MountSpec("tmpfs", None, "/run", False, ("noexec", "nosuid", "nodev"))


def test_tmpfs_options_override_defaults_last_one_winning() -> None:
    m = parse_tmpfs("/run:rw,size=64m,mode=1777,exec,size=128m")
    assert m == MountSpec("tmpfs", None, "/run", False, ("nosuid", "nodev", "mode=1777", "exec", "size=128m"))
    assert parse_tmpfs("/ro:ro").readonly
    assert not parse_tmpfs("/rw:ro,rw").readonly


@pytest.mark.parametrize("spec, message", [
    ("/run:bogus", "unknown tmpfs option 'bogus'"),
    ("/run:size=lots", "invalid size 'lots'"),
    ("/run:mode=999", "invalid mode '999'"),
    ("/run:size", "unknown tmpfs option 'size'"),
    ("run", "must be an absolute path"),
    (":size=1m", "destination path is missing"),
])
def test_bad_tmpfs_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_tmpfs(spec)


# --env-file

def test_env_file_rules(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_bytes(b"\xef\xbb\xbf# a comment\n\n   INDENTED=1\nQUOTED=\"kept as is\"  \nEMPTY=\n"
                  b"FROM_HOST\nWINDOWS=crlf\r\nEQ=a=b\n")
    assert parse_env_file(f) == [("INDENTED", "1"), ("QUOTED", '"kept as is"  '), ("EMPTY", ""),
                                 ("FROM_HOST", None), ("WINDOWS", "crlf"), ("EQ", "a=b")]


@pytest.mark.parametrize("content, message", [
    (b"OK=1\nBAD NAME=2\n", ":2: invalid variable name 'BAD NAME'"),
    (b"TRAILING \n", ":1: invalid variable name 'TRAILING '"),
    (b"=value\n", ":1: no variable name"),
    (b"A=\xff\n", ":1: the env file is not valid UTF-8"),
])
def test_env_file_errors_give_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "env"
    f.write_bytes(content)
    with pytest.raises(UsageError, match=f"^{f}{message}"):
        parse_env_file(f)


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read the env file .*missing: No such file"):
        parse_env_file(tmp_path / "missing")


# build_env

def _env(image: list[str] | None = None, files: list[str] | None = None, args: list[str] | None = None,
         host: dict[str, str] | None = None, tty: bool = False, home: str | None = "/root") -> list[str]:
    return build_env(image or [], files or [], args or [], host or {}, hostname="box", tty=tty, home=home)


def test_env_defaults() -> None:
    assert _env() == [f"PATH={DEFAULT_PATH}", "HOSTNAME=box", "HOME=/root"]
    assert _env(tty=True) == [f"PATH={DEFAULT_PATH}", "HOSTNAME=box", "TERM=xterm", "HOME=/root"]
    assert _env(home=None) == [f"PATH={DEFAULT_PATH}", "HOSTNAME=box"]


def test_image_path_replaces_the_default() -> None:
    assert _env(["PATH=/opt/bin", "LANG=C.UTF-8"]) == ["PATH=/opt/bin", "HOSTNAME=box", "LANG=C.UTF-8", "HOME=/root"]


def test_precedence_image_then_files_then_flags(tmp_path: Path) -> None:
    f1, f2 = tmp_path / "one", tmp_path / "two"
    f1.write_text("A=file1\nB=file1\nC=file1\n")
    f2.write_text("B=file2\n")
    env = _env(["A=image", "B=image", "C=image", "D=image"], [str(f1), str(f2)], ["C=flag", "E=flag"])
    assert env[2:] == ["A=file1", "B=file2", "C=flag", "D=image", "E=flag", "HOME=/root"]


def test_name_alone_takes_the_host_value_or_is_dropped(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("FROM_FILE\nUNSET_IN_FILE\n")
    env = _env(["KEEP=image"], [str(f)], ["SET_ON_HOST", "UNSET_ON_HOST", "KEEP"],
               host={"SET_ON_HOST": "yes", "FROM_FILE": "host"})
    assert env[2:] == ["KEEP=image", "FROM_FILE=host", "SET_ON_HOST=yes", "HOME=/root"]


def test_user_home_and_term_never_override_given_values() -> None:
    env = _env(["HOME=/home/app"], args=["TERM=dumb"], tty=True)
    assert "HOME=/home/app" in env and "TERM=dumb" in env
    assert "HOME=/root" not in env and "TERM=xterm" not in env


def test_hostname_can_be_overridden_and_empty_values_kept() -> None:
    assert _env(args=["HOSTNAME=other", "EMPTY="])[1:3] == ["HOSTNAME=other", "EMPTY="]


def test_flag_without_a_name_is_refused() -> None:
    with pytest.raises(UsageError, match="invalid environment variable '=oops'"):
        _env(args=["=oops"])


# --stop-signal

@pytest.mark.parametrize("text, number", [
    ("SIGTERM", signal.SIGTERM), ("TERM", signal.SIGTERM), ("term", signal.SIGTERM), ("15", 15),
    ("SIGKILL", 9), ("sigusr1", signal.SIGUSR1), ("SIGRTMIN", signal.SIGRTMIN),
    ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("RTMAX-2", signal.SIGRTMAX - 2), ("SIGIOT", signal.SIGABRT),
    ("64", 64),
])
def test_signals_by_name_or_number(text: str, number: int) -> None:
    assert parse_signal(text) == number


# The last: 15 in Arabic-Indic digits, which str.isdigit accepts and kill(1) would not.
@pytest.mark.parametrize("text", ["", "0", "65", "-1", "SIGNOPE", "SIGRTMIN+40", "RTMAX-31", "SIG", "1.5",
                                  "\u0661\u0665"])
def test_bad_signals_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="invalid signal"):
        parse_signal(text)
