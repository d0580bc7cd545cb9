"""Enrichment in a running daemon, as a person uses it: ``harbord run`` as a subprocess with TMDb,
OMDb and MusicBrainz configured to the replay server of recorded answers (tests/support/replay.py,
started in this process; the daemon reaches it on 127.0.0.1), real videos dropped into its inbox,
the private Mosquitto broker, and the ``harbord`` commands as subprocesses.

The chain is parse, probe, checksum, store, enrich: no embed/index, so no model is loaded.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Mosquitto
from tests.support.daemon_proc import DaemonProc, Subscriber
from tests.support.media import make_mkv
from tests.support.replay import ReplayServer
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

CHAIN = ("parse", "probe", "checksum", "store", "enrich")
MATRIX = "The.Matrix.1999.1080p.BluRay.x264-GROUP.mkv"
FIGHT_CLUB = "Fight.Club.1999.mkv"
TMDB_SECRET = "tmdb-k3y-5e1f0a77c2"
OMDB_SECRET = "omdb-k3y-9c3b7d21e4"
"""Keys the replay server accepts (it ignores them) and that must show nowhere."""
KEY_VARS = ("HARBORD_TMDB_API_KEY", "HARBORD_OMDB_API_KEY", "CREDENTIALS_DIRECTORY")


def enrich_toml(replay: ReplayServer, *, tmdb_key: str | None = TMDB_SECRET,
                omdb_key: str | None = OMDB_SECRET, retry_base: float | None = None) -> str:
    """The ``[enrich]`` sections pointing every provider at ``replay`` (a key of None: none in
    the file)."""
    text = "[enrich]\ntimeout_seconds = 10.0\n"
    if retry_base is not None:
        text += f"retry_base_seconds = {retry_base}\n"
    text += f'[enrich.tmdb]\nbase_url = "{replay.tmdb_base}"\n'
    text += f'api_key = "{tmdb_key}"\n' if tmdb_key else ""
    text += f'[enrich.omdb]\nbase_url = "{replay.omdb_url}"\n'
    text += f'api_key = "{omdb_key}"\n' if omdb_key else ""
    return text + f'[enrich.musicbrainz]\nhost = "{replay.musicbrainz_host}"\nhttps = false\n'


def movie(tmp_path: Path, name: str, seed: int) -> Path:
    """A real one-second video named ``name`` (outside the inbox, to be copied in)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    return make_mkv(src / name, seed=seed, subtitles=False)


def drop(daemon: DaemonProc, *files: Path) -> None:
    for path in files:
        shutil.copy(path, daemon.inbox / path.name)


