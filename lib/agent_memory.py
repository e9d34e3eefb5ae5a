"""Per-agent memory files: a scratchpad, subtasks and notes an agent keeps between runs.

The code is ``swarmfile/agent_memory.py``; this name stays at the top of ``lib/`` for operators
(``python lib/agent_memory.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import agent_memory``.
"""

import sys

from swarmfile import agent_memory as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import agent_memory` gives the package's module itself, not a copy
