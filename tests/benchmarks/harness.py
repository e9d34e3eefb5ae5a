"""Measuring machinery shared by the benchmark rows: statistics, spawned worker gangs, fresh processes.

Not a test module (pytest collects only ``test_*.py``): ``run.py`` drives it.
"""

from __future__ import annotations

import cProfile
import multiprocessing as mp
import os
import platform
import sys
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

__all__ = ["percentile", "summary", "Gang", "in_fresh_process", "profiled", "machine", "loadavg"]

_CTX = mp.get_context("spawn")  # children never inherit locks, caches or open files
_BARRIER_TIMEOUT = 300  # a worker that never arrives is a bug, not a slow machine


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float], higher_is_better: bool) -> dict[str, Any]:
    """Median and the slow-tail 95th percentile of ``samples``.

    For a time the slow tail is the 95th percentile; for a rate it is the 5th, so "p95" is
    always the value that 95% of the runs did at least as well as.
    """
    return {
        "median": percentile(samples, 50),
        "p95": percentile(samples, 5 if higher_is_better else 95),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": list(samples),
    }


# ---------------------------------------------------------------------------- worker gangs


def _gang_main(index: int, inbox: Any, outbox: Any, barrier: Any) -> None:
    while True:
        job = inbox.get()
        if job is None:
            return
        fn, args = job
        try:
            outbox.put((index, "ok", fn(barrier, index, *args)))
        except BaseException:  # reported by the parent; free the others stuck at the barrier
            barrier.abort()
            outbox.put((index, "error", traceback.format_exc()))


class Gang:
    """``n`` spawned processes that run one job each per ``run`` call, released by a shared barrier.

    A job is a module-level function ``fn(barrier, index, *args)``: it prepares (opens files,
    warms caches), calls ``barrier.wait()``, then does the timed work and returns its result.
    The processes live across jobs, so spawning is paid once, not per run.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.barrier = _CTX.Barrier(n, timeout=_BARRIER_TIMEOUT)
        self.outbox = _CTX.Queue()
        self.inboxes = [_CTX.Queue() for _ in range(n)]
        self.procs = [_CTX.Process(target=_gang_main, args=(i, self.inboxes[i], self.outbox, self.barrier),
                                   daemon=True) for i in range(n)]
        for proc in self.procs:
            proc.start()

    def run(self, fn: Callable[..., Any], arg_sets: Sequence[tuple]) -> list[Any]:
        """Run ``fn`` once in every process (``arg_sets[i]`` in process i); results in process order."""
        if len(arg_sets) != self.n:
            raise ValueError(f"need {self.n} argument sets, got {len(arg_sets)}")
        for inbox, args in zip(self.inboxes, arg_sets):
            inbox.put((fn, tuple(args)))
        results: list[Any] = [None] * self.n
        errors = []
        for _ in range(self.n):
            index, status, value = self.outbox.get(timeout=_BARRIER_TIMEOUT + 600)
            if status == "error":
                errors.append(f"worker {index}: {value}")
            results[index] = value
        if errors:
            self.barrier.reset()
            raise RuntimeError("benchmark worker failed:\n" + "\n".join(errors))
        return results

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def __enter__(self) -> "Gang":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fresh_main(conn: Any, fn: Callable[..., Any], args: tuple) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def in_fresh_process(fn: Callable[..., Any], *args: Any, timeout: float = 300) -> Any:
    """``fn(*args)`` in a newly spawned interpreter (modules imported, nothing else warm)."""
    parent, child = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_fresh_main, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError(f"fresh process running {fn.__name__} did not answer in {timeout} s")
        status, value = parent.recv()
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status == "error":
        raise RuntimeError(f"fresh process running {fn.__name__} failed:\n{value}")
    return value


# ---------------------------------------------------------------------------- profiling


@contextmanager
def profiled(path: Optional[str]) -> Iterator[None]:
    """Profile the block with cProfile and write the stats to ``path``; no-op when ``path`` is empty."""
    if not path:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)


# ---------------------------------------------------------------------------- the machine


def _filesystem_of(path: str) -> Optional[str]:
    """The filesystem type holding ``path`` (from /proc/mounts), or None off Linux."""
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    real = os.path.realpath(path)
    best = None
    for fields in mounts:
        point = fields[1]
        if (real == point or real.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[0])):
            best = (point, fields[2])
    return best[1] if best else None


def loadavg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def machine(workdir: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import sqlite3

    try:
        import yaml

        libyaml = bool(getattr(yaml, "__with_libyaml__", False))
        yaml_version = yaml.__version__
    except ImportError:  # pragma: no cover - the runtime requires PyYAML
        libyaml, yaml_version = False, None
    return {
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "pyyaml": yaml_version,
        "libyaml": libyaml,
        "workdir_fs": _filesystem_of(workdir),
        "loadavg_at_start": loadavg(),
        "executable": sys.executable,
    }
