"""Docker's ways of printing: aligned tables, human sizes and ages, JSON lines."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """Decimal units with three significant digits, like Docker's units.HumanSize."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{_UNITS[i]}"


def human_age(ts: float, now: float | None = None) -> str:
    if ts <= 0:
        return "N/A"
    d = max(0.0, (now or time.time()) - ts)
    if d < 1:
        return "Less than a second ago"
    if d < 60:
        return f"{int(d)} seconds ago"
    minutes = d / 60
    if minutes < 1.5:
        return "About a minute ago"
    if minutes < 60:
        return f"{round(minutes)} minutes ago"
    hours = minutes / 60
    if round(hours) == 1:
        return "About an hour ago"
    if hours < 48:
        return f"{round(hours)} hours ago"
    days = hours / 24
    if days < 14:
        return f"{round(days)} days ago"
    if days < 60:
        return f"{round(days / 7)} weeks ago"
    if days < 730:
        return f"{round(days / 30)} months ago"
    return f"{round(days / 365)} years ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out=None) -> None:  # type: ignore[no-untyped-def]
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    for r in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.write("   ".join(cells).rstrip() + "\n")


def json_lines(objs: Sequence[Any], out=None) -> None:  # type: ignore[no-untyped-def]
    out = out or sys.stdout
    for o in objs:
        out.write(json.dumps(o) + "\n")


def json_doc(obj: Any, out=None) -> None:  # type: ignore[no-untyped-def]
    out = out or sys.stdout
    out.write(json.dumps(obj, indent=4) + "\n")
