"""Near-duplicate task detection: is a new task too close to an open or finished one?

The code is ``swarmfile/duplicate_detector.py``; this name stays at the top of ``lib/`` for operators
(``python lib/duplicate_detector.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import duplicate_detector``.
"""

import sys

from swarmfile import duplicate_detector as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import duplicate_detector` gives the package's module itself, not a copy
