"""A handler Context on a real SQLite catalog in a temp folder, for handler tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harbord.catalog import Catalog, open_db
from harbord.config import Config, PathsConfig
from harbord.context import Context


@contextmanager
def catalog_context(tmp_path: Path) -> Iterator[Context]:
    """A Context whose database is ``tmp_path/h.db``, state and library under ``tmp_path``."""
    db = open_db(tmp_path / "h.db")
    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "library"))
    try:
        yield Context(config=config, db=db, catalog=Catalog(db))
    finally:
        db.close()
