"""The ``harbord`` command line (click + rich).

The group and its error handling (:mod:`.group`), the core commands run, status, show, retry,
check-config and doctor (:mod:`.core`), ``ingest`` (:mod:`.ingest`), and every capability's
commands (``Capability.commands``, added by the group on first need: search/reindex from
the search capability, rebuild-catalog from the files capability). ``--json`` outputs are
stable and documented in the README.
Exit codes: 0 ok, 1 a job failed / a check failed, 2 bad usage or invalid config.
"""

from __future__ import annotations

from harbord.cli import core, ingest
from harbord.cli.group import main

for _command in (core.run, core.status, core.show, core.retry, core.check_config, core.doctor,
                 ingest.ingest):
    main.add_command(_command)

__all__ = ["main"]
