"""harbord.mqtt against a real Mosquitto (the session ``broker`` fixture) and a real SQLite file.

Every test uses its own base topic, client id and discovery prefix, so retained messages of
one test never satisfy another.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import pytest
import structlog
from sqlite_utils import Database

from harbord import mqtt
from harbord.catalog import open_db
from harbord.config import MqttConfig
from harbord.events import make_event
from harbord.mqtt import OutboxSink, Publisher, discovery_configs, node_id
from tests.support.broker import Mosquitto, free_port
from tests.support.waits import async_wait_until

ROOT = Path(__file__).resolve().parents[1]


def make_cfg(port: int, **overrides: Any) -> MqttConfig:
    """A config on 127.0.0.1:port with a unique base topic, client id and discovery prefix."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "base_topic": f"test-{tag}/harbord",
        "client_id": f"harbord-{tag}",
        "discovery_prefix": f"ha-{tag}",
        "keepalive": 5,
        "discovery": False,
    }
    values.update(overrides)
    return MqttConfig(**values)


def outbox_rows(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


class Received:
    """Messages one subscriber has seen, in arrival order."""

    def __init__(self) -> None:
        self.messages: list[aiomqtt.Message] = []
        self._new = asyncio.Event()

    async def pump(self, client: aiomqtt.Client) -> None:
        with suppress(aiomqtt.MqttError):
            async for message in client.messages:
                self.messages.append(message)
                self._new.set()

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.matches(topic)]

    def payloads(self, topic: str) -> list[str]:
        return [payload_text(m) for m in self.on(topic)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        """Wait until ``predicate()`` holds; fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
            self._new.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), timeout=min(left, 0.1))


def payload_text(message: aiomqtt.Message) -> str:
    payload = message.payload
    assert isinstance(payload, bytes | bytearray)
    return payload.decode()


@asynccontextmanager
async def subscriber(port: int, *topics: str) -> AsyncIterator[tuple[aiomqtt.Client, Received]]:
    """A plain aiomqtt client subscribed (QoS 1) to ``topics``, collecting what arrives."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{uuid.uuid4().hex[:8]}") as client:
        received = Received()
        for topic in topics:
            await client.subscribe(topic, qos=1)
        task = asyncio.create_task(received.pump(client))
        try:
            yield client, received
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


async def retained(port: int, topic: str) -> aiomqtt.Message:
    """The retained message on ``topic`` as a fresh subscriber sees it."""
    async with subscriber(port, topic) as (_, got):
        await got.until(lambda: bool(got.on(topic)), what=f"retained message on {topic}")
        message = got.on(topic)[0]
        assert message.retain, f"{topic}: message is not retained"
        return message


async def sender_idle(publisher: Publisher, db: Database, got: Received, topic: str) -> dict[str, Any]:
    """Emit a probe event and wait until ``got`` has it on ``topic`` and its outbox row is gone.

    The sender deletes a row after its PUBACK and, with nothing else to publish, goes straight
    on to wait for a wake-up (or the next poll) with no await in between: once the test sees
    the outbox empty, the sender is idle. Returns the probe, which arrives first on ``topic``.
    """
    probe = make_event("queued", f"probe-{uuid.uuid4().hex[:8]}", "/inbox/probe.mkv")
    publisher.emit(probe)
    await got.until(lambda: probe in map(json.loads, got.payloads(topic)) and outbox_rows(db) == 0,
                    what="the probe event delivered and its outbox row deleted")
    return probe


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_db(tmp_path / "h.db")
    yield database
    database.close()


@pytest.fixture
async def publishers() -> AsyncIterator[list[Publisher]]:
    """Publishers a test creates; all are stopped at teardown."""
    made: list[Publisher] = []
    yield made
    for publisher in made:
        await publisher.stop()


