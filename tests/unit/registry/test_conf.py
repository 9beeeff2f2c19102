"""Short names and registries.conf: which names are tried for a name, in which order."""
from __future__ import annotations

from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.registry.conf import candidates, is_short, search_registries


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "containers" / "registries.conf"
    path.parent.mkdir()
    return path


def test_short_names_name_no_registry() -> None:
    assert is_short("debian") and is_short("library/debian:12") and is_short("user/app@sha256:" + "a" * 64)
    assert not is_short("docker.io/library/debian")
    assert not is_short("quay.io/x/y") and not is_short("localhost/x") and not is_short("127.0.0.1:5000/x")


def test_search_registries_are_tried_in_order(conf: Path) -> None:
    conf.write_text('unqualified-search-registries = ["quay.io", "docker.io"]\n')
    assert candidates("debian:12") == ["quay.io/debian:12", "docker.io/debian:12"]
    assert candidates("ghcr.io/x/y") == ["ghcr.io/x/y"]


def test_without_search_registries_a_short_name_is_docker_hubs(conf: Path) -> None:
    conf.write_text('[[registry]]\nlocation = "example.com"\n')
    assert search_registries() == [] and candidates("debian") == ["debian"]


def test_the_v1_format_is_read(conf: Path) -> None:
    conf.write_text('[registries.search]\nregistries = ["registry.example"]\n')
    assert candidates("app") == ["registry.example/app"]


def test_a_broken_file_is_reported_in_one_line(conf: Path) -> None:
    conf.write_text("unqualified-search-registries = [\n")
    with pytest.raises(UsageError, match="cannot read the registries configuration"):
        candidates("debian")
