"""``harbord doctor``: checks a person runs when something looks wrong.

Each check returns ``(name, level, detail)`` with level ``ok``, ``warn`` or ``fail``. The core
checks folders, the database, the broker and inotify; each capability adds its own checks
(``Capability.doctor``: the files capability ffmpeg and MediaInfo, search the embedding model).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harbord.capability import contributions
from harbord.config import Config, MqttConfig

INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")

Check = tuple[str, str, str]


def _writable(label: str, folder: Path) -> Check:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as err:
        return (label, "fail", f"{folder}: {err.strerror}")
    return (label, "ok", str(folder))


def _database(config: Config) -> Check:
    if not config.db_path.exists():
        return ("database", "warn", f"{config.db_path} not created yet (first run creates it)")
    try:
        conn = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True, timeout=5)
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.close()
    except sqlite3.Error as err:
        return ("database", "fail", f"{config.db_path}: {err}")
    return ("database", "ok" if result == "ok" else "fail", f"{config.db_path}: {result}")


# CONNACK codes meaning the broker refused the credentials: MQTT 3.1.1 (4 bad username or
# password, 5 not authorized) and the MQTT 5 reason codes paho reports them as (134, 135, 140).
AUTH_REFUSED = frozenset({4, 5, 134, 135, 140})
SERVER_UNAVAILABLE = frozenset({3, 136})
BROKER_TIMEOUT_SECONDS = 5.0


async def _mqtt_login(mqtt: MqttConfig) -> None:
    """Connect and log in as the daemon would (same credentials and TLS), then disconnect.
    The client id gets a ``-doctor-<pid>`` suffix: a broker drops a running daemon's session
    when another client connects with its id."""
    import aiomqtt

    client = aiomqtt.Client(
        mqtt.host, mqtt.port,
        identifier=f"{mqtt.client_id}-doctor-{os.getpid()}",
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password is not None else None,
        tls_params=(aiomqtt.TLSParameters(ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None)
                    if mqtt.tls else None),
        timeout=BROKER_TIMEOUT_SECONDS,
    )
    async with client:
        pass


def _broker(config: Config) -> Check:
    """The broker answers and accepts harbord's login. Unreachable is a warning (events wait
    in the outbox until it is back); refused credentials are a failure: the daemon would never
    deliver an event, retrying forever."""
    import aiomqtt

    mqtt = config.mqtt
    if not mqtt.enabled:
        return ("mqtt broker", "ok", "disabled in config")
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=2):
            pass
    except OSError as err:
        return ("mqtt broker", "warn", f"{where} unreachable ({err}); events wait in the outbox")
    who = f"user {mqtt.username!r}" if mqtt.username else "anonymous"
    try:
        asyncio.run(_mqtt_login(mqtt))
    except aiomqtt.MqttCodeError as err:
        code = getattr(err.rc, "value", err.rc)
        # not str(err): its "[code:135]" prefix would be taken for markup by the rich table
        text = err.rc if not isinstance(err.rc, int) else (err.args[0] if err.args else "refused")
        reason = f"{text}, code {code}"
        if code in AUTH_REFUSED:
            return ("mqtt broker", "fail", f"{where} refused the login as {who} ({reason}); "
                                           "check mqtt.username and mqtt.password")
        level = "warn" if code in SERVER_UNAVAILABLE else "fail"
        return ("mqtt broker", level, f"{where} refused the connection as {who} ({reason})")
    except aiomqtt.MqttError as err:
        return ("mqtt broker", "warn", f"{where} accepts connections but no MQTT login "
                                       f"completed ({err}); events wait in the outbox")
    return ("mqtt broker", "ok", f"{where} reachable, login accepted ({who})")


def _inotify(config: Config) -> Check:
    try:
        limit = int(INOTIFY_WATCHES.read_text())
    except (OSError, ValueError):
        return ("inotify", "warn", "cannot read max_user_watches")
    folders = sum(1 for w in config.watches() if w.path.exists() for _ in os.walk(w.path))
    level = "ok" if folders * 2 < limit else "warn"
    return ("inotify", level, f"max_user_watches {limit}, watched folders {folders}"
            + ("" if level == "ok" else "; raise fs.inotify.max_user_watches or use polling = true"))


def run_checks(config: Config) -> Iterator[Check]:
    """Yield every check's result; never raises."""
    yield _writable("state folder", config.paths.state)
    yield _writable("library folder", config.paths.library)
    for watch in config.watches():
        yield _writable(f"watch {watch.kind}", watch.path)
    yield _database(config)
    yield _broker(config)
    yield _inotify(config)
    for checks in contributions("doctor"):
        try:
            yield from checks(config)
        except Exception as err:  # a capability's check must not hide the others' results
            yield (getattr(checks, "__module__", "capability"), "fail", f"check crashed: {err!r}")
