"""The operator's command line: set up a workspace, add tasks, see what the swarm is doing.

The code is ``swarmfile/swarm.py``; this name stays at the top of ``lib/`` for operators
(``python lib/swarm.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import swarm``.
"""

import sys

from swarmfile import swarm as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import swarm` gives the package's module itself, not a copy
