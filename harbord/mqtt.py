"""MQTT publisher: availability (last will), retained state, job events, Home Assistant discovery.

Topics (``<base>`` = ``mqtt.base_topic``, ``<prefix>`` = ``mqtt.discovery_prefix``):

- ``<base>/status``: ``online`` / ``offline`` (last will) / ``stopped``; retained, QoS 1.
- ``<base>/state``: JSON snapshot from the daemon's ``state()``; retained, QoS 1, debounced
  (at most one publish per 0.5 s).
- ``<base>/events``: one JSON event per job transition (see :mod:`harbord.events`); QoS 1,
  not retained, in order.
- ``<prefix>/sensor/<node>/<id>/config``: discovery for ``queue_depth``, ``ingested_total``,
  ``failed_total``; retained.
- ``<prefix>/binary_sensor/<node>/<id>/config``: discovery for ``importing``, ``problem``;
  retained.
- ``<prefix>/status`` (subscribed): ``online`` from Home Assistant makes harbord publish
  discovery and state again.

``<node>`` is the base topic with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``
(``harbord`` by default), so two daemons with different base topics make two devices.

The outbox
----------
:meth:`Publisher.emit` never touches the network: it INSERTs the event into the SQLite
``outbox`` table (created by :mod:`harbord.catalog` migration 1) and wakes the sender task.
The sender publishes rows strictly in ascending ``id`` order, one at a time, with QoS 1, and
deletes a row only after the broker acknowledged it. ``await aiomqtt.Client.publish(...,
qos=1)`` returns only after PUBACK: aiomqtt 2.5.1 (``aiomqtt/client.py``, ``Client.publish``)
waits on an event that its ``_on_publish`` callback sets, and paho-mqtt 2.2 calls
``on_publish`` for QoS > 0 only from ``_handle_pubackcomp`` (on PUBACK/PUBCOMP); for QoS 0 it
fires as soon as the bytes are written. Delivery is therefore *at least once*: a connection
lost after the broker received a message but before its PUBACK reached us makes that one
message go out again after the reconnect (never out of order, as only one is in flight).
Rows written by another process on the same database file (``harbord ingest``) are picked up
by polling every :data:`POLL_SECONDS`.

The outbox is bounded: every :data:`TRIM_EVERY` inserts, rows older than the newest
:data:`MAX_OUTBOX_ROWS` are deleted (oldest first, with a warning), so a broker outage of any
length cannot fill the disk (100k events are roughly 30-50 MB).

Threading: all database access (``emit``, ``state()``, the sender) happens on the event-loop
thread; ``emit`` and ``state_changed`` must be called from that thread.

External facts: topic layout, ``availability_*``, ``device``, ``origin``, ``state_class`` and
the ``<prefix>/status`` birth message follow the Home Assistant MQTT integration docs
("MQTT Discovery", https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery, and the
"MQTT Sensor"/"MQTT Binary sensor" pages); the status/will conventions match Zigbee2MQTT and
Frigate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import sqlite_utils
import structlog

import harbord
from harbord.config import MqttConfig
from harbord.txn import is_busy, ready

log = structlog.get_logger("harbord.mqtt")

BACKOFF_MIN = 0.5
"""Seconds before the first reconnect attempt; doubles after each failure."""
BACKOFF_MAX = 30.0
"""Upper bound of the reconnect delay, seconds."""
POLL_SECONDS = 2.0
"""Seconds between outbox polls (rows written by other processes)."""
STATE_DEBOUNCE = 0.5
"""Seconds: ``state_changed`` calls within this window after the first make one publish."""
PUBLISH_TIMEOUT = 10.0
"""Seconds to wait for a PUBACK before the connection is considered broken."""
FLUSH_SECONDS = 2.5
"""Seconds ``stop()`` spends draining the outbox before it publishes ``stopped``."""
STOP_SECONDS = 3.5
"""Hard bound on ``stop()``, seconds; after it the connection task is cancelled."""
MAX_OUTBOX_ROWS = 100_000
"""Newest rows kept in the outbox; older undelivered events are dropped."""
TRIM_EVERY = 1_000
"""The outbox bound is enforced when an inserted row id is a multiple of this."""
BATCH_ROWS = 500
"""Outbox rows read per query while draining."""


def node_id(base_topic: str) -> str:
    """The Home Assistant discovery node id for a base topic (``harbord`` -> ``harbord``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", base_topic.strip("/")) or "harbord"


def discovery_configs(cfg: MqttConfig, version: str) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery payloads keyed by their config topic.

    Five entities on one device: sensors ``queue_depth``, ``ingested_total``, ``failed_total``
    and binary sensors ``importing`` (``active_jobs`` > 0) and ``problem`` (``dead`` > 0), all
    reading the retained JSON on ``<base>/state``. ``stopped`` on ``<base>/status`` counts as
    unavailable through ``availability_template``. Key names per the Home Assistant MQTT
    discovery docs (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).
    """
    base = cfg.base_topic
    node = node_id(base)
    device = {
        "identifiers": [node],
        "name": "harbord" if node == "harbord" else f"harbord {node}",
        "sw_version": version,
        "manufacturer": "harbord",
        "model": "media ingest daemon",
    }
    common: dict[str, Any] = {
        "state_topic": f"{base}/state",
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "availability_template": "{{ 'online' if value == 'online' else 'offline' }}",
        "device": device,
        "origin": {"name": "harbord", "sw_version": version},
    }
    sensors: dict[str, dict[str, Any]] = {
        "queue_depth": {
            "name": "Queue depth",
            "value_template": "{{ value_json.queue_depth | default(0) }}",
            "state_class": "measurement",
            "unit_of_measurement": "jobs",
            "icon": "mdi:tray-full",
        },
        "ingested_total": {
            "name": "Ingested",
            "value_template": "{{ value_json.ingested_total | default(0) }}",
            "state_class": "total_increasing",
            "unit_of_measurement": "items",
            "icon": "mdi:check-circle-outline",
        },
        "failed_total": {
            "name": "Failed",
            "value_template": "{{ value_json.failed_total | default(0) }}",
            "state_class": "total_increasing",
            "unit_of_measurement": "jobs",
            "icon": "mdi:alert-circle-outline",
        },
    }
    binary_sensors: dict[str, dict[str, Any]] = {
        "importing": {
            "name": "Importing",
            "device_class": "running",
            "value_template": "{{ 'ON' if (value_json.active_jobs | default(0) | int(0)) > 0 else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        "problem": {
            "name": "Problem",
            "device_class": "problem",
            "value_template": "{{ 'ON' if (value_json.dead | default(0) | int(0)) > 0 else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
    }
    configs: dict[str, dict[str, Any]] = {}
    for component, entities in (("sensor", sensors), ("binary_sensor", binary_sensors)):
        for object_id, specific in entities.items():
            topic = f"{cfg.discovery_prefix}/{component}/{node}/{object_id}/config"
            configs[topic] = {"unique_id": f"{node}_{object_id}", **specific, **common}
    return configs


class OutboxSink:
    """An EventSink that only writes events into the outbox (no network, no task).

    For processes that share the daemon's database but do not publish themselves (the
    ``harbord ingest`` command): the daemon's :class:`Publisher` delivers the rows it finds
    when polling. ``db`` must only be used from the calling thread.
    """

    def __init__(self, cfg: MqttConfig, db: sqlite_utils.Database) -> None:
        self.db = db
        self.topic = f"{cfg.base_topic}/events"
        self.unsaved: collections.deque[tuple[str, float]] = collections.deque(maxlen=MAX_OUTBOX_ROWS)
        """Events (payload, time) not written yet because the database was busy; written, in
        order, before the next event."""

    def emit(self, event: dict[str, Any]) -> None:
        """INSERT ``event`` as JSON into the outbox (topic ``<base>/events``, QoS 1, not retained).

        Never raises for database trouble, because event delivery must not fail ingestion: an
        event that meets a busy database is kept in memory (:attr:`unsaved`) and written, in
        order, with the next event or :meth:`save_pending`; any other failure (disk full, a
        damaged page) is logged and the event dropped.
        """
        payload = json.dumps(event, default=str, ensure_ascii=False, separators=(",", ":"))
        if not payload.isascii():
            try:
                payload.encode("utf-8")
            except UnicodeEncodeError:  # a path that is not UTF-8: keep it, JSON-escaped
                payload = json.dumps(event, default=str, separators=(",", ":"))
        self.unsaved.append((payload, time.time()))
        self.save_pending()

    def save_pending(self) -> bool:
        """Write the events kept while the database was busy; True if none is left."""
        while self.unsaved:
            payload, created = self.unsaved[0]
            try:
                cur = self.db.execute(
                    "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?, ?, 1, 0, ?)",
                    [self.topic, payload, created],
                )
                row_id = cur.lastrowid or 0
                if row_id % TRIM_EVERY == 0:
                    trim_outbox(self.db, row_id)
            except sqlite3.Error as err:
                if is_busy(err):
                    return False  # kept; written with the next event or the next drain
                log.error("mqtt.outbox_write_failed", error=str(err))
            self.unsaved.popleft()
        return True


def trim_outbox(db: sqlite_utils.Database, newest_id: int | None = None) -> int:
    """Delete outbox rows older than the newest :data:`MAX_OUTBOX_ROWS`; returns how many.

    ``newest_id`` is the highest row id if the caller knows it. Ids only grow
    (``AUTOINCREMENT``), so an id cut-off keeps at most ``MAX_OUTBOX_ROWS`` rows.
    """
    if newest_id is None:
        newest_id = int(db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])
    cutoff = newest_id - MAX_OUTBOX_ROWS
    if cutoff <= 0:
        return 0
    dropped = db.execute("DELETE FROM outbox WHERE id <= ?", [cutoff]).rowcount
    if dropped > 0:
        log.warning("mqtt.outbox_trimmed", dropped=dropped, kept=MAX_OUTBOX_ROWS)
    return int(dropped)


class Publisher:
    """Publishes harbord's status, state, events and Home Assistant discovery to MQTT.

    Implements :class:`harbord.events.EventSink`. ``cfg`` is the ``[mqtt]`` config, ``db`` the
    daemon's database (holding the ``outbox`` table), ``state`` a callable returning the JSON-able
    snapshot for ``<base>/state`` (called on the event-loop thread; an exception is logged and
    that snapshot skipped). ``version`` is reported as the device's ``sw_version``.

    Lifecycle: :meth:`start` spawns one background task and returns at once; the task connects
    (last will ``offline`` on ``<base>/status``), publishes ``online``, discovery and the state,
    then drains the outbox and waits for more. When the broker is unreachable or the connection
    drops it reconnects after 0.5 s, 1 s, 2 s, ... up to 30 s between attempts (reset after a
    successful connection). :meth:`stop` flushes for up to 2.5 s, publishes ``stopped`` and
    disconnects. Delivery of events is at least once and in order; see the module docstring.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        db: sqlite_utils.Database,
        state: Callable[[], dict[str, Any]],
        *,
        version: str = harbord.__version__,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.state = state
        self.version = version
        self.status_topic = f"{cfg.base_topic}/status"
        self.state_topic = f"{cfg.base_topic}/state"
        self.events_topic = f"{cfg.base_topic}/events"
        self.ha_status_topic = f"{cfg.discovery_prefix}/status"
        self._outbox = OutboxSink(cfg, db)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._state_due: float | None = None
        self._rediscover = False
        self._flush_deadline: float | None = None
        self._connected = False
        self._delay = BACKOFF_MIN

    # --- EventSink / daemon side (sync, loop thread) ------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event for ``<base>/events`` (QoS 1, not retained) and wake the sender.

        Only a local SQLite INSERT; never waits for the broker. Must be called on the event-loop
        thread. Database errors are logged, not raised (see :meth:`OutboxSink.emit`).
        """
        self._outbox.emit(event)
        after = getattr(self.db, "after_commit", None)  # publish what is committed only
        if after is not None:
            after(self._wake.set)
        else:
            self._wake.set()

    def state_changed(self) -> None:
        """Schedule a publish of the retained ``<base>/state`` snapshot.

        Calls within :data:`STATE_DEBOUNCE` (0.5 s) of the first pending one are coalesced into
        one publish of the then-current ``state()``. While disconnected the snapshot is sent on
        the next connect anyway. Must be called on the event-loop thread.
        """
        if self._state_due is None:
            self._state_due = time.monotonic() + STATE_DEBOUNCE
            self._wake.set()

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._connected

    async def start(self) -> None:
        """Spawn the background connection task and return immediately (never waits for the
        broker). Calling it while already running does nothing."""
        if self._task is not None and not self._task.done():
            return
        self._stopping.clear()
        self._flush_deadline = None
        self._delay = BACKOFF_MIN
        self._task = asyncio.create_task(self._run(), name="harbord.mqtt")
        log.info("mqtt.start", host=self.cfg.host, port=self.cfg.port, base_topic=self.cfg.base_topic)

    async def stop(self) -> None:
        """Shut down cleanly within about :data:`STOP_SECONDS` (3.5 s).

        If connected: deliver what the outbox holds for up to :data:`FLUSH_SECONDS` (the rest
        stays in the outbox for the next start), publish a pending state snapshot and retained
        ``stopped`` on ``<base>/status``, then disconnect (a clean DISCONNECT, so the broker
        drops the ``offline`` will). If not connected, the task is cancelled at once: nothing
        can be published, and the outbox keeps the events. Never raises for broker trouble.
        """
        task = self._task
        if task is None:
            return
        self._task = None
        if task.done():
            return
        if not self._connected:
            task.cancel()
        else:
            self._flush_deadline = time.monotonic() + FLUSH_SECONDS
            self._stopping.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_SECONDS)
            except TimeoutError:
                log.warning("mqtt.stop_timeout", seconds=STOP_SECONDS)
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("mqtt.stopped")

    # --- background task ----------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        cfg = self.cfg
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            tls_params=(
                aiomqtt.TLSParameters(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
                if cfg.tls
                else None
            ),
            keepalive=cfg.keepalive,
            will=aiomqtt.Will(self.status_topic, "offline", qos=1, retain=True),
            timeout=PUBLISH_TIMEOUT,
        )

    async def _run(self) -> None:
        """Connect, serve, and reconnect with exponential backoff until stopped."""
        while True:
            try:
                await self._session()
                return  # only after a clean stop
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the publisher must outlive any failure
                if self._stopping.is_set():
                    log.warning("mqtt.stop_incomplete", error=_describe(err))
                    return
                log.warning("mqtt.unavailable", error=_describe(err), retry_in=self._delay,
                            host=self.cfg.host, port=self.cfg.port)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._delay)
            if self._stopping.is_set():
                return
            self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        """One connection: announce, then serve until stopped (returns) or disconnected (raises)."""
        client = self._client()
        try:
            await client.__aenter__()
        except asyncio.CancelledError:
            _abandon(client)
            raise
        try:
            self._connected = True
            self._delay = BACKOFF_MIN
            log.info("mqtt.connected", host=self.cfg.host, port=self.cfg.port,
                     client_id=self.cfg.client_id)
            await client.publish(self.status_topic, "online", qos=1, retain=True)
            if self.cfg.discovery:
                await client.subscribe(self.ha_status_topic, qos=1)
                await self._publish_discovery(client)
            await self._publish_state(client)
            async with asyncio.TaskGroup() as group:
                listener = group.create_task(self._listen(client))
                group.create_task(self._serve(client, listener))
            await client.publish(self.status_topic, "stopped", qos=1, retain=True)
            log.info("mqtt.status_stopped")
        finally:
            self._connected = False
            await client.__aexit__(None, None, None)  # no-op when the connection is already gone

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Watch incoming messages; raises MqttError when the connection drops."""
        async for message in client.messages:
            if (
                message.topic.matches(self.ha_status_topic)
                and not message.retain  # a stale retained birth arrives on every subscribe
                and _text(message.payload).strip() == "online"
            ):
                log.info("mqtt.home_assistant_online")
                self._rediscover = True
                self._wake.set()

    async def _serve(self, client: aiomqtt.Client, listener: asyncio.Task[None]) -> None:
        """Drain the outbox, publish due state and discovery, wait for a wake-up; until stop."""
        while True:
            self._wake.clear()
            if self._rediscover:
                self._rediscover = False
                await self._publish_discovery(client)
                await self._publish_state(client)
            await self._drain(client)
            if self._state_due is not None and (
                self._stopping.is_set() or time.monotonic() >= self._state_due
            ):
                await self._publish_state(client)
            if self._stopping.is_set():
                listener.cancel()
                return
            timeout = POLL_SECONDS
            if self._state_due is not None:
                timeout = max(0.0, min(timeout, self._state_due - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish outbox rows in id order; delete each after its PUBACK (QoS 1)."""
        if self._outbox.unsaved:
            await ready(self.db)
            self._outbox.save_pending()
        while True:
            rows = self.db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?", [BATCH_ROWS]
            ).fetchall()
            if not rows:
                return
            for row_id, topic, payload, qos, retain in rows:
                if self._flush_deadline is not None and time.monotonic() > self._flush_deadline:
                    left = self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
                    log.warning("mqtt.flush_incomplete", left_in_outbox=left)
                    return
                await client.publish(topic, payload, qos=int(qos), retain=bool(retain),
                                     timeout=PUBLISH_TIMEOUT)
                await ready(self.db)
                self.db.execute("DELETE FROM outbox WHERE id = ?", [row_id])

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        for topic, config in discovery_configs(self.cfg, self.version).items():
            await client.publish(topic, json.dumps(config), qos=1, retain=True)
        log.info("mqtt.discovery_published", prefix=self.cfg.discovery_prefix)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        self._state_due = None
        try:
            payload = json.dumps(self.state(), default=str, ensure_ascii=False)
        except Exception as err:  # a broken snapshot must not kill the publisher
            log.error("mqtt.state_failed", error=repr(err))
            return
        await client.publish(self.state_topic, payload, qos=1, retain=True)


def _abandon(client: aiomqtt.Client) -> None:
    """Best effort after a connection attempt was cancelled while waiting for CONNACK.

    aiomqtt 2.5's ``__aenter__`` does not clean up on cancellation, which would leave the
    socket registered with the event loop; paho's public ``disconnect()`` sends DISCONNECT and
    closes it from the loop's write callback. aiomqtt's ``on_disconnect`` callback is detached
    first: its connection future was cancelled with the attempt and would raise in the loop.
    A no-op when the socket does not exist yet.
    """
    paho = getattr(client, "_client", None)
    if paho is not None:
        with contextlib.suppress(Exception):
            paho.on_disconnect = None
            paho.disconnect()


def _text(payload: Any) -> str:
    """An incoming payload (bytes, str, number or None) as text."""
    if isinstance(payload, bytes | bytearray):
        return payload.decode("utf-8", "replace")
    return "" if payload is None else str(payload)


def _describe(err: BaseException) -> str:
    """One line for a (possibly grouped) error, e.g. ``MqttError: [Errno 111] Connection refused``."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in err.exceptions)
    return f"{type(err).__name__}: {err}"
