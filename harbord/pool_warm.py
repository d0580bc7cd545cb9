"""Warm-up run by the CPU pool's fork server, before it forks any worker.

:func:`harbord.offload.configure` lists this module last in the fork server's preload and names
the warm-up functions (``module:function``, space-separated) in ``$HARBORD_POOL_WARMUPS``
(:data:`harbord.offload.WARMUPS_ENV`). Importing it in the fork server runs each once, so every
worker forked from the server starts with them done: guessit's rule set (~0.2 s of CPU per
process) is built once instead of once per worker, and a worker is ready ~0.2 s sooner.
"""

from __future__ import annotations

import os

from harbord.offload import WARMUPS_ENV, run_warmups

run_warmups(os.environ.get(WARMUPS_ENV, "").split())
