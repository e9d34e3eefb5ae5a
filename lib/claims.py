"""Task leases with fencing tokens: who may work on a task, and until when.

The code is ``swarmfile/claims.py``; this name stays at the top of ``lib/`` for operators
(``python lib/claims.py ready``) and for loops that put ``lib/`` on ``sys.path`` and ``import claims``.
"""

import sys

if __name__ == "__main__":
    import gc

    # One query and exit: the cyclic collector would only walk the 10,000 tasks just listed (they
    # hold no cycles) before the process frees everything anyway.
    gc.disable()
    # The command line imports the ready query only, not the lease code: a polling script starts fast.
    import os

    from swarmfile import claims_cli

    code = claims_cli.main()
    # Out without the interpreter's teardown, which frees every task just listed one by one (a
    # tenth of the command at 10,000 tasks): a query has nothing else to finish.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

from swarmfile import claims as _module  # noqa: E402

sys.modules[__name__] = _module  # `import claims` gives the package's module itself, not a copy
