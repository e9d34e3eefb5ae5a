"""The live dashboard of a workspace: agents, tasks, leases, reservations, merge queue, events.

The code is ``swarmfile/dashboard.py``; this name stays at the top of ``lib/`` for operators
(``python lib/dashboard.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import dashboard``.
"""

import sys

from swarmfile import dashboard as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import dashboard` gives the package's module itself, not a copy
