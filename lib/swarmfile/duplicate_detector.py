"""Near-duplicate task detection: is a new task too close to an open or finished one?

Similarity is the Jaccard index of keyword sets (lowercase words, stopwords dropped, a
plural ``s`` trimmed). A task is compared twice, title against title and title+objective
against title+objective (when the candidate has text), and the higher score counts, so a
task with the same title is caught even when it is worded differently below. The threshold
is ``duplicates.threshold`` in swarm.yaml (0.8 by default).
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import chain
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from . import task_store
from .config import load_config
from .errors import DuplicateTaskError, ValidationError
from .tasks import Task

__all__ = ["Match", "keywords", "similarity", "find_duplicates", "DuplicateIndex", "duplicate_threshold", "is_duplicate",
           "check_new_task", "main"]

PathLike = Union[str, "os.PathLike[str]"]

_WORD = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_STOPWORDS = frozenset("""
a an the and or but nor of to in on at by for with from into onto via as is are was were be been
being this that these those it its it's their there here we you i our your not no yes do does did
so such than then too very can could should would will shall may might must also just only any all
each every some about over under up down out off per vs etc e.g i.e using use new task""".split())


def _stem(word: str) -> str:
    # Plurals only: "issues"/"issue", "mismatches"/"mismatch", "entries"/"entry" meet;
    # "status", "class", "analysis" stay whole.
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1]


def keywords(text: str) -> frozenset[str]:
    """The keyword set of ``text``: lowercase word tokens without stopwords, plural ``s`` trimmed."""
    return frozenset(_stem(w) for w in _WORD.findall(text.lower())
                     if w not in _STOPWORDS and (len(w) > 1 or w.isdigit()))


def similarity(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard index of two keyword sets (0.0 when both are empty)."""
    # Sets as they are, not copied: a planner's round compares many keyword sets.
    left = a if isinstance(a, (set, frozenset)) else set(a)
    right = b if isinstance(b, (set, frozenset)) else set(b)
    shared = len(left & right)
    union = len(left) + len(right) - shared
    return shared / union if union else 0.0


@dataclass(frozen=True)
class Match:
    """An existing task close to the candidate."""

    task_id: str
    path: Optional[Path]
    similarity: float
    status: Optional[str]
    title: str = ""

    def to_dict(self) -> dict:
        return {"task_id": self.task_id, "path": str(self.path) if self.path else None,
                "similarity": round(self.similarity, 4), "status": self.status, "title": self.title}


def _threshold(value: Optional[float], root: Optional[PathLike]) -> float:
    cfg = load_config(root=root)
    if value is None:
        value = cfg.get("duplicates", "threshold")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 < number <= 1.0:
        raise ValidationError(f"duplicate threshold must be a number in (0, 1], got {value!r}",
                              hint="set duplicates.threshold in swarm.yaml or pass --threshold")
    return number


def duplicate_threshold(*, root: Optional[PathLike] = None) -> float:
    """The similarity at which a task counts as a near-duplicate: ``duplicates.threshold`` in swarm.yaml."""
    return _threshold(None, root)


def find_duplicates(title: str, text: str = "", *, root: Optional[PathLike] = None, threshold: Optional[float] = None,
                    exclude: Sequence[PathLike] = (), errors: Optional[list] = None) -> list[Match]:
    """Open and completed tasks at least ``threshold`` similar to ``title`` (+ ``text``), closest first.

    ``exclude``: task files to leave out (the task being checked). A task file that does not
    parse raises its ParseError unless ``errors`` is a list to collect it in.
    """
    # Through the task index, which holds each task's title and objective: in a new process (a
    # new-task command) only the files changed since it was written are read.
    listing = task_store.indexed_listing(load_config(root=root), errors)
    return DuplicateIndex(listing, _threshold(threshold, root)).find(title, text, exclude=exclude)


