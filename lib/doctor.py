"""Workspace checks: every shared file, task, lease, reservation, worktree and log, and safe repairs.

The code is ``swarmfile/doctor.py``; this name stays at the top of ``lib/`` for operators
(``python lib/doctor.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import doctor``.
"""

import sys

from swarmfile import doctor as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import doctor` gives the package's module itself, not a copy
