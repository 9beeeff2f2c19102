"""Heredocs as BuildKit runs them (Dockerfile syntax 1.4, frontend/dockerfile2llb/convert.go).

RUN: a command that is one heredoc alone (`RUN <<EOF`) runs its body as the shell's script, or,
when the body starts with `#!`, as a file of its own, so the kernel starts the interpreter the
shebang names. Any other command (`RUN <<EOF bash`, `RUN cat <<A <<B`) goes to the shell with
its heredocs written back after it, for the shell to feed them where the command line says.

COPY and ADD: each heredoc source is a file named after its delimiter, 0644 unless --chmod says,
its body expanded with the ARGs and ENV in scope unless the delimiter was quoted.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from rootless.build.dockerfile import Heredoc, Instruction, heredoc_word
from rootless.errors import DockerfileError
from rootless.build.expand import expand_heredoc

# Where a shebang script is mounted, read-only, for its RUN. BuildKit uses /dev/pipes, but rl
# mounts a container's bind mounts before its /dev tmpfs, which would hide it; the mount point
# rl makes here is left out of the step's layer like every mount point rl makes.
SCRIPT_DIR = "/.rl-heredoc"


def run_command(instr: Instruction, shell: Sequence[str]) -> tuple[list[str], Heredoc | None]:
    """The command line of a shell-form RUN with heredocs, and the heredoc to mount as an
    executable file at SCRIPT_DIR/<name> (None when the shell reads everything)."""
    line = instr.args[0]
    if heredoc_word(line.strip()) is not None:
        doc = instr.heredocs[0]
        if doc.content.startswith("#!"):
            return [*shell, f"{SCRIPT_DIR}/{doc.name}"], doc
        return [*shell, doc.content], None
    return [*shell, line + "".join(f"\n{h.content}{h.name}" for h in instr.heredocs)], None


def write_script(doc: Heredoc, into: Path) -> None:
    """The shebang heredoc as an executable file in the new directory `into`."""
    # Readable by any USER the step runs as, like the file.
    _write_files([(doc.name, doc.content)], into, 0o755, "RUN")
    into.chmod(0o755)


def write_sources(instr: Instruction, docs: Sequence[Heredoc], env: Mapping[str, str], into: Path) -> list[str]:
    """COPY/ADD's heredoc sources as files in the new directory `into`; returns their names."""
    files = [(d.name, d.content if d.quoted else expand_heredoc(d.content, env)) for d in docs]
    _write_files(files, into, 0o644, instr.command)
    return [name for name, _ in files]


def _write_files(files: Sequence[tuple[str, str]], into: Path, mode: int, command: str) -> None:
    into.mkdir(mode=0o700)
    for name, text in files:
        if "/" in name or name in (".", ".."):
            raise DockerfileError(f"{command} <<{name}: a heredoc's delimiter names its file, and "
                                  f"cannot be . or .. or contain /")
        try:
            fd = os.open(into / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except FileExistsError:
            raise DockerfileError(f"{command} <<{name}: two heredocs of one instruction name the same "
                                  f"file")
        with open(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            os.fchmod(fd, mode)  # whatever the umask
            f.write(text)
