"""The part of Go's text/template that `--format` users reach for: {{.A.B}} and {{json .A}}."""
from __future__ import annotations

import re
from types import ModuleType

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


def render(fmt: str, obj: Any, json: ModuleType) -> str:
    def sub(m: re.Match[str]) -> str:
        v = _lookup(obj, m.group(2))
        if m.group(1):
            return json.dumps(v)
        if isinstance(v, (dict, list)):
            return json.dumps(v) if not v else str(v)
        return "" if v is None else str(v)

    out = _ACTION.sub(sub, fmt)
    if "{{" in out:
        raise UsageError(f"template {fmt!r} uses something rl does not support: only {{{{.Field}}}} and {{{{json .Field}}}}")
    return out.replace("\\n", "\n").replace("\\t", "\t")
