"""`--change` instructions of `rl import` and `rl commit`: the Dockerfile subset Docker accepts there."""
from __future__ import annotations

import json
import shlex
from typing import Any

from rootless.errors import UsageError

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _exec_or_shell(arg: str) -> list[str]:
    s = arg.strip()
    if s.startswith("["):
        try:
            v = json.loads(s)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return ["/bin/sh", "-c", s]


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(arg)
    except ValueError as e:
        raise UsageError(f"--change {what}: {e}") from e
    if len(words) >= 2 and "=" not in words[0]:
        return [(words[0], arg.strip()[len(arg.strip().split(None, 1)[0]):].strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise UsageError(f"--change {what}: expected KEY=VALUE, got {w!r}")
        k, v = w.split("=", 1)
        out.append((k, v))
    return out


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction, e.g. 'CMD ["/bin/sh"]' or 'ENV A=1', to an image config's `config`."""
    parts = change.strip().split(None, 1)
    if not parts:
        raise UsageError("--change needs an instruction")
    instr, arg = parts[0].upper(), (parts[1] if len(parts) > 1 else "")
    if instr not in ALLOWED:
        raise UsageError(f"--change {parts[0]} is not supported: use one of {', '.join(ALLOWED)}")
    if instr == "CMD":
        config["Cmd"] = _exec_or_shell(arg)
    elif instr == "ENTRYPOINT":
        config["Entrypoint"] = _exec_or_shell(arg)
    elif instr == "ENV":
        env = [e for e in config.get("Env") or []]
        for k, v in _pairs(arg, "ENV"):
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        config["Env"] = env
    elif instr == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_pairs(arg, "LABEL"))
        config["Labels"] = labels
    elif instr == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for p in arg.split():
            ports[p if "/" in p else f"{p}/tcp"] = {}
        config["ExposedPorts"] = ports
    elif instr == "VOLUME":
        vols = dict(config.get("Volumes") or {})
        s = arg.strip()
        names = json.loads(s) if s.startswith("[") else s.split()
        for v in names:
            vols[v] = {}
        config["Volumes"] = vols
    elif instr == "ONBUILD":
        config["OnBuild"] = list(config.get("OnBuild") or []) + [arg.strip()]
    else:
        key = {"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[instr]
        if not arg.strip():
            raise UsageError(f"--change {instr} needs a value")
        config[key] = arg.strip()
