"""The flow text of simple values, written directly: what fileio's ``dump_flow`` tries before yaml.

An event append is dominated by fsync; after that by yaml's representer. Writing plain scalars,
single-quoted strings, numbers, lists and mappings directly is several times faster; anything
unusual (a key or word YAML would read as something else, a float in exponent form, a string with
characters that need escapes) returns None, and yaml writes it. The text reads back equal to the
value (tests check it against yaml's own reading) and is the same whatever was written before
(the caches below only skip work). One difference from yaml: a key of a str subclass equal to a
plain word, in a mapping whose keys were seen before, is written as that word (yaml refuses it).
"""

from __future__ import annotations

import re
from typing import Any, Optional

__all__ = ["flow_text"]

# A string YAML reads back as the same string when written bare: starts with a letter, holds
# only these characters, and is none of YAML 1.1's bool/null words.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NOT_PLAIN = frozenset("y Y n N yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF "
                       "null Null NULL".split())


# Short strings seen before that are written bare: an event's type, agent and task repeat on every line.
_PLAIN_WORDS: set[str] = set()
_PLAIN_WORDS_MAX = 4096


def _flow_str(value: str) -> Optional[str]:
    if value in _PLAIN_WORDS:
        return value
    if value[:1] in _LETTERS and _PLAIN.fullmatch(value) and value not in _NOT_PLAIN:  # (a time starts with a digit)
        if len(value) <= 128:
            if len(_PLAIN_WORDS) >= _PLAIN_WORDS_MAX:
                _PLAIN_WORDS.clear()  # a bound, not an LRU: the words in use come back at once
            _PLAIN_WORDS.add(value)
        return value
    if value.isprintable() and "\ufeff" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def flow_text(value: Any) -> Optional[str]:
    """``value`` as one line of flow-style YAML (what events are made of), or None to let yaml write it."""
    kind = type(value)
    if kind is dict:
        return _flow_dict(value)
    if kind is str:
        return _flow_str(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is float:
        text = repr(value)
        return text if "." in text and "e" not in text and "n" not in text else None
    if kind is list or kind is tuple:
        parts = [flow_text(item) for item in value]
        return None if None in parts else "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
    return None


# The keys of a mapping seen before (in order) -> the text before each value ("{timestamp: ", ", type: ", ...):
# every event of a loop has the same keys, and looking them up once cost less than a check of each key.
_HEADS: dict[tuple, tuple[str, ...]] = {}


def _flow_dict(value: dict) -> Optional[str]:
    if not value:
        return "{}"
    heads = _HEADS.get(tuple(value))
    if heads is None:
        heads = _heads(value)
        if heads is None:
            return None
    parts: list[str] = []
    add, plain = parts.append, _PLAIN_WORDS
    for head, item in zip(heads, value.values()):
        add(head)
        kind = type(item)
        if kind is str:  # the usual values, straight to their rule
            if item in plain:
                add(item)
                continue
            text = _flow_str(item)
        elif kind is int:
            add(str(item))
            continue
        else:
            text = flow_text(item)
        if text is None:
            return None
        add(text)
    add("}")
    return "".join(parts)


def _heads(value: dict) -> Optional[tuple[str, ...]]:
    """The text before each value of ``value`` (kept for the next mapping with its keys), or None if a key
    is not a plain word."""
    keys = tuple(value)
    for key in keys:
        if type(key) is not str or not _PLAIN.fullmatch(key) or key in _NOT_PLAIN:
            return None
    heads = ("{" + keys[0] + ": ",) + tuple(", " + key + ": " for key in keys[1:])
    if len(_HEADS) >= 4096:
        _HEADS.clear()  # a bound, not an LRU: the shapes in use come back at once
    _HEADS[keys] = heads
    return heads
