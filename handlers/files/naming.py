"""Names -> facts with guessit, shared by the files capability's steps (parse, probe).

guessit (https://github.com/guessit-io/guessit) runs only in the CPU pool: it is imported in
:func:`guess`, so the main process and every CLI command that only names the steps do not pay
for it (~80 ms to import, ~0.2 s to build its rules).
"""

from __future__ import annotations

import gc
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

NAME_PENDING = "name_pending"
"""``parsed`` key: what guessit is to get for this audio file (see :func:`guess_input`) if its
tags do not name it; set by parse when probe reads the tags later in the chain, removed by probe."""


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)  # babelfish Language/Country, guessit enums ...


def guess(name: str) -> dict[str, Any]:
    """guessit's facts about a release name or relative path, as plain JSON values.

    ``date`` becomes an ISO string, languages/countries strings (``"en"``), lists stay lists.
    Runs in a worker process (top-level, picklable). Never raises: if guessit fails, the result
    is ``{"title": <stem>, "parse_error": <message>}``.
    """
    from guessit import guessit

    try:
        facts = guessit(name)
    except Exception as err:  # guessit wraps any internal failure in GuessitException
        return {"title": PurePath(name).stem, "parse_error": f"{type(err).__name__}: {err}"}
    return {str(key): _plain(value) for key, value in facts.items()}


def warm_worker() -> None:
    """Pool worker start-up hook (see :func:`harbord.capability.pool_setup`): guessit builds its
    rule set on the first call (~0.15-0.25 s here); pay it before the first file. Then freezes
    what is allocated so far (:func:`gc.freeze`): the rules live as long as the process, the
    collector never traces them again, and the fork server, where this runs first, exits sooner
    (an ``ingest`` of 200 files ends ~0.1 s sooner after its last line)."""
    guess("Show.Name.S01E01.720p.mkv")
    gc.freeze()


def guess_input(path: PurePath, watch_root: PurePath | None = None) -> str:
    """What guessit gets for ``path``: the path relative to ``watch_root`` (when inside it), at
    most two parent folders plus the name, joined with ``/``. Folders above the watched one
    (``/home/me/Downloads 2019``) would only mislead guessit."""
    inside = watch_root is not None and path.is_relative_to(watch_root)
    parts = path.relative_to(watch_root).parts if watch_root and inside else path.parts
    return "/".join([p for p in parts if p != path.anchor][-3:])
