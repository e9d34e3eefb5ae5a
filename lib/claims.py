"""Task leases with fencing tokens: who may work on a task, and until when.

The code is ``swarmfile/claims.py``; this name stays at the top of ``lib/`` for operators
(``python lib/claims.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import claims``.
"""

import sys

from swarmfile import claims as _module

if __name__ == "__main__":
    from swarmfile import cli

    raise SystemExit(cli.no_command_line("claims.py", "leases are shown by: python lib/swarm.py status"))
sys.modules[__name__] = _module  # `import claims` gives the package's module itself, not a copy
