"""Start an agent CLI tied to the life of its executor: ``python launch.py PARENT_PID -- CMD ARGS...``.

agents.AgentProcess runs every agent through this script. The agent runs in its own session
(so a timeout can kill its whole group), which also means nothing stops it when the executor
is killed with -9: this script asks Linux to send it SIGTERM when its parent dies
(PR_SET_PDEATHSIG, which survives exec), then execs the agent in its place. It imports nothing
of the package: it runs by path, once per agent run.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Sequence


def _launch(parent_pid: int, argv: Sequence[str]) -> int:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG; it survives exec
        if os.getppid() != parent_pid:  # the executor died before we could ask
            return 128 + int(signal.SIGTERM)
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        print(f"could not start {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: launch.py PARENT_PID -- CMD [ARGS...]", file=sys.stderr)
        return 2
    return _launch(int(args[0]), args[2:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
