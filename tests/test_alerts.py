"""Tests of app/alerts.py against real endpoints: HTTP servers on loopback (answering, failing, hanging, closed) and
a Mosquitto broker of each test's own, stopped, restarted and outlived by a killed publisher. Nothing is mocked."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from helpers import Broker, Receiver, Subscriber, free_port, wait_until

from app.alerts import Alerts, AlertSettings, event_payload
from app.errors import ConfigError
from app.records import utc_now
from app.runtime import ROOT
from app.schema import EventRow

FAST = {"timeout": 1.0, "retry_delay": 0.05, "retry_max_delay": 0.2, "max_attempts": 3}  # back-off in tests
QUICK = 0.05  # event() and status() must return within this, whatever the endpoints do


def row(closed: bool = False) -> EventRow:
    return EventRow(
        run_id="run-1", item="camera 0", reason="bare hand near the blade", class_name="hand", start_frame=30,
        end_frame=95 if closed else 30, start_time=1.5, end_time=4.75 if closed else 1.5, peak_confidence=0.913,
        snapshot="events/1.jpg", closed=closed, recorded_at=utc_now(), id=7,
    )  # fmt: skip


def timed(call: Any, *args: Any) -> float:
    """Seconds a call took."""
    t0 = time.perf_counter()
    call(*args)
    return time.perf_counter() - t0


# --- HTTP endpoints ---


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A port that completes the TCP handshake (the kernel does, from the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/hook"


# --- MQTT ---


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def mqtt_settings(port: int, **kw: Any) -> AlertSettings:
    return AlertSettings(mqtt_host="127.0.0.1", mqtt_port=port, mqtt_prefix="plant/gloves", **FAST, **kw)


# --- settings and payloads ---


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"webhooks": ("ftp://host/hook",)}, "ftp://host/hook"),
        ({"webhooks": ("http://",)}, "http://"),
        ({"webhooks": ("http://host:99999/hook",)}, "99999"),
        ({"webhooks": ("http://user:pw@host/hook",)}, "user or password"),
        ({"webhooks": "http://host/hook"}, "not one string"),
        ({"mqtt_port": 0}, "mqtt_port"),
        ({"mqtt_port": 65536}, "65536"),
        ({"mqtt_host": " "}, "mqtt_host"),
        ({"mqtt_prefix": "gloves/#"}, "gloves/#"),
        ({"mqtt_prefix": "/gloves"}, "mqtt_prefix"),
        ({"timeout": 0}, "timeout"),
        ({"retry_delay": 5, "retry_max_delay": 1}, "retry_delay"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_bad_settings_are_refused_in_one_line(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as error:
        AlertSettings(**kwargs)
    key = next(iter(kwargs))
    assert key in str(error.value) and named in str(error.value) and "\n" not in str(error.value)
    assert "pw" not in str(error.value)


def test_bad_monitor_names_and_states_are_refused() -> None:
    for name in ("", "saw/1", "saw+", "saw#"):
        with pytest.raises(ConfigError, match="monitor name"):
            Alerts(AlertSettings(), name)
    with Alerts(AlertSettings(), "saw-1") as alerts:  # nothing configured: a valid no-op
        with pytest.raises(ValueError, match="opened, closed"):
            alerts.event("started", {})
        alerts.event("opened", {})
        alerts.status({"status": "running"})
        assert alerts.stats["webhook"] == {"delivered": 0, "failed": 0, "dropped": 0, "pending": 0}


def test_event_payload_fields() -> None:
    payload = event_payload(row(closed=True), "gloves_forbidden", snapshot=Path("/runs/r1/e7.jpg"), clip=None)
    at = payload.pop("at")
    assert datetime.fromisoformat(at).tzinfo is not None
    assert payload == {
        "event_id": 7, "run_id": "run-1", "item": "camera 0", "policy": "gloves_forbidden",
        "reason": "bare hand near the blade", "class": "hand", "peak_confidence": 0.913, "start_frame": 30,
        "end_frame": 95, "start_time": 1.5, "end_time": 4.75, "snapshot": "/runs/r1/e7.jpg", "clip": None,
    }  # fmt: skip
    json.dumps(payload)  # ready to send as it is


# --- webhooks ---


def test_webhook_receives_opened_and_closed_events(receiver: Receiver) -> None:
    alerts = Alerts(AlertSettings(webhooks=(receiver.url,), **FAST), "saw-1")
    opened = event_payload(row(), "gloves_forbidden", snapshot="/runs/r1/e7.jpg")
    closed = event_payload(row(closed=True), "gloves_forbidden", snapshot="/runs/r1/e7.jpg", clip="/clips/e7.mp4")
    assert timed(alerts.event, "opened", opened) < QUICK
    assert timed(alerts.event, "closed", closed) < QUICK
    path, headers, body = receiver.requests.get(timeout=10)
    assert path == "/hooks/gloves?token=secret" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {**opened, "monitor": "saw-1", "state": "opened"}
    assert receiver.body() == {**closed, "monitor": "saw-1", "state": "closed"}
    alerts.close()
    assert alerts.stats["webhook"] == {"delivered": 2, "failed": 0, "dropped": 0, "pending": 0}
    alerts.event("opened", opened)  # after close(): nothing is sent
    time.sleep(0.2)
    assert receiver.hits == 2


def test_webhook_retries_with_back_off_and_gives_up_on_client_errors() -> None:
    flaky, refusing, redirecting = Receiver((500, 500)), Receiver((400,)), Receiver((302,))
    try:
        settings = AlertSettings(webhooks=(flaky.url, refusing.url, redirecting.url), **{**FAST, "max_attempts": 5})
        with Alerts(settings, "saw-1") as alerts:
            t0 = time.monotonic()
            alerts.event("opened", {"n": 1})
            wait_until(lambda: alerts.stats["webhook"]["pending"] == 0, what="all deliveries settled")
            assert time.monotonic() - t0 < 5
            assert alerts.stats["webhook"] == {"delivered": 1, "failed": 2, "dropped": 0, "pending": 0}
        assert flaky.hits == 3  # 500, 500, then delivered on the 3rd attempt (back-off 0.05 s, 0.1 s)
        bodies = [flaky.body() for _ in range(3)]
        assert bodies[0] == bodies[2] == {"n": 1, "monitor": "saw-1", "state": "opened"}
        assert refusing.hits == 1 and redirecting.hits == 1  # 4xx and redirects are not retried
    finally:
        for r in (flaky, refusing, redirecting):
            r.close()


def test_hanging_and_closed_endpoints_delay_nothing_else(receiver: Receiver, hanging_url: str) -> None:
    closed_url = f"http://127.0.0.1:{free_port()}/hook"
    settings = AlertSettings(webhooks=(hanging_url, closed_url, receiver.url), **{**FAST, "timeout": 0.5})
    alerts = Alerts(settings, "saw-1")
    assert timed(alerts.event, "opened", {"n": 1}) < QUICK
    assert timed(alerts.event, "closed", {"n": 1}) < QUICK
    t0 = time.monotonic()
    assert receiver.body()["state"] == "opened"
    assert receiver.body()["state"] == "closed"
    assert time.monotonic() - t0 < 3  # at most one hung attempt (0.5 s) before each
    assert timed(alerts.close, 1.0) < 1.2
    # The sender ends by close()'s deadline; it may need a moment more to count its last attempt.
    wait_until(lambda: alerts.stats["webhook"]["pending"] == 0, timeout=2, what="the sender to stop")
    stats = alerts.stats["webhook"]
    assert stats["delivered"] == 2 and stats["failed"] + stats["dropped"] == 4, stats
    assert not [t for t in threading.enumerate() if t.name.startswith("alerts-")]


def test_full_queue_drops_the_oldest(hanging_url: str) -> None:
    alerts = Alerts(AlertSettings(webhooks=(hanging_url,), **{**FAST, "queue_size": 2}), "saw-1")
    for n in range(6):
        assert timed(alerts.event, "opened", {"n": n}) < QUICK
    stats = alerts.stats["webhook"]
    # One delivery may be in flight (hanging); two wait; the rest were dropped, oldest first.
    assert stats["dropped"] in (3, 4) and stats["pending"] == 6 - stats["dropped"], stats
    assert timed(alerts.close, 0.3) < 0.5


# --- MQTT ---


def test_mqtt_events_and_retained_status(broker: Broker) -> None:
    events = Subscriber(broker.port, "plant/gloves/saw-1/events")
    alerts = Alerts(mqtt_settings(broker.port), "saw-1")
    opened = event_payload(row(), "gloves_required", snapshot="/runs/r1/e7.jpg")
    closed = event_payload(row(closed=True), "gloves_required", snapshot="/runs/r1/e7.jpg", clip="/clips/e7.mp4")
    assert timed(alerts.event, "opened", opened) < QUICK
    assert timed(alerts.event, "closed", closed) < QUICK
    assert events.get() == ({**opened, "monitor": "saw-1", "state": "opened"}, False)
    assert events.get() == ({**closed, "monitor": "saw-1", "state": "closed"}, False)
    assert events.messages.empty()  # one message per open and per close

    status = {"status": "running", "fps": 12.5, "violation": True, "last_frame_at": utc_now()}
    assert timed(alerts.status, status) < QUICK
    wait_until(lambda: alerts.stats["mqtt"]["pending"] == 0, what="the status to be acknowledged")
    late = Subscriber(broker.port, "plant/gloves/saw-1/status")  # connects after status(): gets the retained one
    message, retained = late.get()
    assert retained and message == {**status, "monitor": "saw-1", "updated_at": message["updated_at"]}
    assert datetime.fromisoformat(message["updated_at"]).tzinfo is not None

    alerts.status({"status": "stopped"})
    alerts.close()
    assert late.get()[0]["status"] == "stopped"
    assert alerts.stats["mqtt"] == {"delivered": 4, "failed": 0, "dropped": 0, "pending": 0, "connected": 0}
    later = Subscriber(broker.port, "plant/gloves/saw-1/status")
    assert later.get()[0]["status"] == "stopped"  # a clean close: no last will
    for s in (events, late, later):
        s.close()


def test_last_will_says_offline_when_the_monitor_dies(broker: Broker) -> None:
    status = Subscriber(broker.port, "plant/gloves/saw-1/status")
    script = (
        "import sys, time\n"
        "from app.alerts import AlertSettings, Alerts\n"
        "settings = AlertSettings(mqtt_host='127.0.0.1', mqtt_port=int(sys.argv[1]), mqtt_prefix='plant/gloves')\n"
        "Alerts(settings, 'saw-1').status({'status': 'running'})\n"
        "time.sleep(120)\n"
    )
    monitor = subprocess.Popen([sys.executable, "-c", script, str(broker.port)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        try:
            assert status.get(timeout=60)[0]["status"] == "running"  # the child imports torch first
        except queue.Empty:
            monitor.kill()
            pytest.fail(f"the monitor process published no status: {monitor.communicate()[1].decode()[-2000:]}")
        monitor.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
        assert status.get()[0] == {"status": "offline", "monitor": "saw-1"}
        late = Subscriber(broker.port, "plant/gloves/saw-1/status")
        assert late.get() == ({"status": "offline", "monitor": "saw-1"}, True)  # the will is retained
        late.close()
    finally:
        monitor.kill()
        monitor.communicate()
        status.close()


def test_broker_outage_queues_messages_and_never_blocks(tmp_path: Path) -> None:
    # Persistence keeps the subscriber's session (its QoS 1 subscription) across the restart, so it gets the
    # messages whichever client reconnects first.
    broker = Broker(tmp_path, persistence=True).start()
    events = Subscriber(broker.port, "plant/gloves/saw-1/events", client_id="durable", clean_session=False)
    alerts = Alerts(mqtt_settings(broker.port), "saw-1")
    try:
        alerts.event("opened", {"n": 0})
        assert events.get()[0]["n"] == 0

        broker.stop()
        wait_until(lambda: not alerts.stats["mqtt"]["connected"], what="the alerts client to see the outage")
        for n in range(1, 4):
            assert timed(alerts.event, "closed" if n % 2 else "opened", {"n": n}) < QUICK
            assert timed(alerts.status, {"status": "running", "n": n}) < QUICK
        time.sleep(0.3)  # a few failed reconnects (0.05 s, 0.1 s, 0.2 s back-off)
        assert alerts.stats["mqtt"]["pending"] == 3  # the events; of the statuses only the latest is kept

        broker.start()  # the same port
        assert [events.get()[0]["n"] for _ in range(3)] == [1, 2, 3]
        wait_until(lambda: alerts.stats["mqtt"]["pending"] == 0, what="the queued messages to be acknowledged")
        assert alerts.stats["mqtt"]["connected"] == 1 and alerts.stats["mqtt"]["dropped"] == 0
        status = Subscriber(broker.port, "plant/gloves/saw-1/status")
        assert status.get() == ({"status": "running", "n": 3, "monitor": "saw-1", "updated_at": ANY}, True)
        status.close()
    finally:
        alerts.close()
        events.close()
        broker.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_dead_broker_blocks_nothing_and_threads_stay_flat(receiver: Receiver) -> None:
    before, fds = threading.active_count(), open_fds()
    settings = AlertSettings(webhooks=(receiver.url,), mqtt_host="127.0.0.1", mqtt_port=free_port(), **FAST)
    alerts = Alerts(settings, "saw-1")
    assert threading.active_count() == before + 2  # the webhook sender and paho's loop
    time.sleep(0.3)  # a few failed connects
    fds_running = open_fds()
    for n in range(20):
        assert timed(alerts.event, "opened", {"n": n}) < QUICK
        assert timed(alerts.status, {"status": "reconnecting"}) < QUICK
    assert [receiver.body()["n"] for _ in range(20)] == list(range(20))
    assert threading.active_count() == before + 2
    wait_until(lambda: open_fds() <= fds_running, timeout=2, what="no descriptor per alert")
    assert timed(alerts.close, 0.5) < 0.7
    # Events wait in paho's queue and are dropped at close(); of the statuses only the latest was kept, unsent.
    assert alerts.stats["mqtt"] == {"delivered": 0, "failed": 0, "dropped": 20, "pending": 0, "connected": 0}
    wait_until(lambda: threading.active_count() == before, timeout=2, what="the alerts threads to end")
    wait_until(lambda: open_fds() <= fds, timeout=2, what="the alerts sockets to close")
