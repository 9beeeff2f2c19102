"""Hostile tars: extraction either works or raises LayerError, never writes outside its target,
and always leaves a tree the user can delete."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootless.errors import LayerError
from rootless.image.extract import extract_layer
from rootless.store.trees import remove_tree
from tests.unit.image.tars import OneWay, snapshot

# Plain names weigh more, so that the hostile ones meet trees worth attacking; whiteout names
# are mostly last, since anything under one is refused outright.
PLAIN = ["a"] * 6 + ["b"] * 6 + ["c"] * 3 + ["..", ".", "", "dest", "outside", "sentinel", "ü", "x\x00y"]
LAST = PLAIN + [".wh.a", ".wh.b", ".wh.c", ".wh..wh..opq", ".wh.", ".wh..wh.plnk"]
# "@OUT" and "@BASE" become absolute paths next to and above the target.
TARGETS = ["/", "..", "../..", "../outside", "../../sentinel", "/etc", "/tmp", "a", "a/b", ".", "", "@OUT",
           "@OUT/secret", "@BASE", "../dest/a"]
KINDS = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE,
         tarfile.CONTTYPE]

names = st.builds(lambda lead, parents, last: ("/" if lead else "") + "/".join(parents + [last]),
                  st.booleans(), st.lists(st.sampled_from(PLAIN + [".wh.a"]), max_size=4), st.sampled_from(LAST))
entries = st.tuples(
    names,
    st.sampled_from(KINDS),
    st.binary(max_size=64),
    st.sampled_from([0o644, 0o755, 0o000, 0o4755, 0o1777, 0o111]),
    st.sampled_from([0, 1000, 65534]),
    st.one_of(st.sampled_from(TARGETS), names),
)
damage = st.sampled_from(["none", "none", "none", "cut", "flip"]).flatmap(lambda how: {
    "none": st.none(),
    "cut": st.tuples(st.just("cut"), st.integers(min_value=0, max_value=1 << 20)),
    "flip": st.tuples(st.just("flip"), st.integers(min_value=0, max_value=1 << 20),
                      st.integers(min_value=1, max_value=255)),
}[how])


def build(items: list[tuple[Any, ...]], base: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode, uid, target in items:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid = kind, mode, uid, uid
            ti.linkname = target.replace("@OUT", str(base / "outside")).replace("@BASE", str(base))
            payload = None
            if kind in (tarfile.REGTYPE, tarfile.CONTTYPE):
                ti.size = len(data)
                payload = io.BytesIO(data)
            tf.addfile(ti, payload)
    return buf.getvalue()


def spoil(data: bytes, how: tuple[Any, ...] | None) -> bytes:
    if how is None:
        return data
    if how[0] == "cut":
        return data[:how[1] % (len(data) + 1)]
    b = bytearray(data)
    b[how[1] % len(b)] ^= how[2]
    return bytes(b)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(entries, max_size=12), how=damage)
def test_hostile_layers_stay_inside(tmp_path_factory: pytest.TempPathFactory, items: list[tuple[Any, ...]],
                                    how: tuple[Any, ...] | None) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    dest = base / "sentinel" / "dest"
    dest.mkdir(parents=True)
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_text("keep")
    (base / "sentinel" / "a").mkdir()
    before = snapshot(base, skip=dest)
    data = spoil(build(items, base), how)
    try:
        extract_layer(OneWay(data, step=4096), dest, owners="xattr")  # type: ignore[arg-type]
    except LayerError:
        pass
    assert snapshot(base, skip=dest) == before
    remove_tree(dest)
    assert not dest.exists()
    remove_tree(base)
