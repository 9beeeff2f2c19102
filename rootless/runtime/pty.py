"""-t: the container's terminal, and relaying it to ours and into the log.

The pseudo-terminal is made inside the container, from its own devpts instance, so that `tty`
names /dev/pts/0 there (a host pty would be a name that does not exist inside). Pid 1 opens it
and sends the master back over a socket pair that is its stdio until then; the window size
travels the other way first, so the command sees the right size from its first instruction.
"""
from __future__ import annotations

import fcntl
import os
import selectors
import signal
import socket
import struct
import termios
import tty
from pathlib import Path

_DEFAULT_SIZE = struct.pack("HHHH", 24, 80, 0, 0)


def window_size() -> bytes:
    """Our terminal's size as a struct winsize (24x80 when we have no terminal)."""
    for fd in (0, 1, 2):
        try:
            return fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8))
        except OSError:
            continue
    return _DEFAULT_SIZE


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(ours, the container's stdio): ours already carries the window size pid 1 reads."""
    ours, theirs = socket.socketpair()
    ours.sendall(window_size())
    return ours, theirs


def receive_master(ours: socket.socket) -> int:
    """The pty master pid 1 sent (it did before it exec'd the command)."""
    _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    ours.close()
    if not fds:
        from rootless.errors import RlError

        raise RlError("the container did not hand over its terminal")
    return fds[0]


def relay(master: int, log: Path | None, stdin: bool, echo: bool) -> None:
    """Copy the terminal's output to our stdout (echo) and the log, our stdin to it (stdin), with our
    terminal in raw mode meanwhile so keys reach the container's line discipline as typed; our
    window size follows ours (SIGWINCH). Returns when every process of the container closed it."""
    from rootless.runtime.logs import LogWriter

    writer = LogWriter(log) if log is not None else None
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    saved = None  # (fd, attributes) of our terminal to restore
    if stdin:
        sel.register(0, selectors.EVENT_READ)
        if os.isatty(0):
            saved = 0, termios.tcgetattr(0)
            tty.setraw(0)
    if echo and saved is None and os.isatty(1):
        # Only output processing off: the container's terminal already turned \n into \r\n.
        attrs = termios.tcgetattr(1)
        saved = 1, list(attrs)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(1, termios.TCSADRAIN, attrs)
    previous = signal.signal(signal.SIGWINCH, lambda _s, _f: _resize(master)) if echo else None
    try:
        while True:
            for key, _ in sel.select():
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: no process holds the terminal any more
                        data = b""
                    if not data:
                        return
                    if writer is not None:
                        writer.feed(b"stdout", data)
                    if echo:
                        _write_all(1, data)
                    continue
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    data = b"\x04"  # our stdin ended: end-of-file for a reader of the terminal
                _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(saved[0], termios.TCSADRAIN, saved[1])
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        sel.close()
        os.close(master)
        if writer is not None:
            writer.close()


def _resize(master: int) -> None:
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, window_size())
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