def cli_all(daemon: DaemonProc, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``harbord --config <cfg> ARGS`` for each of ``commands`` at once (each is mostly the
    interpreter starting); every one must exit 0."""
    procs = [subprocess.Popen([sys.executable, "-m", "harbord", "--config", str(daemon.config), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in commands]
    done = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"harbord {' '.join(args)}: exit {proc.returncode}\n{stderr}"
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return done


def enrichment(daemon: DaemonProc, item: int) -> dict[str, Any]:
    """``harbord show ITEM --json``'s ``enrichment``."""
    return dict(json.loads(daemon.cli("show", str(item), "--json").stdout)["enrichment"])


def log_lines(daemon: DaemonProc, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines whose ``event`` is ``event``."""
    found = []
    for line in daemon.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


def stop(daemon: DaemonProc, sub: Subscriber | None = None) -> None:
    if sub is not None:
        sub.close()
    if daemon.proc is not None:
        daemon.kill()


def test_a_dropped_movie_is_enriched_and_announced(
        tmp_path: Path, broker: Mosquitto, replay: ReplayServer) -> None:
    matrix = movie(tmp_path, MATRIX, seed=21)
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port, handlers=CHAIN, extra=enrich_toml(replay))
    daemon.start()
    sub = Subscriber(broker.port)
    try:
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        drop(daemon, matrix)
        event = wait_until(lambda: sub.events("ingested"), 60, what="the ingested event")[0]
        assert event["title"] == "The Matrix" and event["year"] == 1999
        poster = Path(event["poster"])
        assert poster.is_file() and poster.is_relative_to(daemon.library / "objects")
        assert poster.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG

        shown = json.loads(daemon.cli("show", str(event["item_id"]), "--json").stdout)
        data = shown["enrichment"]
        assert data["status"] == "done" and data["tmdb_id"] == 603 and data["imdb_id"] == "tt0133093"
        assert data["title"] == "The Matrix" and data["overview"]
        assert data["artwork"]["poster"] == str(poster) == shown["sidecars"]["poster"]
        assert poster.name == f"{shown['object_hash']}-poster.jpg"  # beside the object, Kodi's name
        # the step ran in the chain, before the job ended; and 'enriched' said the same
        stages = [e.get("stage") for e in sub.events("stage") if e["job_id"] == event["job_id"]]
        assert stages == ["parse", "probe", "checksum", "store", "enrich"]
        enriched = [e for e in sub.events("enriched") if e["item_id"] == event["item_id"]]
        assert enriched and enriched[0]["poster"] == str(poster) and enriched[0]["title"] == "The Matrix"
        assert daemon.stop() == 0
    finally:
        stop(daemon, sub)


def test_an_outage_leaves_enrichment_pending_and_enrich_pending_finishes_it(
        tmp_path: Path, replay: ReplayServer) -> None:
    files = movie(tmp_path, MATRIX, seed=22), movie(tmp_path, FIGHT_CLUB, seed=23)
    daemon = DaemonProc(tmp_path / "h", handlers=CHAIN, extra=enrich_toml(replay)).start()
    try:
        replay.down("tmdb")
        drop(daemon, *files)
        wait_until(lambda: len(log_lines(daemon, "ingested")) == 2, 60, what="both jobs ingested")
        status, stats = (json.loads(p.stdout) for p in cli_all(
            daemon, ("status", "--json"), ("enrich", "--stats", "--json")))
        assert status["jobs"]["done"] == 2 and status["items"] == 2  # ingestion did not wait
        assert stats["by_status"] == {"pending": 2}
        waits = [line["retry_in"] for line in log_lines(daemon, "enrichment pending")]
        assert waits == [60.0, 60.0]  # by itself, the next try would be in a minute

        replay.up("tmdb")
        started = time.monotonic()
        summary = json.loads(daemon.cli("enrich", "--pending", "--json").stdout)
        took = time.monotonic() - started
        assert summary["counts"] == {"done": 2}, summary
        assert took < 20, f"harbord enrich --pending waited {took:.0f} s for the daemon"
        found = {json.loads(p.stdout)["enrichment"]["tmdb_id"] for p in cli_all(
            daemon, ("show", "1", "--json"), ("show", "2", "--json"))}
        assert found == {603, 550}
        assert daemon.stop() == 0
    finally:
        stop(daemon)


def test_without_api_keys_ingestion_goes_on_and_doctor_warns(
        tmp_path: Path, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    matrix = movie(tmp_path, MATRIX, seed=24)
    daemon = DaemonProc(tmp_path / "h", handlers=CHAIN,
                        extra=enrich_toml(replay, tmdb_key=None, omdb_key=None)).start()
    try:
        drop(daemon, matrix)
        wait_until(lambda: log_lines(daemon, "ingested"), 60, what="the job ingested")
        shown, doctor, status = cli_all(daemon, ("show", "1", "--json"), ("doctor",), ("status", "--json"))
        assert json.loads(status.stdout)["jobs"]["done"] == 1
        data = json.loads(shown.stdout)["enrichment"]
        assert data["status"] == "none" and "no API key" in data["why"]
        assert re.search(r"enrich tmdb\s*│\s*warn\s*│\s*no API key", doctor.stdout), doctor.stdout
        assert re.search(r"enrich omdb\s*│\s*warn", doctor.stdout), doctor.stdout
        assert replay.count() == 0  # nothing was asked of anyone
        skipped = [line for line in log_lines(daemon, "enrichment provider skipped")
                   if line["provider"] == "tmdb"]
        assert len(skipped) == 1  # said once
        assert daemon.stop() == 0
    finally:
        stop(daemon)


def test_api_keys_never_show_in_output_logs_or_mqtt(
        tmp_path: Path, broker: Mosquitto, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """TMDb's key in the config file, OMDb's in ``$HARBORD_OMDB_API_KEY``; TMDb down while the
    movie is ingested (errors logged), OMDb refusing its key (a warning logged), then TMDb back:
    the pending enrichment completes by itself (``retry_base_seconds = 1``)."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HARBORD_OMDB_API_KEY", OMDB_SECRET)
    matrix = movie(tmp_path, MATRIX, seed=25)
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port, handlers=CHAIN,
                        extra=enrich_toml(replay, omdb_key=None, retry_base=1.0))
    config_text = daemon.config.read_text()
    assert TMDB_SECRET in config_text and OMDB_SECRET not in config_text
    daemon.start()
    sub = Subscriber(broker.port, topic="#")
    try:
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        replay.down("tmdb")
        replay.bad_key("omdb")
        drop(daemon, matrix)
        ingested = wait_until(lambda: sub.events("ingested"), 60, what="the ingested event")[0]
        assert ingested.get("poster") is None  # nothing known yet
        replay.up("tmdb")
        enriched = wait_until(lambda: sub.events("enriched"), 60, what="enrichment done by itself")[0]
        assert enriched["item_id"] == ingested["item_id"] and enriched["title"] == "The Matrix"
        assert Path(enriched["poster"]).is_file()
        assert log_lines(daemon, "enrichment pending")  # the outage was logged ...
        assert any("refused" in line["reason"] for line in log_lines(daemon, "enrichment provider skipped"))
        sent = {r.params.get("api_key") for r in replay.requests("tmdb")} | {
            r.params.get("apikey") for r in replay.requests("omdb")}
        assert sent == {TMDB_SECRET, OMDB_SECRET}  # ... and the keys were in use

        check, doctor, shown, stats = cli_all(daemon, ("check-config",), ("doctor",),
                                              ("show", str(ingested["item_id"]), "--json"),
                                              ("enrich", "--stats", "--json"))
        assert json.loads(check.stdout)["enrich"]["tmdb"]["api_key"] == "**********"
        assert daemon.stop() == 0
        wait_until(lambda: sub.last("harbord/status") == "stopped", 10)
        outputs = {
            "check-config": check.stdout + check.stderr, "doctor": doctor.stdout + doctor.stderr,
            "show --json": shown.stdout + shown.stderr, "enrich --stats": stats.stdout + stats.stderr,
            "the daemon's log": daemon.log.read_text(errors="replace"),
            "MQTT": "\n".join(f"{topic} {payload}" for topic, payload, _ in sub.messages),
        }
        assert "tt0133093" in outputs["show --json"] and "harbord/events" in outputs["MQTT"]
        for where, text in outputs.items():
            for secret in (TMDB_SECRET, OMDB_SECRET):
                assert secret not in text, f"{secret} in {where}"
    finally:
        stop(daemon, sub)
