"""The planner loop: keep the task queue healthy and hand work to idle executors.

The code is ``swarmfile/planner.py``; this name stays at the top of ``lib/`` for operators
(``python lib/planner.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import planner``.
"""

import sys

from swarmfile import planner as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import planner` gives the package's module itself, not a copy
