"""Capabilities through the registry: migrations on their own track (and a catalog made before
them), config sections mounted under their keys, commands, doctor checks, the fan-out sink."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harbord.capability import Capability, capabilities
from harbord.catalog import MIGRATIONS, migrate_capabilities, open_db
from harbord.config import Config, load_config
from harbord.errors import CatalogError, ConfigError
from harbord.events import FanOut, ListSink
from harbord.queue import JobQueue

ROOT = Path(__file__).resolve().parents[1]
V4_DUMP = Path(__file__).parent / "data" / "catalog_v4.sql"


def _v4_catalog(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V4_DUMP.read_text(encoding="utf-8"))
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()


def _rows(db: Any, sql: str) -> list[dict[str, Any]]:
    return list(db.query(sql))


def test_a_version_4_catalog_opens_and_migrates_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "harbord.db"
    _v4_catalog(path)
    before = sqlite3.connect(path)
    tables = ["objects", "items", "files", "sidecars", "vectors", "jobs", "outbox"]
    old = {t: before.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    before.close()
    assert all(old.values())  # one row each

    db = open_db(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert dict(db.execute("SELECT capability, version FROM schema_versions").fetchall()) == {
            "search": 1, "enrich": 2}
        for table in tables:  # every old row is there with its old values (new columns appended)
            new = db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            assert [row[: len(old[table][0])] for row in new] == old[table], table
        queue = JobQueue(db)
        assert queue.counts()["failed"] == 1 and queue.counts()["done"] == 1
        assert queue.get("k" * 32)["last_error"] == "probe: corrupt"  # type: ignore[index]
    finally:
        db.close()
    again = open_db(path)  # a second open changes nothing
    assert again.execute("SELECT count(*) FROM vectors").fetchone()[0] == 1
    again.close()


def test_show_and_search_read_a_migrated_catalog(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _v4_catalog(state / "harbord.db")
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'[paths]\nstate = "{state}"\nlibrary = "{tmp_path / "lib"}"\n'
                   f'[[watch]]\npath = "{tmp_path / "inbox"}"\n[mqtt]\nenabled = false\n')
    run = subprocess.run([sys.executable, "-m", "harbord", "--config", str(cfg), "show", "1", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert '"title": "Night of the Living Dead"' in run.stdout
    status = subprocess.run([sys.executable, "-m", "harbord", "--config", str(cfg), "status", "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert status.returncode == 0 and '"failed": 1' in status.stdout


def test_a_capability_track_newer_than_this_harbord_is_refused(tmp_path: Path) -> None:
    db = open_db(tmp_path / "h.db")
    try:
        db.execute("UPDATE schema_versions SET version = 99 WHERE capability = 'search'")
        db.conn.commit()
        with pytest.raises(CatalogError, match="search tables are at version 99"):
            migrate_capabilities(db)
    finally:
        db.close()


def test_capability_sections_are_mounted_under_their_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text('[embed]\nbatch_size = 8\n[index]\nef_search = 99\n')
    config = load_config(cfg)
    assert config.embed.batch_size == 8 and config.index.ef_search == 99  # type: ignore[attr-defined]
    assert '"ef_search":99' in config.model_dump_json()
    cfg.write_text('[embed]\nbatch_sise = 8\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == "embed.batch_sise"
    cfg.write_text('[nonsense]\nx = 1\n')
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(cfg)
    assert Config().section("embed", type(config.embed)).backend == "minilm"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        Config().section("index", type(config.embed))  # type: ignore[attr-defined]


def test_capability_commands_are_in_the_group() -> None:
    run = subprocess.run([sys.executable, "-m", "harbord", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    for name in ("search", "reindex", "rebuild-catalog", "ingest", "status", "doctor"):
        assert f"  {name} " in run.stdout, run.stdout


def test_doctor_runs_every_capabilitys_checks(tmp_path: Path) -> None:
    from harbord.doctor import run_checks

    config = Config.model_validate({"paths": {"state": str(tmp_path / "s"), "library": str(tmp_path / "l")},
                                    "watch": [{"path": str(tmp_path / "in")}], "mqtt": {"enabled": False}})
    names = [name for name, _, _ in run_checks(config)]
    assert {"ffmpeg", "mediainfo", "embedding model", "database", "inotify"} <= set(names)


def test_two_capabilities_may_not_contribute_one_step() -> None:
    from harbord import capability
    from harbord.capability import Step

    twin = Capability(name="twin", steps=(Step("parse", "x:Y"),))
    real = capabilities()
    capability.capabilities.cache_clear()
    try:
        import handlers

        saved = handlers.BUILTIN
        handlers.BUILTIN = (*saved, twin)
        with pytest.raises(RuntimeError, match="files and twin both contribute step parse"):
            capabilities()
    finally:
        handlers.BUILTIN = saved
        capability.capabilities.cache_clear()
    assert capabilities() == real


class _Broken:
    def emit(self, event: dict[str, Any]) -> None:
        raise OSError("disk full")


def test_fan_out_gives_every_sink_every_event_even_when_one_fails() -> None:
    first, last = ListSink(), ListSink()
    sink = FanOut([first, _Broken()])
    sink.add(last)
    for n in range(3):
        sink.emit({"type": "queued", "n": n})
    assert [e["n"] for e in first.events] == [e["n"] for e in last.events] == [0, 1, 2]
    sink.remove(first)
    sink.emit({"type": "stage", "n": 3})
    assert len(first.events) == 3 and len(last.events) == 4
