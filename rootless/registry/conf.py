"""containers-registries.conf(5), as podman reads it: the registries that short names are searched
in (`unqualified-search-registries`) and the ones spoken to without TLS (`insecure = true`).

The first file found counts: `$CONTAINERS_REGISTRIES_CONF`, else
`$XDG_CONFIG_HOME/containers/registries.conf`, else `/etc/containers/registries.conf`. Both the v2
format (`[[registry]]` tables) and v1 (`[registries.search]`, `[registries.insecure]`) are read.
Light on purpose: `rl run` reads it when an image is missing, before it loads any registry code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rootless.errors import UsageError
from rootless.paths import config_home


def conf_file() -> Path | None:
    """The file that counts, if there is one."""
    env = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if env:
        return Path(env)
    for path in (config_home() / "containers" / "registries.conf", Path("/etc/containers/registries.conf")):
        if path.is_file():
            return path
    return None


def _load() -> tuple[Path | None, dict[str, Any]]:
    import tomllib

    path = conf_file()
    if path is None:
        return None, {}
    try:
        return path, tomllib.loads(path.read_text())
    except FileNotFoundError:
        return path, {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the registries configuration {path}: {e}") from e


def _v1_list(doc: dict[str, Any], table: str) -> list[str]:
    entry = (doc.get("registries") or {}).get(table) or {}
    found = entry.get("registries") if isinstance(entry, dict) else None
    return [r for r in found if isinstance(r, str)] if isinstance(found, list) else []


def is_insecure(host: str) -> bool:
    """Listed as insecure: spoken to over plain HTTP (TLS, unverified, only if that fails)."""
    _, doc = _load()
    for r in doc.get("registry") or []:
        if isinstance(r, dict) and r.get("insecure") is True and host in (r.get("location"), r.get("prefix")):
            return True
    return host in _v1_list(doc, "insecure")


def search_registries() -> list[str]:
    """Where short names are looked for, in order (empty: Docker's docker.io)."""
    _, doc = _load()
    found = doc.get("unqualified-search-registries")
    if isinstance(found, list):
        return [r for r in found if isinstance(r, str) and r]
    return _v1_list(doc, "search")


def is_short(name: str) -> bool:
    """A name that names no registry (`debian`, `library/debian`): Docker reads docker.io into it."""
    from rootless.image.reference import DEFAULT_DOMAIN, parse

    return parse(name).domain == DEFAULT_DOMAIN and not name.startswith((f"{DEFAULT_DOMAIN}/", "index.docker.io/"))


def candidates(name: str) -> list[str]:
    """The fully qualified names a name may mean, to try in order: the name itself unless it is
    short and search registries are configured."""
    if not is_short(name):
        return [name]
    search = search_registries()
    return [f"{r}/{name}" for r in search] if search else [name]
