""".dockerignore with Docker's rules (moby/patternmatcher), and Go's filepath.Match for COPY.

A .dockerignore line is trimmed, `#` at its very start makes it a comment, `!` makes it an
exception; the pattern is cleaned like Go's filepath.Clean and a leading `/` dropped. `*` and `?`
never cross `/`, `**` spans any number of directories, `[...]` and `\\` escapes are Go's. The last
pattern that matches a path decides; a pattern that matches a directory matches everything under
it, and a later exception can still bring back a path under an excluded directory.
The Dockerfile and .dockerignore follow the same rules: excluded only if listed, as in Docker.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache

from rootless.errors import RlError
from rootless.values import valueclass

IGNORE_FILE = ".dockerignore"


def clean(path: str) -> str:
    """Go's filepath.Clean: no empty, `.` or resolvable `..` components; "" is "."."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
                continue
            if rooted:
                continue
        parts.append(part)
    joined = "/".join(parts)
    return "/" + joined if rooted else joined or "."


@valueclass
class Pattern:
    text: str  # cleaned, without the `!`
    exception: bool
    regex: re.Pattern[str]


class Ignore:
    """The patterns of one .dockerignore; `ignored(relpath)` tells whether the context excludes
    a path (relative, `/`-separated)."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(_pattern(p) for p in _patterns(lines))
        self.has_exceptions = any(p.exception for p in self.patterns)

    @classmethod
    def load(cls, context_dir: str) -> Ignore:
        """The context's .dockerignore; none there: nothing is ignored."""
        try:
            with open(os.path.join(context_dir, IGNORE_FILE), encoding="utf-8",
                      errors="surrogateescape") as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            return cls()

    def ignored(self, relpath: str) -> bool:
        if not self.patterns:
            return False
        path = clean(relpath)
        parents = path.split("/")[:-1]
        ignored = False
        for pattern in self.patterns:
            # Only a pattern that can change the answer is tried: an exclusion while the path is
            # still in, an exception once it is out.
            if pattern.exception != ignored:
                continue
            match = pattern.regex.fullmatch(path) is not None
            if not match:
                match = any(pattern.regex.fullmatch("/".join(parents[:i + 1])) is not None
                            for i in range(len(parents)))
            if match:
                ignored = not pattern.exception
        return ignored


def _patterns(lines: Iterable[str]) -> list[str]:
    out = []
    for n, line in enumerate(lines):
        if n == 0:
            line = line.lstrip("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if exception else line)
    return out


def _pattern(text: str) -> Pattern:
    exception = text.startswith("!")
    if exception:
        text = text[1:]
        if not text:
            raise RlError(f'{IGNORE_FILE}: illegal exclusion pattern: "!"')
    text = clean(text)
    try:
        go_match_regex(text)  # patternmatcher refuses what filepath.Match refuses
        regex = re.compile(_ignore_regex(text), re.DOTALL)
    except (re.error, ValueError):
        raise RlError(f"{IGNORE_FILE}: syntax error in pattern: {text}")
    return Pattern(text, exception, regex)


_REGEX_SPECIAL = frozenset(".+()|{}$")


def _ignore_regex(pattern: str) -> str:
    """patternmatcher's translation: `**` (with its `/`) is any number of directories,
    `[...]` goes to the regex as written."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def has_wildcards(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match on one name. A malformed pattern raises ValueError."""
    return go_match_regex(pattern).fullmatch(name) is not None


@lru_cache(maxsize=256)
def go_match_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise ValueError(f"syntax error in pattern: {pattern}")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            i = _go_class(pattern, i, out)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _go_class(pattern: str, i: int, out: list[str]) -> int:
    """A `[...]` class of filepath.Match from just after the `[`; returns where it ends."""
    n = len(pattern)
    parts = ["["]
    if i < n and pattern[i] == "^":
        parts.append("^")
        i += 1
    ranges = 0
    while True:
        if i < n and pattern[i] == "]" and ranges > 0:
            out.append("".join(parts) + "]")
            return i + 1
        lo, i = _class_char(pattern, i)
        hi = lo
        if i < n and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise ValueError(f"syntax error in pattern: {pattern}")
        parts.append(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}")
        ranges += 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError(f"syntax error in pattern: {pattern}")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError(f"syntax error in pattern: {pattern}")
    return pattern[i], i + 1
