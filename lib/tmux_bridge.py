"""Agents in tmux panes: start a cluster, type tasks into panes, read their markers off the screen.

The code is ``swarmfile/tmux_bridge.py``; this name stays at the top of ``lib/`` for operators
(``python lib/tmux_bridge.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import tmux_bridge``.
"""

import sys

from swarmfile import tmux_bridge as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import tmux_bridge` gives the package's module itself, not a copy
