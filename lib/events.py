"""The append-only event log (events.yaml): append, read, filter, tail, follow, rotate.

The code is ``swarmfile/events.py``; this name stays at the top of ``lib/`` for operators
(``python lib/events.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import events``.
"""

import sys

from swarmfile import events as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import events` gives the package's module itself, not a copy
