"""The base of every stored record: a dataclass kept as a mapping that never loses a key.

A lease, a heartbeat entry, a chat message, a reservation, a queue entry, a worktree record and an
agent's context are each read from a mapping and written back as one. The file may have been
written by a newer Swarmfile or by hand and carry keys this version does not know: a record keeps
them in ``extra`` and writes them back after its own fields, so reading and rewriting never drops
one. Each record still checks its own values in its ``from_dict``; what they share is here:

- ``split(data)``: the values of the known keys (by field name) and the unknown ones;
- ``to_dict()``: the known fields in their stored order and names (an enum as its value, a tuple or
  list as a new list, a path as text; a None left out where the record says so), then ``extra``.
"""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from pathlib import PurePath
from typing import Any, ClassVar, Mapping

__all__ = ["Record"]


def _stored(value: Any) -> Any:
    """A field's value as YAML and JSON can hold it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):  # a copy: the mapping must not share a list with the record
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    return value


class Record:
    """Mixin for a dataclass with an ``extra: dict`` field (see the module docstring)."""

    # Fields that are never stored (besides ``extra``), e.g. a worktree's workspace root.
    UNSTORED: ClassVar[tuple[str, ...]] = ()
    # A field stored under another key, e.g. a message's ``from_agent`` under ``from``.
    STORED_AS: ClassVar[Mapping[str, str]] = {}
    # The order the fields are written in, when it is not the order they are declared in.
    STORED_ORDER: ClassVar[tuple[str, ...]] = ()
    # Leave out a field whose value is None (else it is written as null).
    OMIT_NONE: ClassVar[bool] = False

    @classmethod
    def stored_fields(cls) -> tuple[str, ...]:
        """The field names that are stored, in the order they are written."""
        cached = cls.__dict__.get("_stored_fields_cache")
        if cached is None:
            declared = [f.name for f in fields(cls) if f.name != "extra" and f.name not in cls.UNSTORED]
            cached = tuple(cls.STORED_ORDER) or tuple(declared)
            cls._stored_fields_cache = cached  # type: ignore[attr-defined]  # per class, not inherited
        return cached

    @classmethod
    def split(cls, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(known values by field name, the keys this version does not know) of a stored mapping."""
        by_key = {cls.STORED_AS.get(name, name): name for name in cls.stored_fields()}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in by_key:
                known[by_key[key]] = value
            else:
                extra[key] = value
        return known, extra

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.stored_fields():
            value = getattr(self, name)
            if value is None and self.OMIT_NONE:
                continue
            data[self.STORED_AS.get(name, name)] = _stored(value)
        data.update(self.extra)  # type: ignore[attr-defined]
        return data
