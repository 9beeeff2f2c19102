"""rootless.values: value classes behave as frozen dataclasses do, for the API rl uses."""
from __future__ import annotations

import pytest

from rootless.values import (
    FrozenInstanceError,
    asdict,
    field,
    fields,
    replace,
    valueclass,
)


@valueclass
class Point:
    x: int
    y: int = 0
    tags: dict[str, str] = field(default_factory=dict)


@valueclass
class Line:
    a: Point
    b: Point
    points: tuple[Point, ...] = ()


@valueclass
class Counted:
    name: str
    n: int


@valueclass(frozen=False)
class Counter:
    n: int = 0


def test_defaults_factories_and_keywords() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, {})
    assert Point(1).tags is not Point(1).tags, "a factory makes a new object each time"
    assert Point(y=2, x=1) == Point(1, 2)
    assert Point.y == 0 and [f.name for f in fields(Point)] == ["x", "y", "tags"]


def test_frozen_equal_hashable_and_printable() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p == Point(1, 2) and p != Point(2, 1) and p != (1, 2, {})
    assert hash(Counted("a", 1)) == hash(Counted("a", 1)) and len({Counted("a", 1), Counted("a", 1)}) == 1
    assert repr(p) == "Point(x=1, y=2, tags={})"


def test_mutable_values_are_not_hashable() -> None:
    c = Counter()
    c.n += 1
    assert c.n == 1
    with pytest.raises(TypeError):
        hash(c)


def test_bad_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing the argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument 'z'"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 3 arguments"):
        Point(1, 2, {}, 4)  # type: ignore[call-arg]


def test_asdict_and_replace() -> None:
    line = Line(Point(1), Point(2, 3), (Point(4),))
    assert asdict(line) == {"a": {"x": 1, "y": 0, "tags": {}}, "b": {"x": 2, "y": 3, "tags": {}},
                            "points": ({"x": 4, "y": 0, "tags": {}},)}
    moved = replace(line, b=Point(9))
    assert moved.b == Point(9) and moved.a is line.a and line.b == Point(2, 3)


def test_subclass_adds_fields_after_the_base_s() -> None:
    @valueclass
    class Point3(Point):
        z: int = 0

    assert [f.name for f in fields(Point3)] == ["x", "y", "tags", "z"]
    assert Point3(1, 2, {}, 3).z == 3


def test_field_without_default_after_a_default_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default"):
        @valueclass
        class Bad:
            a: int = 0
            b: int
