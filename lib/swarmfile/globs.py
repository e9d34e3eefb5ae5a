"""Repo-relative glob patterns: what a pattern matches, and whether two patterns can overlap.

Syntax, applied to ``/``-separated paths relative to the repository root:

- ``*`` is any text, ``?`` one character and ``[...]`` one character of a set (``[!...]``
  negates it); all three stay inside one path component and never match ``/``.
- ``**`` as a whole component spans zero or more directories (``a/**/b`` matches ``a/b``
  and ``a/x/y/b``; ``lib/**`` all beneath ``lib``); elsewhere it is any text, ``/`` included.
- A pattern without wildcards also covers everything beneath it: ``lib`` matches
  ``lib/x/y.py``, so naming a directory names its contents.
- A trailing ``/`` means ``/**``; ``./``, ``.`` and doubled slashes are dropped
  (``normalize_pattern``). Absolute paths and ``..`` are refused.
- Dot files are not special. A name holding ``*``, ``?`` or ``[`` is written with them
  bracketed (``odd[[]1].py``; ``escape`` does this).

Overlap rule (``patterns_overlap``): two patterns overlap when one path could match both.
Patterns are regular languages, so this is decided exactly by walking both automata in step.
It errs toward "overlap" only for strings no normalised path has (empty components) and for
character ranges wider than 4096 code points. It compares spellings only: two names for one
file (a symlinked directory, a hard link, a case-insensitive file system) are the caller's
concern.

Errors: ValidationError (a SwarmError) for a pattern or a task file line that is not a
repo-relative path.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .errors import ValidationError

__all__ = ["Glob", "compile_pattern", "escape", "normalize_pattern", "pattern_matches",
           "patterns_overlap", "patterns_for_task"]


def normalize_pattern(pattern: Any) -> str:
    """``pattern`` as stored: ``./``, ``.`` and doubled slashes dropped, a trailing ``/`` as ``/**``.

    ValidationError for an absolute path, a ``..`` component or an empty pattern.
    """
    if not isinstance(pattern, str):
        raise ValidationError(f"a pattern must be a string, got {type(pattern).__name__}")
    text = pattern.strip()
    if not text or any(ch in text for ch in "\x00\n\r"):
        raise ValidationError(f"a pattern must be one non-empty line, got {pattern!r:.80}")
    fix = "use a path relative to the repository root"
    if text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", text):
        raise ValidationError(f"pattern {text!r:.80} is absolute", hint=fix)
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValidationError(f"pattern {text!r:.80} climbs out with '..'", hint=fix)
    if not parts:
        raise ValidationError(f"pattern {text!r:.80} names nothing",
                              hint="use ** for the whole repository")
    if text.endswith("/") and parts[-1] != "**":
        parts.append("**")
    return "/".join(parts)


# A predicate on one character: (chars, negated) matches those chars, or (negated) all others.
_Pred = tuple[frozenset, bool]
_ANY: _Pred = (frozenset(), True)
_NOT_SLASH: _Pred = (frozenset("/"), True)
_SLASH: _Pred = (frozenset("/"), False)
_MAX_RANGE = 4096  # a wider [x-y] range counts as "any char but /" when deciding overlap


@dataclass(frozen=True)
class Glob:
    """A compiled pattern: its tokens for the overlap automaton and a regex for matching."""

    tokens: tuple  # ("char", pred) | ("star",) | ("dstar",) | ("dirs",) | ("subtree",)
    regex: "re.Pattern[str]"
    literal: bool
    deep: bool  # may match at any depth (**, or a literal's subtree)


def _class_at(p: str, i: int) -> Optional[tuple[_Pred, str, int]]:
    """The ``[...]`` at ``p[i]`` as (predicate, regex, index after it); None when unclosed."""
    negated = p[i + 1:i + 2] == "!"
    start = j = i + 1 + negated
    end = p.find("]", j + (p[j:j + 1] == "]"))  # a ']' first is a member, not the end
    if end < 0:
        return None
    body, chars, wide, pieces, k = p[start:end], set(), False, [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if ord(hi) - ord(lo) > _MAX_RANGE:
                wide = True
            elif lo <= hi:
                chars.update(map(chr, range(ord(lo), ord(hi) + 1)))
            if lo <= hi:  # like fnmatch: a reversed range matches nothing
                pieces.append(f"{re.escape(lo)}-{re.escape(hi)}")
            k += 3
        else:
            chars.add(body[k])
            pieces.append(re.escape(body[k]))
            k += 1
    # A class never matches '/': it stands for one character of one path component.
    if negated:
        return (frozenset(chars | {"/"}), True), "[^/" + "".join(pieces) + "]", end + 1
    pred = _NOT_SLASH if wide else (frozenset(chars - {"/"}), False)
    return pred, ("(?!/)[" + "".join(pieces) + "]" if pieces else "(?!)"), end + 1


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Glob:
    """The normalised ``pattern`` compiled (cached)."""
    tokens: list[tuple] = []
    regex: list[str] = []

    def emit(token: tuple, fragment: str) -> None:
        tokens.append(token)
        regex.append(fragment)

    i, n, magic = 0, len(pattern), False
    while i < n:
        ch, j = pattern[i], i + 1
        found = _class_at(pattern, i) if ch == "[" else None
        if ch == "*":
            while j < n and pattern[j] == "*":
                j += 1
            whole = (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/")
            if j - i == 1:
                emit(("star",), "[^/]*")
            elif whole and j < n:  # "**/": zero or more whole directories
                emit(("dirs",), "(?:.*/)?")
                j += 1
            else:
                emit(("dstar",), ".*")
        elif ch == "?":
            emit(("char", _NOT_SLASH), "[^/]")
        elif found is not None:
            emit(("char", found[0]), found[1])
            j = found[2]
        else:
            emit(("char", (frozenset(ch), False)), re.escape(ch))
        magic = magic or ch in "*?" or found is not None
        i = j
    if not magic:
        emit(("subtree",), "(?:/.*)?")
    deep = not magic or any(t[0] in ("dstar", "dirs") for t in tokens)
    return Glob(tuple(tokens), re.compile("".join(regex), re.DOTALL), not magic, deep)


