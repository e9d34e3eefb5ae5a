"""The agent registry: register, heartbeat, deregister, discover, and the liveness of agents.

The code is ``swarmfile/agent_discovery.py``; this name stays at the top of ``lib/`` for operators
(``python lib/agent_discovery.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import agent_discovery``.
"""

import sys

from swarmfile import agent_discovery as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import agent_discovery` gives the package's module itself, not a copy
