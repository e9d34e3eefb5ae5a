"""``python -m swarmfile MODULE [ARGS...]``: a command line of an installed Swarmfile (no lib/ checkout).

``swarm`` (the console script) is ``python -m swarmfile swarm``; the loops and the MCP server
start their helpers this way when there is no ``lib/<module>.py`` beside the package.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# The command lines an operator or a loop runs, as in lib/<module>.py of a checkout.
COMMANDS = ("agent_discovery", "agent_memory", "agents", "chat", "claims", "dashboard", "doctor",
            "duplicate_detector", "events", "executor", "mcp_server", "merge_queue", "planner", "reservations",
            "sim_agent", "state_sync", "swarm", "task_distribution", "tmux_bridge", "work_items", "worktrees")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m swarmfile MODULE [ARGS...]\n\nmodules: " + " ".join(COMMANDS))
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"error: no command line {args[0]!r} (modules: {' '.join(COMMANDS)})", file=sys.stderr)
        return 2
    # Command lines kept apart from their modules: worktrees' (and merge_queue's), claims' (lean start-up)
    name = {"worktrees": "worktree_cli", "claims": "claims_cli"}.get(args[0], args[0])
    module = importlib.import_module(f"{__package__ or 'swarmfile'}.{name}")
    if not hasattr(module, "main"):
        from .cli import no_command_line

        return no_command_line(f"{args[0]}.py", "it is a library: import it from your loop")
    return module.main(args[1:])


def swarm() -> int:
    """The ``swarm`` console script: the operator CLI."""
    return main(["swarm", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
