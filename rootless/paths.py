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
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.access(xdg, os.W_OK):
        return Path(xdg) / "rl"
    return Path(f"/tmp/rl-{os.getuid()}")