def events(count: int, prefix: str = "job") -> list[dict[str, Any]]:
    types = ["queued", "stage", "ingested", "duplicate", "failed", "dead"]
    return [
        make_event(types[i % len(types)], f"{prefix}-{i:04d}", f"/inbox/{prefix}/{i}.mkv",
                   item_id=i if i % 2 else None, stage="probe" if i % 3 == 0 else None)
        for i in range(count)
    ]


# --- status ------------------------------------------------------------------------------------


async def test_start_returns_at_once_then_online_retained_and_stopped_after_stop(
    broker: Mosquitto, db: Database
) -> None:
    cfg = make_cfg(broker.port)
    status = f"{cfg.base_topic}/status"
    publisher = Publisher(cfg, db, dict)
    async with subscriber(broker.port, status) as (_, got):
        await publisher.start()
        assert not publisher.connected  # start() did not wait for the broker
        try:
            await got.until(lambda: got.payloads(status)[-1:] == ["online"], what="online")
            assert publisher.connected
            message = await retained(broker.port, status)
            assert payload_text(message) == "online"
            assert message.qos == 1
        finally:
            await publisher.stop()
    assert not publisher.connected
    assert payload_text(await retained(broker.port, status)) == "stopped"


async def test_last_will_offline_when_process_is_killed(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_cfg(broker.port, keepalive=5)
    status = f"{cfg.base_topic}/status"
    script = (
        "import asyncio, sys\n"
        "from harbord.catalog import open_db\n"
        "from harbord.config import MqttConfig\n"
        "from harbord.mqtt import Publisher\n"
        "async def main():\n"
        "    cfg = MqttConfig.model_validate_json(sys.argv[1])\n"
        "    publisher = Publisher(cfg, open_db(sys.argv[2]), dict)\n"
        "    await publisher.start()\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with subscriber(broker.port, status) as (_, got):
        proc = subprocess.Popen(
            [sys.executable, "-c", script, cfg.model_dump_json(), str(tmp_path / "will.db")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )
        try:
            await got.until(lambda: "online" in got.payloads(status), timeout=20, what="online")
            proc.kill()  # SIGKILL: no clean DISCONNECT, the broker must publish the will
            proc.wait(5)
            await got.until(lambda: got.payloads(status)[-1:] == ["offline"], timeout=15,
                            what="offline will")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert payload_text(await retained(broker.port, status)) == "offline"


# --- events and the outbox ---------------------------------------------------------------------


async def test_events_arrive_in_order_with_their_fields(
    broker: Mosquitto, db: Database, publishers: list[Publisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "POLL_SECONDS", 60.0)  # so only emit()'s wake-up can deliver in time
    cfg = make_cfg(broker.port)
    topic, state = f"{cfg.base_topic}/events", f"{cfg.base_topic}/state"
    sent = events(60)
    async with subscriber(broker.port, topic, state) as (_, got):
        publisher = Publisher(cfg, db, dict)
        publishers.append(publisher)
        await publisher.start()
        await got.until(lambda: bool(got.on(state)), what="connected")
        probe = await sender_idle(publisher, db, got, topic)
        for event in sent:
            publisher.emit(event)
        await got.until(lambda: len(got.on(topic)) >= len(sent) + 1, what="60 events")
        assert [json.loads(payload_text(m)) for m in got.on(topic)] == [probe, *sent]
        assert all(m.qos == 1 and not m.retain for m in got.on(topic))
        await got.until(lambda: outbox_rows(db) == 0, what="empty outbox")


class Gate:
    """A TCP relay to the broker whose listening socket can be shut (connections refused).

    Lets the test decide when the publisher may reconnect, so the test's own subscriber is
    subscribed again (after a broker restart) before the publisher delivers the backlog.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def shut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_outbox_delivers_every_event_once_in_order_after_broker_outage(
    broker: Mosquitto, db: Database, publishers: list[Publisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "BACKOFF_MAX", 1.0)  # keep the test short; the logic is the same
    gate = Gate(broker.port)
    await gate.open()
    cfg = make_cfg(gate.port)
    topic, status = f"{cfg.base_topic}/events", f"{cfg.base_topic}/status"
    publisher = Publisher(cfg, db, dict)
    publishers.append(publisher)
    try:
        async with subscriber(broker.port, topic, status) as (_, got):
            await publisher.start()
            publisher.emit(make_event("queued", "before", "/inbox/before.mkv"))
            await got.until(lambda: len(got.on(topic)) == 1, what="first event")

            await asyncio.to_thread(broker.stop)
            await gate.shut()  # while the gate is shut the publisher cannot reconnect
            await got.until(lambda: not publisher.connected, what="publisher to notice the outage")

        outage = events(20, prefix="outage")
        for event in outage:
            publisher.emit(event)
        assert outbox_rows(db) == 20

        await asyncio.to_thread(broker.start)
        async with subscriber(broker.port, topic) as (_, got):
            await gate.open()
            await got.until(lambda: len(got.on(topic)) >= 20, timeout=20, what="20 events")
            # A marker emitted after the backlog: once it is delivered and the outbox is empty,
            # nothing is left that could be sent again.
            marker = make_event("queued", "after", "/inbox/after.mkv")
            publisher.emit(marker)
            await got.until(lambda: marker in map(json.loads, got.payloads(topic)) and outbox_rows(db) == 0,
                            what="the marker delivered and an empty outbox")
            assert [json.loads(payload_text(m)) for m in got.on(topic)] == [*outage, marker]
    finally:
        await publisher.stop()
        await gate.shut()


class SilentBroker:
    """Accepts TCP connections and never answers: a broker that hangs."""

    def __init__(self) -> None:
        self.port = 0
        self.received = 0
        """Bytes received so far (a client's CONNECT, then nothing more while it waits)."""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentBroker:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with suppress(OSError):
            while data := await reader.read(4096):
                self.received += len(data)


async def test_emit_and_stop_never_wait_for_a_hung_broker_and_events_survive(
    broker: Mosquitto, db: Database, publishers: list[Publisher]
) -> None:
    sent = events(1000)
    async with SilentBroker() as silent:
        hung_cfg = make_cfg(silent.port)
        publisher = Publisher(hung_cfg, db, dict)
        await publisher.start()
        # its CONNECT arrived: the connection attempt is now waiting for a CONNACK
        await async_wait_until(lambda: silent.received > 0, what="the CONNECT packet")
        began = time.monotonic()
        for event in sent:
            publisher.emit(event)
        emitting = time.monotonic() - began
        assert not publisher.connected
        assert outbox_rows(db) == 1000
        assert emitting < 1.0, f"1000 emits took {emitting:.2f} s"
        began = time.monotonic()
        await publisher.stop()
        assert time.monotonic() - began < mqtt.STOP_SECONDS
    assert outbox_rows(db) == 1000  # kept for the next start

    # The next run (a reachable broker) delivers the backlog, in order.
    cfg = hung_cfg.model_copy(update={"port": broker.port})
    topic = f"{cfg.base_topic}/events"
    async with subscriber(broker.port, topic) as (_, got):
        publisher = Publisher(cfg, db, dict)
        publishers.append(publisher)
        await publisher.start()
        await got.until(lambda: len(got.on(topic)) >= 1000, timeout=15, what="1000 events")
        assert [json.loads(payload_text(m))["job_id"] for m in got.on(topic)] == [
            e["job_id"] for e in sent
        ]


async def test_rows_written_by_another_process_are_delivered_by_polling(
    broker: Mosquitto, tmp_path: Path, publishers: list[Publisher]
) -> None:
    cfg = make_cfg(broker.port)
    topic = f"{cfg.base_topic}/events"
    daemon_db = open_db(tmp_path / "h.db")
    cli_db = open_db(tmp_path / "h.db")  # a second connection, like `harbord ingest`
    try:
        async with subscriber(broker.port, topic) as (_, got):
            publisher = Publisher(cfg, daemon_db, dict)
            publishers.append(publisher)
            await publisher.start()
            probe = await sender_idle(publisher, daemon_db, got, topic)
            sent = events(3, prefix="cli")
            sink = OutboxSink(cfg, cli_db)
            for event in sent:
                sink.emit(event)  # nobody wakes the publisher
            await got.until(lambda: len(got.on(topic)) >= 4, timeout=mqtt.POLL_SECONDS + 3,
                            what="polled events")
            assert [json.loads(payload_text(m)) for m in got.on(topic)] == [probe, *sent]
    finally:
        await publishers.pop().stop()
        daemon_db.close()
        cli_db.close()


def test_outbox_is_bounded_and_keeps_the_newest(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "MAX_OUTBOX_ROWS", 50)
    monkeypatch.setattr(mqtt, "TRIM_EVERY", 10)
    sink = OutboxSink(make_cfg(1883), db)
    sent = events(205)
    for event in sent:
        sink.emit(event)
    rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()]
    assert 50 <= len(rows) <= 60
    assert rows == sent[-len(rows):]


# --- state and discovery -----------------------------------------------------------------------


async def test_state_is_retained_and_state_changed_is_debounced(
    broker: Mosquitto, db: Database, publishers: list[Publisher]
) -> None:
    cfg = make_cfg(broker.port)
    topic, status = f"{cfg.base_topic}/state", f"{cfg.base_topic}/status"
    snapshot: dict[str, Any] = {"queue_depth": 0, "active_jobs": 0, "dead": 0, "jobs": {},
                                "ingested_total": 0, "failed_total": 0, "last_item": None}
    publisher = Publisher(cfg, db, lambda: dict(snapshot))
    publishers.append(publisher)
    async with subscriber(broker.port, topic, status) as (_, got):
        await publisher.start()
        await got.until(lambda: bool(got.on(topic)), what="state at connect")
        assert json.loads(payload_text(got.on(topic)[0])) == snapshot

        # Three changes 0.1 s apart, inside one 0.5 s debounce window: one publish, of the
        # snapshot as it is when the window closes.
        for depth in (1, 2, 3):
            snapshot.update(queue_depth=depth, active_jobs=depth, ingested_total=9,
                            last_item={"id": 9, "title": "Brick"})
            publisher.state_changed()
            await asyncio.sleep(0.1)  # the changes' pace (scenario)
        await got.until(lambda: len(got.on(topic)) >= 2, what="state after state_changed")
        # stop() publishes a state still pending, then "stopped", and nothing after that:
        # once "stopped" is here, a second publish of the window would be here too.
        await publisher.stop()
        await got.until(lambda: got.payloads(status)[-1:] == ["stopped"], what="stopped")
        assert len(got.on(topic)) == 2, "changes within the debounce window should make one publish"
        assert json.loads(payload_text(got.on(topic)[1])) == snapshot
    message = await retained(broker.port, topic)
    assert json.loads(payload_text(message)) == snapshot
    assert message.qos == 1


def render(template: str, **variables: Any) -> str:
    """Render like Home Assistant does for ``value_template`` (Jinja2, ``value_json``)."""
    return jinja2.Environment(autoescape=False).from_string(template).render(**variables)


async def test_discovery_configs_are_retained_and_resent_when_home_assistant_comes_online(
    broker: Mosquitto, db: Database, publishers: list[Publisher]
) -> None:
    cfg = make_cfg(broker.port, discovery=True)
    base, prefix, node = cfg.base_topic, cfg.discovery_prefix, node_id(cfg.base_topic)
    state = {"queue_depth": 3, "active_jobs": 1, "dead": 0, "ingested_total": 7, "failed_total": 2}
    publisher = Publisher(cfg, db, lambda: state, version="9.9.9-test")
    publishers.append(publisher)
    expected_topics = {
        f"{prefix}/sensor/{node}/queue_depth/config",
        f"{prefix}/sensor/{node}/ingested_total/config",
        f"{prefix}/sensor/{node}/failed_total/config",
        f"{prefix}/binary_sensor/{node}/importing/config",
        f"{prefix}/binary_sensor/{node}/problem/config",
    }
    async with subscriber(broker.port, f"{base}/state") as (_, early):
        await publisher.start()
        await early.until(lambda: bool(early.on(f"{base}/state")), what="state")  # sent after discovery

    configs_filter = f"{prefix}/+/+/+/config"
    async with subscriber(broker.port, configs_filter, f"{base}/state") as (client, got):
        await got.until(lambda: len(got.on(configs_filter)) >= 5, what="5 retained configs")
        first = got.on(configs_filter)
        assert {m.topic.value for m in first} == expected_topics
        assert all(m.retain for m in first)
        configs = {m.topic.value: json.loads(payload_text(m)) for m in first}
        assert len({c["unique_id"] for c in configs.values()}) == 5
        for config in configs.values():
            assert config["state_topic"] == f"{base}/state"
            assert config["availability_topic"] == f"{base}/status"
            assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
            assert config["device"]["identifiers"] == [node]
            assert config["device"]["sw_version"] == "9.9.9-test"
            assert config["device"]["manufacturer"] == "harbord"
            avail = config["availability_template"]
            assert [render(avail, value=v) for v in ("online", "offline", "stopped")] == [
                "online", "offline", "offline"]
        values = {
            topic.split("/")[-2]: render(c["value_template"], value_json=state)
            for topic, c in configs.items()
        }
        assert values == {"queue_depth": "3", "ingested_total": "7", "failed_total": "2",
                          "importing": "ON", "problem": "OFF"}
        problem = configs[f"{prefix}/binary_sensor/{node}/problem/config"]
        assert problem["device_class"] == "problem"
        assert render(problem["value_template"], value_json={**state, "dead": 2}) == "ON"
        assert render(configs[f"{prefix}/binary_sensor/{node}/importing/config"]["value_template"],
                      value_json={**state, "active_jobs": 0}) == "OFF"

        states_before = len(got.on(f"{base}/state"))
        await client.publish(f"{prefix}/status", "online", qos=1)  # Home Assistant's birth message
        await got.until(lambda: len(got.on(configs_filter)) >= 10, what="re-sent configs")
        resent = got.on(configs_filter)[5:]
        assert {m.topic.value for m in resent} == expected_topics
        await got.until(lambda: len(got.on(f"{base}/state")) > states_before, what="re-sent state")

        # The retained copies are still the configs (re-sent with retain set).
        async with subscriber(broker.port, configs_filter) as (_, fresh):
            await fresh.until(lambda: len(fresh.on(configs_filter)) >= 5, what="retained again")
            assert all(m.retain for m in fresh.on(configs_filter))


def test_discovery_configs_default_node_and_topics() -> None:
    configs = discovery_configs(MqttConfig(), "1.2.3")
    assert set(configs) == {
        "homeassistant/sensor/harbord/queue_depth/config",
        "homeassistant/sensor/harbord/ingested_total/config",
        "homeassistant/sensor/harbord/failed_total/config",
        "homeassistant/binary_sensor/harbord/importing/config",
        "homeassistant/binary_sensor/harbord/problem/config",
    }
    assert node_id("home/harbord") == "home_harbord"


# --- misc --------------------------------------------------------------------------------------


async def test_password_is_used_but_never_logged(
    broker: Mosquitto, db: Database, publishers: list[Publisher]
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    cfg = make_cfg(broker.port, username="harbord", password=secret)
    status = f"{cfg.base_topic}/status"
    with structlog.testing.capture_logs() as logs:
        async with subscriber(broker.port, status) as (_, got):
            publisher = Publisher(cfg, db, dict)
            publishers.append(publisher)
            await publisher.start()
            await got.until(lambda: "online" in got.payloads(status), what="online")
            await publishers.pop().stop()
    assert any(entry["event"] == "mqtt.connected" for entry in logs)
    assert secret not in repr(logs)
