"""The one error tree: every error class of rl is in rootless.errors, and the line a user reads
of an OSError names what was attempted and every path."""
from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

import native
import rootless
from rootless import errors


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_rl_error_is_defined_in_rootless_errors() -> None:
    for module in pkgutil.walk_packages(rootless.__path__, "rootless."):
        if module.name != "rootless.__main__":
            importlib.import_module(module.name)
    strays = {f"{c.__module__}.{c.__qualname__}" for c in _subclasses(errors.RlError)
              if c.__module__ != "rootless.errors"}
    assert not strays
    tree = errors.__doc__ or ""
    assert all(c.__name__ in tree for c in _subclasses(errors.RlError)), "the docstring draws every class"


def test_a_failed_native_call_names_the_operation_and_its_paths(tmp_path: os.PathLike[str]) -> None:
    target = os.path.join(tmp_path, "missing", "shm")
    with pytest.raises(OSError) as info:
        native.mount("shm", target, "tmpfs")
    # Whichever errno (EPERM outside a user namespace, ENOENT inside), the line says what failed.
    assert errors.describe(info.value) == f"mount shm on {target}: {os.strerror(info.value.errno)}"
    assert isinstance(info.value, OSError) and info.value.filename == "shm"


def test_a_failed_os_call_names_its_path(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "nothing")
    with pytest.raises(FileNotFoundError) as info:
        os.open(missing, os.O_RDONLY)
    assert errors.describe(info.value) == f"No such file or directory: {missing}"


def test_causes_are_kept_for_rl_debug(tmp_path: os.PathLike[str]) -> None:
    from rootless.build import dockerfile

    with pytest.raises(errors.DockerfileError) as info:
        dockerfile.read(os.path.join(tmp_path, "Dockerfile"))
    assert str(info.value).startswith("cannot read the Dockerfile")
    assert isinstance(info.value.__cause__, FileNotFoundError)
