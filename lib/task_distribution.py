"""Split a task into sub-tasks that agents can run in parallel, only where the work really is independent.

The code is ``swarmfile/task_distribution.py``; this name stays at the top of ``lib/`` for operators
(``python lib/task_distribution.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import task_distribution``.
"""

import sys

from swarmfile import task_distribution as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import task_distribution` gives the package's module itself, not a copy
