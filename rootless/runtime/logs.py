"""A container's log: its stdout and stderr, line by line, each line stamped and its stream kept.

The format is the Kubernetes CRI one, so other tools read it too:
    2026-11-26T15:00:00.123456789Z stdout F a whole line
    2026-11-26T15:00:00.123456789Z stderr P part of a line (no newline followed)
`F` lines were followed by a newline, `P` ones were not: joining the texts, with a newline after
each `F`, gives back the exact bytes the container wrote.
"""
from __future__ import annotations

import os
import selectors
import time
from collections.abc import Iterator
from pathlib import Path

from rootless.values import valueclass

LOG_NAME = "log"
_MAX_PARTIAL = 16 * 1024  # a longer line is cut into P records, as Docker's 16 KiB buffer does


@valueclass
class Record:
    time: str  # RFC 3339 with nanoseconds, UTC
    stream: str  # stdout or stderr
    partial: bool
    text: bytes

    def output(self) -> bytes:
        return self.text if self.partial else self.text + b"\n"


def log_path(cdir: Path) -> Path:
    return cdir / LOG_NAME


def _stamp() -> bytes:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)).encode() + b".%09dZ" % (
        ns % 1_000_000_000)


class LogWriter:
    """Turns chunks of a stream into log records; one stamp per chunk keeps 10 MB cheap."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.pending: dict[bytes, bytes] = {}

    def feed(self, stream: bytes, data: bytes) -> None:
        buf = self.pending.pop(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        stamp = _stamp()
        out = [b"%s %s F %s\n" % (stamp, stream, line) for line in lines]
        while len(rest) > _MAX_PARTIAL:
            out.append(b"%s %s P %s\n" % (stamp, stream, rest[:_MAX_PARTIAL]))
            rest = rest[_MAX_PARTIAL:]
        if rest:
            self.pending[stream] = rest
        _write_all(self.fd, b"".join(out))

    def close(self) -> None:
        """A last line without its newline is kept as a partial record."""
        stamp = _stamp()
        _write_all(self.fd, b"".join(b"%s %s P %s\n" % (stamp, s, rest) for s, rest in self.pending.items()))
        self.pending.clear()
        os.close(self.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def pump(path: Path, out_r: int, err_r: int, echo: bool) -> None:
    """Copy the container's stdout and stderr pipes into the log until both close; with echo also to
    our own stdout and stderr (a foreground run), which a reader that goes away stops."""
    writer = LogWriter(path)
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ, (b"stdout", 1))
    sel.register(err_r, selectors.EVENT_READ, (b"stderr", 2))
    echoing = {1: echo, 2: echo}
    try:
        while sel.get_map():
            for key, _ in sel.select():
                stream, ours = key.data
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    continue
                writer.feed(stream, data)
                if echoing[ours]:
                    try:
                        _write_all(ours, data)
                    except OSError:
                        echoing[ours] = False
    finally:
        sel.close()
        writer.close()


def read_records(path: Path, offset: int = 0) -> tuple[list[Record], int]:
    """The whole records from offset on, and the offset after the last one (a record being written
    is left for the next call)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].split(b"\n")[:-1]:
        stamp, stream, tag, text = (line.split(b" ", 3) + [b""])[:4]
        records.append(Record(stamp.decode(), stream.decode(), tag == b"P", text))
    return records, offset + end


def tail(records: list[Record], n: int | None) -> Iterator[Record]:
    """The last n lines of output (a line cut into partial records counts once)."""
    if n is None:
        yield from records
        return
    if n <= 0:
        return
    ends = [i for i, r in enumerate(records) if not r.partial]
    if records and records[-1].partial:
        ends.append(len(records) - 1)
    first = ends[-n - 1] + 1 if len(ends) > n else 0
    yield from records[first:]
