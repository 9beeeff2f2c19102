"""Docker's ways of printing: aligned tables, human sizes and ages, JSON lines."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

from rootless.errors import UsageError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
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
    """Docker's units.HumanDuration, followed by "ago"."""
    if ts <= 0:
        return "N/A"
    seconds = int(max(0.0, (now or time.time()) - ts))
    minutes = seconds // 60
    hours = round(seconds / 3600)
    if seconds < 1:
        text = "Less than a second"
    elif seconds == 1:
        text = "1 second"
    elif seconds < 60:
        text = f"{seconds} seconds"
    elif minutes == 1:
        text = "About a minute"
    elif minutes < 60:
        text = f"{minutes} minutes"
    elif hours == 1:
        text = "About an hour"
    elif hours < 48:
        text = f"{hours} hours"
    elif hours < 24 * 7 * 2:
        text = f"{hours // 24} days"
    elif hours < 24 * 30 * 2:
        text = f"{hours // 24 // 7} weeks"
    elif hours < 24 * 365 * 2:
        text = f"{hours // 24 // 30} months"
    else:
        text = f"{hours // 24 // 365} years"
    return f"{text} ago"


def docker_time(ts: float) -> str:
    """A time as Go's time.Time.String() prints it in the local zone, which is what Docker's ps and
    images show as CreatedAt: '2026-12-05 23:40:32 +0000 UTC'."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(int(ts)))


def docker_rfc3339(ts: float) -> str:
    """A time as Go formats it with time.RFC3339 in the local zone (Docker's history CreatedAt)."""
    t = time.localtime(int(ts))
    off = t.tm_gmtoff
    zone = "Z" if off == 0 else f"{'-' if off < 0 else '+'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + zone


def go_json(obj: Any) -> str:
    """JSON as Docker's `{{json .}}` writes it: compact, UTF-8 as it is, <, > and & not escaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


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
        out.write(go_json(o) + "\n")


def json_doc(obj: Any, out=None) -> None:  # type: ignore[no-untyped-def]
    out = out or sys.stdout
    out.write(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")


def listing(fmt: str | None, rows: Sequence[dict[str, Any]], headers: Sequence[str],
            cells: Sequence[Sequence[str]]) -> None:
    """A listing's --format, as Docker's: None or 'table' prints the cells under the headers, 'json'
    each row as one JSON object a line, a Go template each row through it."""
    if fmt == "json":
        json_lines(rows)
    elif fmt in (None, "table"):
        table(headers, cells)
    elif fmt.startswith("table"):
        raise UsageError(f"--format {fmt!r} is not supported: use 'table', 'json' or a template of the row "
                         "without 'table'")
    else:
        from rootless.cli.template import render

        sys.stdout.write("".join(render(fmt, r) + "\n" for r in rows))
