"""A git worktree per claimed task: create, commit, list, remove, clean up; CLI for the merge queue too.

The code is ``swarmfile/worktrees.py``; this name stays at the top of ``lib/`` for operators
(``python lib/worktrees.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import worktrees``.
"""

import sys

from swarmfile import worktrees as _module

if __name__ == "__main__":
    from swarmfile import worktree_cli  # the command line of worktrees and the merge queue

    raise SystemExit(worktree_cli.main())
sys.modules[__name__] = _module  # `import worktrees` gives the package's module itself, not a copy
