"""Run a function in real processes that start together: spawn, barrier, reap in finally."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Sequence


def _trampoline(barrier, queue, fn, args):
    try:
        barrier.wait(timeout=60)
        queue.put(("ok", fn(*args)))
    except BaseException as exc:  # the parent reports it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_together(fn: Callable[..., Any], arg_sets: Sequence[tuple], timeout: float = 120) -> list:
    """Call ``fn(*args)`` in one spawned process per entry of ``arg_sets``, all released at once.

    Returns the results (order of completion). Raises AssertionError if any child failed.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(arg_sets))
    queue = ctx.Queue()
    procs = [ctx.Process(target=_trampoline, args=(barrier, queue, fn, args)) for args in arg_sets]
    try:
        for proc in procs:
            proc.start()
        outcomes = [queue.get(timeout=timeout) for _ in procs]
        for proc in procs:
            proc.join(timeout=timeout)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors
    return [detail for _, detail in outcomes]
