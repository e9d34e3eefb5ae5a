"""The agent presets (Claude Code, Codex, Gemini CLI, aider, Ollama): ``python lib/agent_presets.py [--json]``.

The code is ``swarmfile/agents.py``; this name stays at the top of ``lib/`` for operators and
for loops that put ``lib/`` on ``sys.path`` and ``import agent_presets``.
"""

import sys

from swarmfile import agents as _module

if __name__ == "__main__":
    raise SystemExit(_module.main())
sys.modules[__name__] = _module  # `import agent_presets` gives the package's module itself, not a copy
