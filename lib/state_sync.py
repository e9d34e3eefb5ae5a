"""Shared per-agent state and context in agent-state.yaml (RALF format).

The code is ``swarmfile/state_sync.py``; this name stays at the top of ``lib/`` for operators
(``python lib/state_sync.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import state_sync``.
"""

import sys

from swarmfile import state_sync as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import state_sync` gives the package's module itself, not a copy
