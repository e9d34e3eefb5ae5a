"""The merge queue: finished task branches merge into the base branch one at a time, in completion order.

The code is ``swarmfile/merge_queue.py``; this name stays at the top of ``lib/`` for operators
(``python lib/merge_queue.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import merge_queue``.
"""

import sys

from swarmfile import merge_queue as _module

if __name__ == "__main__":
    from swarmfile import cli

    raise SystemExit(cli.no_command_line("merge_queue.py", "use: python lib/worktrees.py enqueue|merge|queue"))
sys.modules[__name__] = _module  # `import merge_queue` gives the package's module itself, not a copy
