"""Heredocs as BuildKit runs them: the command line of RUN, and the files of COPY's heredoc sources."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rootless.build.dockerfile import Heredoc, Instruction, parse
from rootless.errors import DockerfileError
from rootless.build.heredoc import SCRIPT_DIR, run_command, write_script, write_sources

SHELL = ("/bin/sh", "-c")


def _instructions(body: str) -> tuple[Instruction, ...]:
    return parse("FROM a\n" + body).stages[0].instructions


def test_a_lone_heredoc_is_the_shell_script() -> None:
    (run,) = _instructions("RUN <<-EOT\n\techo $HOME\n\tEOT\n")
    assert run_command(run, SHELL) == (["/bin/sh", "-c", "echo $HOME\n"], None)


def test_a_shebang_body_runs_as_a_file_of_its_own() -> None:
    (run,) = _instructions("RUN 3<<EOT\n#!/usr/bin/env python\nprint(1)\nEOT\n")
    command, script = run_command(run, SHELL)
    assert command == ["/bin/sh", "-c", f"{SCRIPT_DIR}/EOT"]
    assert script == Heredoc("EOT", "#!/usr/bin/env python\nprint(1)\n", False, 3)


def test_a_command_with_heredocs_gets_them_back_after_its_line() -> None:
    bash, two = _instructions("RUN <<EOT bash\necho hi\nEOT\nRUN cat <<'A' <<-B > /f\na $X\nA\n\tb\n\tB\n")
    assert run_command(bash, SHELL) == (["/bin/sh", "-c", "<<EOT bash\necho hi\nEOT"], None)
    assert run_command(two, ["bash", "-ec"]) == (["bash", "-ec", "cat <<'A' <<-B > /f\na $X\nA\nb\nB"], None)


def test_copy_sources_are_files_expanded_unless_quoted(tmp_path: Path) -> None:
    (copy,) = _instructions("COPY <<EOF <<'RAW' /d/\n${FOO} \"$BAR\" \\$FOO\nEOF\n$FOO\nRAW\n")
    names = write_sources(copy, copy.heredocs, {"FOO": "foo", "BAR": "bar"}, tmp_path / "in")
    assert names == ["EOF", "RAW"]
    assert (tmp_path / "in" / "EOF").read_text() == 'foo "bar" $FOO\n'
    assert (tmp_path / "in" / "RAW").read_text() == "$FOO\n"
    assert stat.S_IMODE((tmp_path / "in" / "EOF").stat().st_mode) == 0o644


def test_a_script_is_executable_by_any_user(tmp_path: Path) -> None:
    write_script(Heredoc("S", "#!/bin/sh\n", False), tmp_path / "s")
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "s" / "S").stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["..", "a/b"])
def test_a_delimiter_that_is_no_file_name_is_refused(tmp_path: Path, name: str) -> None:
    (copy,) = _instructions(f"COPY <<{name} /d/\nx\n{name}\n")
    with pytest.raises(DockerfileError, match="cannot be . or .. or contain /"):
        write_sources(copy, copy.heredocs, {}, tmp_path / "in")
