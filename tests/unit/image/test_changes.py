"""`--change` applies Dockerfile instructions to an image config as docker import does."""
from __future__ import annotations

import pytest

from rootless.errors import UsageError
from rootless.image.changes import apply_change


def test_cmd_entrypoint_forms() -> None:
    c: dict = {}
    apply_change(c, 'CMD ["/bin/sh", "-c", "echo hi"]')
    apply_change(c, "ENTRYPOINT /docker-entrypoint.sh run")
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/docker-entrypoint.sh run"]


def test_env_label_expose_volume_and_the_rest() -> None:
    c: dict = {"Env": ["A=old"]}
    apply_change(c, "ENV A=1 B=two")
    apply_change(c, "ENV C spaced value")
    apply_change(c, 'LABEL org.example="a b"')
    apply_change(c, "EXPOSE 80 53/udp")
    apply_change(c, "VOLUME /data")
    apply_change(c, "USER 1000:1000")
    apply_change(c, "WORKDIR /srv")
    apply_change(c, "STOPSIGNAL SIGINT")
    assert c["Env"] == ["A=1", "B=two", "C=spaced value"]
    assert c["Labels"] == {"org.example": "a b"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert (c["User"], c["WorkingDir"], c["StopSignal"]) == ("1000:1000", "/srv", "SIGINT")


@pytest.mark.parametrize("bad", ["RUN echo", "FROM x", "", "USER"])
def test_unsupported_instructions_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        apply_change({}, bad)
