"""Swarmfile: several autonomous coding agents on one repository, coordinated through plain files.

Every module of the runtime lives in this package, under a name no host repository's own
``config.py``, ``paths.py`` or ``storage.py`` can shadow. The modules operators run and loops
import keep their names at the top of ``lib/`` as thin aliases (``lib/claims.py`` is this
package's ``claims``), so ``python lib/<module>.py`` and ``import claims`` work as before.
"""
