"""Run a function in real processes that start together: spawn, barrier, reap in finally."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from typing import Any, Callable, Sequence

_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


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


def run_elsewhere(code: str, timeout: float = 60) -> None:
    """Run ``code`` (``claims`` imported) in a fresh process of the workspace in SWARM_ROOT: its
    writes reach no in-memory cache of the caller, as another agent's would."""
    subprocess.run([sys.executable, "-c", "import claims\n" + code], check=True, timeout=timeout,
                   env={**os.environ, "PYTHONPATH": _LIB})


def live_holder() -> str:
    """Keyword arguments (as source) naming this process as a lease's holder: a lease it names stays live."""
    from swarmfile.liveness import my_identity

    me = my_identity()
    return f"pid={me['pid']}, host={me['host']!r}, proc_start={me['proc_start']}"
