"""A private Mosquitto broker for tests: started on a free loopback port, stoppable and restartable."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One ``mosquitto`` process listening on ``127.0.0.1:port`` with anonymous access."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto not installed (Debian package 'mosquitto')")
        self.binary = binary

    def config_text(self) -> str:
        """The broker's ``mosquitto.conf``: anonymous access on the loopback port."""
        return f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n"

    def start(self) -> None:
        """Start the broker and wait (up to 10 s) until it accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        # mosquitto drops root privileges to its own user, which cannot write to pytest's
        # temp folder: let it log to stdout and keep the file open on our side.
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()
