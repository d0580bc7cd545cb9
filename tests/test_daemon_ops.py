"""Operating the daemon: systemd notify + watchdog, structured logs with job ids, no secrets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from harbord.log import redact_secrets
from tests.support.broker import Mosquitto
from tests.support.daemon_proc import DaemonProc, Subscriber
from tests.support.media import make_mp3
from tests.support.waits import wait_until


def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    got: list[str] = []

    def drain() -> list[str]:
        try:
            while True:
                got.append(sock.recv(4096).decode())
        except TimeoutError:
            return got

    daemon = DaemonProc(tmp_path / "h").start(
        env_extra={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    )
    try:
        wait_until(lambda: sum("WATCHDOG=1" in m for m in drain()) >= 3, 10)
        ready = [m for m in got if m.startswith("READY=1")]
        assert len(ready) == 1 and "STATUS=watching" in ready[0]
        assert got.index(ready[0]) < max(i for i, m in enumerate(got) if m == "WATCHDOG=1")
        assert daemon.stop() == 0
        drain()
        assert "STOPPING=1" in got
    finally:
        sock.close()
        if daemon.proc:
            daemon.kill()


def test_job_log_lines_carry_job_id_and_never_the_password(tmp_path: Path, broker: Mosquitto) -> None:
    secret = "hunter2-s3cret"
    daemon = DaemonProc(
        tmp_path / "h", mqtt_port=broker.port, mqtt_extra=f'username = "u"\npassword = "{secret}"\n'
    ).start()
    sub = Subscriber(broker.port)
    try:
        make_mp3(daemon.inbox / "Artist - Song.mp3", seed=80)
        wait_until(lambda: sub.events("ingested"), 30)
        assert daemon.stop() == 0
    finally:
        sub.close()
        if daemon.proc:
            daemon.kill()
    text = daemon.log.read_text()
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    job_lines = [rec for rec in lines if rec.get("event") in ("queued", "stage done", "ingested")]
    assert len(job_lines) >= 6  # queued, 4 stages, ingested
    job_id = sub.events("ingested")[0]["job_id"]
    assert {rec["job_id"] for rec in job_lines} == {job_id}
    assert all("timestamp" in rec and "level" in rec for rec in lines)


def test_redaction_processor_masks_secret_keys() -> None:
    event = {"event": "connect", "password": "x", "api_key": "k", "mqtt_token": "t", "path": "/a"}
    assert redact_secrets(None, "info", event) == {
        "event": "connect", "password": "***", "api_key": "***", "mqtt_token": "***", "path": "/a"}
