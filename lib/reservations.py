"""File reservations: which agent may edit which paths of the repository, and until when.

The code is ``swarmfile/reservations.py``; this name stays at the top of ``lib/`` for operators
(``python lib/reservations.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import reservations``.
"""

import sys

from swarmfile import reservations as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import reservations` gives the package's module itself, not a copy
