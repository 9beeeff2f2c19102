"""`--format` templates print values as Go's text/template does: scripts compare the strings."""
from __future__ import annotations

import pytest

from rootless.cli.template import render
from rootless.errors import UsageError

DOC = {"State": {"Running": True, "Paused": False, "ExitCode": 0},
       "Config": {"Cmd": ["sh", "-c", "echo hi"], "Entrypoint": None, "Env": [],
                  "Labels": {"z": "1", "a": "x y"}, "ExposedPorts": {}},
       "Name": "café <&>"}


@pytest.mark.parametrize("fmt, text", [
    ("{{.State.Running}} {{.State.Paused}} {{.State.ExitCode}}", "true false 0"),
    ("{{.Config.Cmd}}", "[sh -c echo hi]"),
    ("{{.Config.Env}}|{{.Config.ExposedPorts}}", "[]|map[]"),
    ("{{.Config.Labels}}", "map[a:x y z:1]"),
    ("{{.Config.Entrypoint}}", ""),
    ("{{ .Name }}", "café <&>"),
    ("{{json .Config.Cmd}}", '["sh","-c","echo hi"]'),
    ("{{json .Name}} {{json .Config.Entrypoint}}", '"café <&>" null'),
    ("{{json .State}}", '{"Running":true,"Paused":false,"ExitCode":0}'),
    ("{{.State.Running}}\\t{{.State.ExitCode}}\\n", "true\t0\n"),
])
def test_values_print_as_go_prints_them(fmt: str, text: str) -> None:
    assert render(fmt, DOC) == text


def test_a_list_of_maps_prints_each_as_go_does() -> None:
    assert render("{{.M}}", {"M": [{"b": [True, None], "a": 1}]}) == "[map[a:1 b:[true <nil>]]]"


@pytest.mark.parametrize("fmt", ["{{.Nope}}", "{{range .Config.Cmd}}{{.}}{{end}}"])
def test_what_rl_cannot_evaluate_is_refused(fmt: str) -> None:
    with pytest.raises(UsageError):
        render(fmt, DOC)