class DuplicateIndex:
    """The keyword sets of a listing's tasks, indexed so that a check compares only the tasks that
    can reach the threshold: what comparing with every task finds, without comparing with every task.

    A planner checks each new task against all the others; compared one by one, a first round over
    N tasks cost N² keyword extractions (a planner took 2 minutes at 1,000 tasks). Here each task's
    keywords are taken once, and a check looks up, per keyword, the tasks that have it.

    Why it is exact (prefix filtering): a task B is at least ``limit`` similar to A only if
    |A ∩ B| >= limit·|A ∪ B| >= limit·|A|, so at most d = |A| - ⌈limit·|A|⌉ of A's keywords are
    missing from B, and any k of them include k - d of B's. A check takes 2·d + 1 of A's keywords, the
    rarest first (the fewest tasks to look at), and scores only the tasks that have d + 1 of them,
    with ``similarity`` as before.

    ``previous``: an index of an earlier listing, whose keyword sets are reused for the very same
    task objects (a listing gives the same object for a file that did not change).
    """

    def __init__(self, listing: Sequence[Task], limit: float, previous: Optional["DuplicateIndex"] = None) -> None:
        self.limit = limit
        self.tasks = list(listing)
        known = previous._words if previous is not None else {}
        self._words: dict[Task, tuple[frozenset, Optional[frozenset]]] = {}
        self._by_title: dict[str, list[int]] = {}
        self._by_full: dict[str, list[int]] = {}
        self._real: dict[int, str] = {}
        for n, task in enumerate(self.tasks):
            words = known.get(task)
            if words is None:
                title = keywords(task.title)
                objective = task.objective
                # Only a task with an objective is compared title+objective against title+objective.
                words = (title, title | keywords(objective) if objective else None)
            self._words[task] = words
            for word in words[0]:
                self._by_title.setdefault(word, []).append(n)
            for word in words[1] or ():
                self._by_full.setdefault(word, []).append(n)

    def find(self, title: str, text: str = "", *, exclude: Sequence[PathLike] = ()) -> list[Match]:
        """The tasks at least ``limit`` similar to ``title`` (+ ``text``), closest first (see ``find_duplicates``)."""
        title_words = keywords(title)
        full_words = title_words | keywords(text) if text.strip() else None
        places = self._probe(title_words, self._by_title)
        if full_words is not None:
            places |= self._probe(full_words, self._by_full)
        skipped = {os.path.realpath(p) for p in exclude}
        found: list[Match] = []
        for n in sorted(places):  # in listing order, as the sort below keeps ties
            task = self.tasks[n]
            if skipped and task.path is not None and self._real_path(n) in skipped:
                continue
            their_title, their_full = self._words[task]
            score = similarity(title_words, their_title)
            if full_words is not None and their_full is not None:
                score = max(score, similarity(full_words, their_full))
            if score >= self.limit:
                status = task.status.value if task.status else task.status_text
                found.append(Match(task.task_id, task.path, score, status, task.title))
        found.sort(key=lambda m: (-m.similarity, m.task_id))
        return found

    def _real_path(self, n: int) -> str:
        """``os.path.realpath`` of task ``n``'s file, once per index (a planner checks many tasks against it)."""
        real = self._real.get(n)
        if real is None:
            real = self._real[n] = os.path.realpath(self.tasks[n].path)
        return real

    def _probe(self, words: frozenset, index: dict[str, list[int]]) -> set[int]:
        """The places of the tasks that may be ``limit`` similar to ``words`` (A): of A's 2·d + 1 rarest
        keywords, where d = |A| - ⌈limit·|A|⌉ may be missing from a match, those holding d + 1."""
        if not words:
            return set()  # nothing is similar to no keywords at all (similarity 0)
        # ⌈limit·|A|⌉, by a hair below against float error (4.000000001 must round to 4, never 5:
        # one keyword too few assumed missing could miss a match; one too many costs a little).
        missing = len(words) - max(0, math.ceil(self.limit * len(words) - 1e-9))
        # Any k of A's keywords include k - d of a match's: with k = d + 1 the prefix filter; with
        # 2·d + 1, a task sharing a keyword or two by chance (common words, at 10,000 tasks) is dropped
        # here, uncompared.
        probe = sorted(words, key=lambda word: (len(index.get(word, ())), word))[:2 * missing + 1]
        need = len(probe) - missing
        hits = Counter(chain.from_iterable(index.get(word, ()) for word in probe))
        return {n for n, count in hits.items() if count >= need}


def is_duplicate(title: str, text: str = "", *, root: Optional[PathLike] = None,
                 threshold: Optional[float] = None, **options) -> bool:
    """Whether any open or completed task is a near-duplicate (see ``find_duplicates``)."""
    return bool(find_duplicates(title, text, root=root, threshold=threshold, **options))


def check_new_task(title: str, text: str = "", *, root: Optional[PathLike] = None,
                   threshold: Optional[float] = None) -> None:
    """Raise DuplicateTaskError naming the closest existing task when the new one is a near-duplicate."""
    matches = find_duplicates(title, text, root=root, threshold=threshold)
    if matches:
        best = matches[0]
        raise DuplicateTaskError(
            f"{title[:80]!r} is {best.similarity:.0%} similar to {best.task_id} ({best.status})",
            path=best.path, task_id=best.task_id, hint="extend the existing task instead, or reword")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .cli import EXIT_CHECK_FAILED, fail, parser, print_json, run

    p = parser("duplicate_detector.py", "List existing tasks that are near-duplicates of a title (exit 1 if any).",
               needs_workspace=lambda args: not args.task)
    p.add_argument("title", nargs="?", help="title of the task to check")
    p.add_argument("--text", default="", help="objective / description of the task to check")
    p.add_argument("--task", metavar="FILE", help="check this existing task file against the others")
    p.add_argument("--threshold", type=float, metavar="X", help="similarity in (0, 1] (default: swarm.yaml, 0.8)")
    args = p.parse_args(argv)
    if bool(args.title) == bool(args.task):
        return fail("give either a title or --task FILE")

    def body() -> int:
        title, text, exclude = args.title or "", args.text, []
        root = args.root
        if args.task:
            root = task_store.task_workspace(args.task, root=root)
            task = task_store.load_task(args.task, use_cache=False)
            title, text, exclude = task.title, task.objective, [task.path]
            root = root or task_store.task_config(task.path).root
        skipped: list = []  # one unparsable historical file must not stop every check
        matches = find_duplicates(title, text, root=root, threshold=args.threshold, exclude=exclude, errors=skipped)
        for error in skipped:
            print(f"warning: skipped a task file that does not parse: {error}", file=sys.stderr)
        if args.json:
            print_json({"title": title, "threshold": _threshold(args.threshold, root),
                        "duplicate": bool(matches), "matches": [m.to_dict() for m in matches]})
        elif not matches:
            print("no near-duplicates")
        else:
            width = max(len(m.task_id) for m in matches)
            for m in matches:
                print(f"{m.similarity:5.0%}  {m.task_id:<{width}}  {m.status or '?':<11}  {m.title[:70]}")
        return EXIT_CHECK_FAILED if matches else 0

    return run(body)
