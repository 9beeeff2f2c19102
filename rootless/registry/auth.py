"""Stored registry credentials in the containers-auth.json format (what podman and skopeo use).

rl writes `$XDG_CONFIG_HOME/rl/auth.json` (or `$REGISTRY_AUTH_FILE`), and reads that, then
Docker's `~/.docker/config.json`, so a user logged in with Docker needs no second login.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from rootless.paths import config_home
from rootless.errors import AuthError
from rootless.values import valueclass

# Docker keeps Docker Hub's credentials under its v1 URL; containers-auth uses "docker.io".
_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


@valueclass
class Credentials:
    username: str
    password: str


def rl_auth_file() -> Path:
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    return config_home() / "rl" / "auth.json"


def _docker_config_file() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    base = Path(env) if env else Path(os.path.expanduser("~")) / ".docker"
    return base / "config.json"


def _keys(registry: str) -> tuple[str, ...]:
    return _DOCKER_HUB_KEYS if registry in _DOCKER_HUB_KEYS else (registry, f"https://{registry}", f"http://{registry}")


def _read(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{path} is not valid JSON: fix or remove it")
    except OSError as e:
        raise AuthError(f"cannot read {path}: {e.strerror}") from e
    if not isinstance(doc, dict):
        raise AuthError(f"{path} is not a JSON object: fix or remove it")
    return doc


def _decode(entry: object, path: Path) -> Credentials | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str) or not entry["auth"]:
        return None
    try:
        user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{path} holds a malformed \"auth\" entry: log in again")
    if not sep:
        raise AuthError(f"{path} holds a malformed \"auth\" entry: log in again")
    return Credentials(user, password)


def lookup(registry: str) -> Credentials | None:
    """The credentials stored for a registry (host[:port]), if any."""
    for path in (rl_auth_file(), _docker_config_file()):
        auths = _read(path).get("auths")
        if not isinstance(auths, dict):
            continue
        for key in _keys(registry):
            creds = _decode(auths.get(key), path)
            if creds is not None:
                return creds
    return None


def _write(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def store(registry: str, creds: Credentials) -> Path:
    path = rl_auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[_keys(registry)[0]] = {"auth": token}
    doc["auths"] = auths
    _write(path, doc)
    return path


def remove(registry: str) -> bool:
    """Forget a registry's credentials in rl's file; False when there were none."""
    path = rl_auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return False
    found = [k for k in _keys(registry) if k in auths]
    for k in found:
        del auths[k]
    if found:
        _write(path, doc)
    return bool(found)
