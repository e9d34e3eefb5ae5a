"""Checklist lines of a task file as claimable work items: claim, complete, release, add, list.

The code is ``swarmfile/work_items.py``; this name stays at the top of ``lib/`` for operators
(``python lib/work_items.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import work_items``.
"""

import sys

from swarmfile import work_items as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import work_items` gives the package's module itself, not a copy
