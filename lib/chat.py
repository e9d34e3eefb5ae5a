"""Messages between agents in chat-log.yaml (RALF format): send, inbox, read state, replies.

The code is ``swarmfile/chat.py``; this name stays at the top of ``lib/`` for operators
(``python lib/chat.py``) and for loops that put ``lib/`` on ``sys.path`` and ``import chat``.
"""

import sys

from swarmfile import chat as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import chat` gives the package's module itself, not a copy
