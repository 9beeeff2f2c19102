"""The command line is parsed as Docker's is: no option is taken for an abbreviation of another;
and parsing it leaves argparse as it found it, for programs that use rl's API."""
from __future__ import annotations

import argparse
import gettext

import pytest

from rootless.cli.main import main


@pytest.mark.parametrize("argv, flag", [
    (["run", "--pid", "host", "busybox", "true"], "--pid"),  # not --pids-limit
    (["run", "--entry", "sh", "busybox"], "--entry"),  # not --entrypoint
    (["build", "--no-cach", "."], "--no-cach"),
    (["--ro=/tmp/x", "images"], "--ro"),  # not --root
    (["volume", "ls", "--form", "json"], "--form"),  # not --format
])
def test_an_abbreviated_option_is_unknown(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 125
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and flag in err and len(err.splitlines()) == 1


def test_argparse_keeps_its_own_translation_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    hooks = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    assert hooks == (gettext.gettext, gettext.ngettext)
    with pytest.raises(SystemExit):
        main(["--help"])
    with pytest.raises(SystemExit):
        main(["run", "--no-such-flag", "busybox"])
    assert "usage" in capsys.readouterr().out
    assert (argparse._, argparse.ngettext) == hooks  # type: ignore[attr-defined]
