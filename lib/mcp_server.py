"""An MCP server per agent: the agent claims, finishes and reports its own tasks through tools.

The code is ``swarmfile/mcp_server.py``; this name stays at the top of ``lib/`` for operators
(``python lib/mcp_server.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import mcp_server``.
"""

import sys

from swarmfile import mcp_server as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import mcp_server` gives the package's module itself, not a copy