def escape(path: str) -> str:
    """``path`` with ``*``, ``?`` and ``[`` bracketed, so that each stands for itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether the normalised ``pattern`` covers the repo-relative ``path``."""
    return compile_pattern(pattern).regex.fullmatch(path) is not None


def _nfa(glob: Glob) -> tuple[list, list, int]:
    """(edges, epsilon moves, accepting state) of an automaton for ``glob``, starting at 0."""
    edges: list[list[tuple[_Pred, int]]] = [[]]
    eps: list[list[int]] = [[]]

    def new() -> int:
        edges.append([])
        eps.append([])
        return len(edges) - 1

    cur = 0
    for token in glob.tokens:
        kind, out = token[0], new()
        if kind == "char":
            edges[cur].append((token[1], out))
        elif kind in ("star", "dstar"):  # a fresh looping state, so two loops never mix
            eps[cur].append(out)
            edges[out].append((_NOT_SLASH if kind == "star" else _ANY, out))
        elif kind == "dirs":  # empty, or anything ending with '/'
            loop = new()
            eps[cur] += [out, loop]
            edges[loop] += [(_ANY, loop), (_SLASH, out)]
        else:  # subtree: empty, or '/' and anything
            loop = new()
            eps[cur].append(out)
            edges[cur].append((_SLASH, loop))
            edges[loop].append((_ANY, loop))
            eps[loop].append(out)
        cur = out
    return edges, eps, cur


def _meet(a: _Pred, b: _Pred) -> bool:
    """Whether some character satisfies both predicates (the alphabet is unbounded)."""
    if a[1] and b[1]:
        return True
    if not a[1] and not b[1]:
        return bool(a[0] & b[0])
    pos, neg = (a, b) if not a[1] else (b, a)
    return bool(pos[0] - neg[0])


@functools.lru_cache(maxsize=4096)
def patterns_overlap(first: str, second: str) -> bool:
    """Whether some path could match both normalised patterns (see the module docstring)."""
    ea, pa, acc_a = _nfa(compile_pattern(first))
    eb, pb, acc_b = _nfa(compile_pattern(second))
    seen, todo = {(0, 0)}, [(0, 0)]
    while todo:
        x, y = todo.pop()
        if x == acc_a and y == acc_b:
            return True
        step = [(t, y) for t in pa[x]] + [(x, t) for t in pb[y]]
        step += [(tx, ty) for ca, tx in ea[x] for cb, ty in eb[y] if _meet(ca, cb)]
        todo += [pair for pair in step if pair not in seen]
        seen.update(step)
    return False


_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
_TICKED = re.compile(r"`([^`]+)`")
_NOTE = re.compile(r"(?:\s+\(.*|\s+[-\u2013\u2014]\s.*|:\s.*)$")


def patterns_for_task(files: Iterable[str]) -> list[str]:
    """Normalised, de-duplicated patterns for the lines of a task's "Files to Modify" section.

    Lines are taken as people write them: a list bullet, `backticks` and a trailing note
    (``lib/x.py (new)``, ``lib/x.py - why``, ``lib/x.py: why``) are dropped, blank lines
    skipped. ValidationError for an absolute path or one that climbs with ``..``.
    """
    if isinstance(files, (str, bytes)):
        raise ValidationError("files must be a list of paths, not one string")
    found = []
    for raw in files:
        if not isinstance(raw, str):
            raise ValidationError(f"a file entry must be a string, got {type(raw).__name__}")
        text = _BULLET.sub("", raw).strip()
        ticked = _TICKED.search(text)
        text = (ticked.group(1) if ticked else _NOTE.sub("", text)).strip().strip("'\"")
        if text:
            found.append(normalize_pattern(text))
    return list(dict.fromkeys(found))
