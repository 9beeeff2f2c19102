"""The part of Go's text/template that `--format` users reach for: {{.A.B}} and {{json .A}}, values
printed as Go prints them (scripts compare these strings)."""
from __future__ import annotations

import re

from rootless.cli.output import go_json
from rootless.errors import UsageError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any

_ACTION = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(obj: Any, path: str) -> Any:
    for key in [k for k in path.split(".") if k]:
        if not isinstance(obj, dict) or key not in obj:
            raise UsageError(f"template: can't evaluate field {key}")
        obj = obj[key]
    return obj


def _go(v: Any) -> str:
    """fmt's %v: true/false, [a b c], map[k:v] with the keys sorted, <nil>."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    return "<nil>" if v is None else str(v)


def render(fmt: str, obj: Any) -> str:
    def sub(m: re.Match[str]) -> str:
        v = _lookup(obj, m.group(2))
        if m.group(1):
            return go_json(v)
        # A null field prints empty: the JSON does not say whether Docker's field is a list
        # ([]), a map (map[]) or a pointer (<nil>).
        return "" if v is None else _go(v)

    out = _ACTION.sub(sub, fmt)
    if "{{" in out:
        raise UsageError(f"template {fmt!r} uses something rl does not support: only {{{{.Field}}}} and {{{{json .Field}}}}")
    return out.replace("\\n", "\n").replace("\\t", "\t")
