"""The executor loop: claim ready tasks one at a time and run an agent CLI on each.

The code is ``swarmfile/executor.py``; this name stays at the top of ``lib/`` for operators
(``python lib/executor.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import executor``.
"""

import sys

from swarmfile import executor as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import executor` gives the package's module itself, not a copy
