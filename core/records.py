"""The shape shared by commands and events: frozen slotted dataclasses with a stable code.

Strategy: a record's canonical form is the tuple `(CODE, field_1, field_2, ...)` in the
declared field order, which msgpack packs the same way on every machine. The engine reads
commands and writes events in that form directly (building a dataclass per event would
cost more than matching the order), and `from_canonical` turns any canonical tuple back
into its dataclass, checking arity and field types, so the two forms are one format.
Field types are only `int`, `str` and `bytes`; a bool is not an int here.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, ClassVar

_TYPES_BY_NAME = {"int": int, "str": str, "bytes": bytes}


class RecordError(ValueError):
    """A canonical tuple that is not a valid record of its registry."""


class Record:
    """Base of every command and event; subclasses are made by `Registry.define`."""

    __slots__ = ()
    CODE: ClassVar[int]
    FIELDS: ClassVar[tuple[str, ...]]
    TYPES: ClassVar[tuple[type, ...]]
    _getter: ClassVar[Callable[[Any], Any]]

    def to_canonical(self) -> tuple[Any, ...]:
        values = self._getter(self)
        if len(self.FIELDS) == 1:
            values = (values,)
        # IntEnum members (Side.BUY_YES) are written as the plain ints they stand for.
        return (self.CODE, *(_plain(value) for value in values))


def _plain(value: Any) -> Any:
    if isinstance(value, int) and type(value) is not int and type(value) is not bool:
        return int(value)
    return value


class Registry:
    """Codes to record classes, for one family (commands or events)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.by_code: dict[int, type[Record]] = {}
        self.by_name: dict[str, type[Record]] = {}

    def define(self, code: int) -> Callable[[type], type]:
        def wrap(cls: type) -> type:
            assert code not in self.by_code, f"{self.family} code {code} used twice"
            cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
            fields = tuple(field.name for field in dataclasses.fields(cls))
            assert fields, f"{cls.__name__} has no fields"
            cls.CODE = code
            cls.FIELDS = fields
            cls.TYPES = tuple(_TYPES_BY_NAME[str(field.type)] for field in dataclasses.fields(cls))
            cls._getter = operator.attrgetter(*fields)
            self.by_code[code] = cls
            self.by_name[cls.__name__] = cls
            return cls

        return wrap

    def from_canonical(self, value: Any) -> Record:
        """The record for a canonical tuple (or msgpack list); RecordError if it is not one."""
        if type(value) not in (tuple, list) or not value:
            raise RecordError(f"{self.family} must be a non-empty array")
        code = value[0]
        cls = self.by_code.get(code) if type(code) is int else None
        if cls is None:
            raise RecordError(f"unknown {self.family} code {code!r}")
        if len(value) != len(cls.FIELDS) + 1:
            raise RecordError(
                f"{cls.__name__} takes {len(cls.FIELDS)} fields, got {len(value) - 1}"
            )
        for name, expected, got in zip(cls.FIELDS, cls.TYPES, value[1:], strict=True):
            if type(got) is not expected:
                raise RecordError(
                    f"{cls.__name__}.{name} must be {expected.__name__}, got {type(got).__name__}"
                )
        return cls(*value[1:])
