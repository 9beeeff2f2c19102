"""Value classes: what `dataclasses.dataclass` makes, built without generating code.

The standard decorator compiles six small functions per class with exec() and imports inspect
(with ast, dis and tokenize) to do it: about 0.4 ms a class and 5 ms of imports, paid by every
`rl run` for the ~20 classes on its path (a tenth of its start time). Here the methods are shared
and read the class's field list, so making a class costs a few microseconds. The API is the
subset rl uses: `@valueclass` (frozen) or `@valueclass(frozen=False)`, `field(default_factory=...)`,
`asdict`, `replace`, `fields`.
"""
from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    pass


class Field:
    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    def make_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    return Field(default, default_factory)


def fields(obj_or_cls: Any) -> tuple[Field, ...]:
    return obj_or_cls.__value_fields__  # type: ignore[no-any-return]


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls_fields: tuple[Field, ...] = self.__value_fields__
    if len(args) > len(cls_fields):
        raise TypeError(f"{type(self).__name__}() takes {len(cls_fields)} arguments, {len(args)} given")
    setter = object.__setattr__
    for i, f in enumerate(cls_fields):
        if i < len(args):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for {f.name!r}")
            setter(self, f.name, args[i])
        elif f.name in kwargs:
            setter(self, f.name, kwargs.pop(f.name))
        elif f.default is not _MISSING or f.default_factory is not None:
            setter(self, f.name, f.make_default())
        else:
            raise TypeError(f"{type(self).__name__}() is missing the argument {f.name!r}")
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got an unexpected argument {sorted(kwargs)[0]!r}")
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _astuple(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in self.__value_fields__)


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__value_fields__)
    return f"{type(self).__qualname__}({inner})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _astuple(self) == _astuple(other)


def _hash(self: Any) -> int:
    return hash(_astuple(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _make(cls: type[T], frozen: bool) -> type[T]:
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__value_fields__", ()):
            inherited[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            continue
        raw = cls.__dict__.get(name, _MISSING)
        f = raw if isinstance(raw, Field) else Field(raw)
        f.name = name
        if isinstance(raw, Field):
            # A plain default stays readable on the class, as with dataclasses; a factory does not.
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        inherited[name] = f
    cls_fields = tuple(inherited.values())
    seen_default = False
    for f in cls_fields:
        has_default = f.default is not _MISSING or f.default_factory is not None
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: field {f.name!r} without a default follows one with a default")
        seen_default = seen_default or has_default
    setattr(cls, "__value_fields__", cls_fields)
    setattr(cls, "__match_args__", tuple(f.name for f in cls_fields))
    for name, fn in (("__init__", _init), ("__repr__", _repr), ("__eq__", _eq)):
        if name not in cls.__dict__:
            setattr(cls, name, fn)
    if frozen:
        setattr(cls, "__setattr__", _frozen_setattr)
        setattr(cls, "__delattr__", _frozen_delattr)
        setattr(cls, "__hash__", _hash)
    else:
        setattr(cls, "__hash__", None)
    return cls


def valueclass(cls: type[T] | None = None, /, *, frozen: bool = True) -> Any:
    """Class decorator: `@valueclass` for an immutable value, `@valueclass(frozen=False)` for a mutable one."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def asdict(obj: Any) -> Any:
    """Values (recursively, inside lists, tuples and dicts too) as plain dicts."""
    if hasattr(type(obj), "__value_fields__"):
        return {f.name: asdict(getattr(obj, f.name)) for f in obj.__value_fields__}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {k: asdict(v) for k, v in obj.items()}
    return obj


def replace(obj: T, **changes: Any) -> T:
    kwargs = {f.name: getattr(obj, f.name) for f in obj.__value_fields__}  # type: ignore[attr-defined]
    kwargs.update(changes)
    return type(obj)(**kwargs)
