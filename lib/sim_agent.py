"""A simulated coding agent for the demo and for trying a workspace without a real agent CLI.

The code is ``swarmfile/sim_agent.py``; this name stays at the top of ``lib/`` for operators
(``python lib/sim_agent.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import sim_agent``.
"""

import sys

from swarmfile import sim_agent as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import sim_agent` gives the package's module itself, not a copy
