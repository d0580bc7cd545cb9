"""Run ``harbord run`` as a real subprocess with a temp config, and read MQTT with paho."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from tests.support.waits import wait_until


class DaemonProc:
    """A harbord daemon in a subprocess; folders under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        mqtt_port: int | None = None,
        handlers: tuple[str, ...] = ("parse", "probe", "checksum", "store"),
        settle: float = 0.3,
        action: str = "move",
        workers: int = 2,
        extra: str = "",
        mqtt_extra: str = "",
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.inbox = root / "inbox"
        self.state = root / "state"
        self.library = root / "library"
        self.config = root / "harbord.toml"
        self.log = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        mqtt = (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\nkeepalive = 5\n{mqtt_extra}'
                if mqtt_port else "[mqtt]\nenabled = false\n")
        self.config.write_text(
            f'[paths]\nstate = "{self.state}"\nlibrary = "{self.library}"\n'
            f'[[watch]]\npath = "{self.inbox}"\naction = "{action}"\n'
            f"[pipeline]\nhandlers = {json.dumps(list(handlers))}\nworkers = {workers}\n"
            f"settle_seconds = {settle}\nretry_base_seconds = 0.5\nmax_attempts = 3\n"
            f'{mqtt}[log]\nlevel = "debug"\nformat = "json"\n{extra}'
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``harbord --config <cfg> ARGS`` and return the finished process."""
        return subprocess.run(
            [sys.executable, "-m", "harbord", "--config", str(self.config), *args],
            capture_output=True, text=True, check=check, timeout=300,
        )

    def status(self) -> dict[str, Any]:
        """``harbord status --json`` parsed."""
        return json.loads(self.cli("status", "--json").stdout)  # type: ignore[no-any-return]

    def start(self, env_extra: dict[str, str] | None = None) -> DaemonProc:
        """Start the daemon and wait until it watches its inbox."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("NOTIFY_SOCKET", None)
        env.update(env_extra or {})
        started = self.log.read_bytes().count(b"harbord: watching") if self.log.exists() else 0
        self._logfh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harbord", "--config", str(self.config), "run"],
            stdout=self._logfh, stderr=self._logfh, env=env,
        )
        # this start's line: after a restart the log holds the earlier runs' too
        wait_until(lambda: self.log.read_bytes().count(b"harbord: watching") > started or self._died(), 60)
        assert not self._died(), self.log.read_text(errors="replace")[-3000:]
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._logfh.close()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL (a crash) and wait."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._logfh.close()
        self.proc = None

    def objects(self) -> list[Path]:
        """Every file under ``<library>/objects`` (temp files included)."""
        return sorted(p for p in (self.library / "objects").rglob("*") if p.is_file())


class Subscriber:
    """A paho MQTT client subscribed to ``topic`` collecting (topic, payload, retain)."""

    def __init__(self, port: int, topic: str = "harbord/#") -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Decoded ``harbord/events`` payloads, optionally of one type."""
        with self.lock:
            out = [json.loads(p) for t, p, _ in self.messages if t == "harbord/events"]
        return [e for e in out if type_ is None or e["type"] == type_]

    def last(self, topic: str) -> str | None:
        """The last payload seen on ``topic``."""
        with self.lock:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()
