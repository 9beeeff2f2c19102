"""Where a user's store and runtime state live."""
from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    env = os.environ.get("RL_ROOT")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "rl"


def config_home() -> Path:
    """$XDG_CONFIG_HOME, else ~/.config: where rl's and the containers tools' settings live."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"))


def runtime_dir() -> Path:
    """Where rl keeps what lives as long as the machine runs. Use it through open_runtime_dir."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.access(xdg, os.W_OK):
        return Path(xdg) / "rl"
    return Path(f"/tmp/rl-{os.getuid()}")


def open_runtime_dir() -> int:
    """A descriptor of the runtime directory, made 0700 when missing.

    Without XDG_RUNTIME_DIR (su, cron, ssh without logind) it is /tmp/rl-UID, a name any user of
    the machine can take first: as a directory of theirs, open to all, or a symlink into the
    victim's home. Like podman, rl uses it only when it is a real directory of the user's that
    no one else can write; otherwise RuntimeDirError says what to do.
    """
    from rootless.errors import RuntimeDirError

    path = runtime_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise RuntimeDirError(f"cannot make the runtime directory {path}: {e.strerror}") from e
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeDirError(f"the runtime directory {path} is not a directory ({e.strerror}): "
                              "remove it, or set XDG_RUNTIME_DIR to a 0700 directory of yours") from e
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise RuntimeDirError(f"the runtime directory {path} is not yours alone (owner {st.st_uid}, mode "
                              f"{st.st_mode & 0o7777:04o}): remove it, or set XDG_RUNTIME_DIR to a 0700 "
                              "directory of yours")
    return fd
