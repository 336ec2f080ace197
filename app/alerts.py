"""Alerts from a camera monitor: HTTP webhooks and MQTT, sent without ever holding up detection.

A monitor makes one `Alerts` for its whole shift. When a violation event opens or closes it calls `event()`, and
every second or so `status()`; both return at once. Delivery happens elsewhere:

- webhooks: one background thread POSTs each event's JSON to every URL, with a timeout per attempt and exponential
  back-off between attempts (1, 2, 4 ... s, capped), giving up after `max_attempts`. Its queue is bounded: when it
  is full the oldest delivery is dropped, counted and logged, so a dead endpoint cannot grow memory;
- MQTT (paho-mqtt): events under `<prefix>/<monitor>/events` (QoS 1) and a retained `<prefix>/<monitor>/status`.
  paho's own thread connects and reconnects; what is published while the broker is away waits in paho's bounded
  queue and goes out on reconnect. The last will sets the status to `offline`, so subscribers learn of a crash.

    alerts = Alerts(AlertSettings(webhooks=("http://plant/hooks/gloves",), mqtt_host="broker"), monitor="bandsaw-1")
    alerts.status({"status": "running", "fps": 12.5, "violation": False})
    alerts.event("opened", event_payload(row, policy="gloves_forbidden", snapshot="/runs/r1/e1.jpg", clip=None))
    alerts.status({"status": "stopped"})
    alerts.close()
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from .errors import ConfigError
from .records import utc_now
from .schema import EventRow

log = logging.getLogger(__name__)

STATES = ("opened", "closed")
OFFLINE = "offline"  # the status the broker publishes for a monitor whose connection died (the last will)
HEADERS = {"Content-Type": "application/json", "User-Agent": "glove-safety-alerts/1"}


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and how hard to try. The defaults suit a plant network; tests shorten the delays.

    Attributes:
        webhooks: URLs (http or https) that each event is POSTed to as JSON.
        mqtt_host: The MQTT broker; None sends no MQTT.
        mqtt_port: The broker's port.
        mqtt_prefix: The first topic level(s): `<prefix>/<monitor>/events` and `<prefix>/<monitor>/status`.
        mqtt_keepalive: Seconds between pings; the broker declares the monitor offline after 1.5 times this.
        timeout: Seconds one webhook attempt may take (connect, and each read) before it counts as failed.
        retry_delay: Seconds before the second webhook attempt, doubled each time after; also paho's first
            reconnect delay.
        retry_max_delay: The cap on both delays.
        max_attempts: Webhook attempts per URL and event, the first included.
        queue_size: Deliveries waiting per channel (webhook URL x event; MQTT messages) before the oldest is
            dropped (webhooks) or new ones are refused (MQTT, paho's queue).
    """

    webhooks: tuple[str, ...] = ()
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_prefix: str = "gloves"
    mqtt_keepalive: int = 30
    timeout: float = 5.0
    retry_delay: float = 1.0
    retry_max_delay: float = 60.0
    max_attempts: int = 8  # 1 + 2 + ... + 60 s: a receiver may restart for about two minutes
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.webhooks, str):
            raise ConfigError(f"webhooks must be a list of URLs, not one string: {self.webhooks!r}")
        object.__setattr__(self, "webhooks", tuple(self.webhooks))  # a list from YAML is fine; keep it immutable
        for url in self.webhooks:
            _check_url(url)
        if not 1 <= self.mqtt_port <= 65535:
            raise ConfigError(f"mqtt_port must be 1-65535, not {self.mqtt_port}")
        if self.mqtt_host is not None and not self.mqtt_host.strip():
            raise ConfigError("mqtt_host is empty: give a host name, or none for no MQTT")
        prefix = self.mqtt_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0"):
            raise ConfigError(f"mqtt_prefix must be topic levels without '+', '#' or outer '/': {prefix!r}")
        if self.mqtt_keepalive < 5:
            raise ConfigError(f"mqtt_keepalive must be at least 5 s, not {self.mqtt_keepalive}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be above 0 s, not {self.timeout}")
        if not 0 < self.retry_delay <= self.retry_max_delay:
            raise ConfigError(
                f"retry_delay and retry_max_delay must be 0 < retry_delay <= retry_max_delay, not "
                f"{self.retry_delay} and {self.retry_max_delay}"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be at least 1, not {self.queue_size}")


def event_payload(
    event: EventRow, policy: str | None, snapshot: str | Path | None = None, clip: str | Path | None = None
) -> dict[str, Any]:
    """The JSON-ready body of an event alert; `Alerts.event` adds `monitor` and `state`, a caller may add more.

    Times `start_time` and `end_time` are seconds from the run's start (as in the records); `at` is when the alert
    was made (ISO-8601 UTC). `snapshot` and `clip` are paths on the monitor's host, not the row's run-relative one.
    """
    return {
        "event_id": event.id,
        "run_id": event.run_id,
        "item": event.item,
        "policy": policy,
        "reason": event.reason,
        "class": event.class_name,
        "peak_confidence": event.peak_confidence,
        "start_frame": event.start_frame,
        "end_frame": event.end_frame,
        "start_time": event.start_time,
        "end_time": event.end_time,
        "snapshot": None if snapshot is None else str(snapshot),
        "clip": None if clip is None else str(clip),
        "at": utc_now(),
    }


@dataclass(eq=False)  # compared by identity: the queue removes this delivery, not an equal one
class _Delivery:
    """One event's JSON for one webhook URL, with its attempts so far and when the next one is due."""

    url: str
    body: bytes
    attempts: int = 0
    due: float = 0.0  # time.monotonic()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 to a GET without the body and report success: treat redirects as errors."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Alerts:
    """The alerts of one camera monitor: `event()` and `status()` never block; `close()` flushes and stops.

    One sender thread serves every webhook URL, one paho client (with its own thread) the broker, however many
    alerts there are. Without webhooks and MQTT it does nothing, so a monitor can always make one.
    """

    def __init__(self, settings: AlertSettings, monitor: str, client_id: str | None = None) -> None:
        if not monitor or any(c in monitor for c in "/+#\0"):
            raise ConfigError(f"monitor name must be one MQTT topic level (no '/', '+' or '#'): {monitor!r}")
        self.settings = settings
        self.monitor = monitor
        self._cond = threading.Condition()  # guards everything below, and wakes the sender
        self._jobs: deque[_Delivery] = deque()
        self._in_flight = 0
        self._closing = False
        self._deadline = float("inf")  # set by close(): the sender gives up on what is still queued then
        self._counts = {c: {"delivered": 0, "failed": 0, "dropped": 0} for c in ("webhook", "mqtt")}
        self._mqtt_accepted = 0  # messages paho took; minus the delivered ones, what waits for the broker
        self._last_status: bytes | None = None
        self._connected = False
        self._outage_logged = False  # one warning per broker outage, not one per reconnect attempt
        self._status_lock = threading.Lock()  # orders status publishes; never taken in on_publish (paho's lock)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._sender: threading.Thread | None = None
        if settings.webhooks:
            self._sender = threading.Thread(target=self._send_loop, name=f"alerts-webhooks-{monitor}", daemon=True)
            self._sender.start()
        self._mqtt: mqtt.Client | None = None
        if settings.mqtt_host is not None:
            self._start_mqtt(settings.mqtt_host, client_id or f"{monitor}-{uuid.uuid4().hex[:8]}")

    # --- what the monitor calls ---

    def event(self, state: str, payload: Mapping[str, Any]) -> None:
        """Send an event that `state`s ("opened" or "closed") to every webhook and to MQTT; returns at once.

        `payload` is usually `event_payload(...)`, perhaps with fields of the caller's own; the message is the
        payload plus `monitor` and `state`. It must be JSON-serialisable (a TypeError here, not in the background).
        """
        if state not in STATES:
            raise ValueError(f"event state must be one of {', '.join(STATES)}, not {state!r}")  # a bug
        body = json.dumps({**payload, "monitor": self.monitor, "state": state}).encode()
        with self._cond:
            if self._closing:
                log.warning("alerts for %s are closed: event %s not sent", self.monitor, state)
                return
            for url in self.settings.webhooks:
                self._enqueue(_Delivery(url, body))
        self._publish("events", body, retain=False)

    def status(self, payload: Mapping[str, Any]) -> None:
        """Publish the monitor's retained MQTT status (`status`, `fps`, `violation` ...); returns at once.

        The message is the payload plus `monitor`, and `updated_at` (now) unless the payload has one. A late
        subscriber gets the latest. While the broker is away only the latest is kept, and it is published on
        (re)connect, so stale statuses never crowd events out of paho's queue (and a will sent meanwhile is undone).
        """
        body = json.dumps({"updated_at": utc_now(), **payload, "monitor": self.monitor}).encode()
        with self._status_lock:  # with _on_connect's: the broker's last retained status is the latest given
            with self._cond:
                if self._closing:
                    log.warning("alerts for %s are closed: status not published", self.monitor)
                    return
                self._last_status = body
                connected = self._connected
            if connected:
                self._publish("status", body, retain=True)

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Counts per channel ("webhook", "mqtt"): delivered, failed (gave up), dropped (queue full, or left
        at close), pending; and for MQTT whether it is connected (1 or 0)."""
        with self._cond:
            stats = {channel: dict(counts) for channel, counts in self._counts.items()}
            stats["webhook"]["pending"] = len(self._jobs) + self._in_flight
            stats["mqtt"]["pending"] = self._mqtt_pending()
            stats["mqtt"]["connected"] = int(self._connected)
            return stats

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then stop; nothing is sent after.

        Publish the final status (e.g. "stopped") before: MQTT then disconnects cleanly, without the will. What
        is still queued at the deadline is counted as dropped. Returns within `timeout` even if an endpoint hangs
        (its attempt is cut short; the sender thread is a daemon as a last resort).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = deadline
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(max(0.0, deadline - time.monotonic()))
        if self._mqtt is not None:
            self._close_mqtt(deadline)

    def __enter__(self) -> Alerts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- webhooks: one sender thread ---

    def _enqueue(self, job: _Delivery) -> None:
        """Queue a delivery (lock held); a full queue drops its oldest, so memory stays bounded."""
        if len(self._jobs) >= self.settings.queue_size:
            old = self._jobs.popleft()
            self._counts["webhook"]["dropped"] += 1
            log.warning(
                "webhook queue of %s full (%d): dropped an alert for %s (%d dropped so far)",
                self.monitor, self.settings.queue_size, _safe_url(old.url), self._counts["webhook"]["dropped"],
            )  # fmt: skip
        self._jobs.append(job)
        self._cond.notify()

    def _next_job(self) -> _Delivery | None:
        """Wait for the first delivery that is due (queue order); None once closing and nothing can go out."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._closing and (now >= self._deadline or all(j.due >= self._deadline for j in self._jobs)):
                    self._counts["webhook"]["dropped"] += len(self._jobs)  # none can go out in time
                    self._jobs.clear()
                    return None
                job = next((j for j in self._jobs if j.due <= now), None)
                if job is not None:
                    self._jobs.remove(job)
                    self._in_flight += 1
                    return job
                due = min((j.due for j in self._jobs), default=float("inf"))
                wait = min(due, self._deadline) - now
                self._cond.wait(None if wait == float("inf") else wait)

    def _send_loop(self) -> None:
        while (job := self._next_job()) is not None:
            # An attempt never outlives close()'s deadline, so close() can join this thread in time.
            timeout = max(0.01, min(self.settings.timeout, self._deadline - time.monotonic()))
            job.attempts += 1
            error, permanent = self._post(job, timeout)
            with self._cond:
                self._in_flight -= 1
                if error is None:
                    self._counts["webhook"]["delivered"] += 1
                elif permanent or job.attempts >= self.settings.max_attempts:
                    self._counts["webhook"]["failed"] += 1
                    log.warning(
                        "webhook %s failed after %d attempt(s), giving up: %s", _safe_url(job.url), job.attempts, error
                    )
                else:
                    delay = min(self.settings.retry_delay * 2 ** (job.attempts - 1), self.settings.retry_max_delay)
                    log.info("webhook %s failed (%s), retrying in %.3g s", _safe_url(job.url), error, delay)
                    job.due = time.monotonic() + delay
                    self._enqueue(job)

    def _post(self, job: _Delivery, timeout: float) -> tuple[str | None, bool]:
        """One POST: (None, _) when delivered, else (why, whether retrying is pointless)."""
        request = urllib.request.Request(job.url, data=job.body, headers=HEADERS, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(65536)  # the receiver's answer is not used: read a little so it is not cut off
            return None, False
        except urllib.error.HTTPError as e:
            e.close()
            # A 3xx or 4xx will not change by asking again, except "timeout" and "too many requests".
            return f"HTTP {e.code}", 300 <= e.code < 500 and e.code not in (408, 429)
        except (OSError, HTTPException, ValueError) as e:  # refused, timed out, reset, bad answer
            return f"{type(e).__name__}: {e}", False

    # --- MQTT: one paho client and its thread ---

    def _start_mqtt(self, host: str, client_id: str) -> None:
        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        # No paho logger: paho 2.2 logs every failed reconnect as an error; our callbacks log outages once each.
        client.suppress_exceptions = True  # an exception in a callback must not end MQTT for the rest of the shift
        client.max_queued_messages_set(s.queue_size)
        client.reconnect_delay_set(s.retry_delay, s.retry_max_delay)  # type: ignore[arg-type]  (seconds as floats work)
        will = json.dumps({"status": OFFLINE, "monitor": self.monitor})
        client.will_set(self._topic("status"), will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        # connect_async + loop_start: the connection, DNS included, happens on paho's thread, retried for ever.
        client.connect_async(host, s.mqtt_port, keepalive=s.mqtt_keepalive)
        self._mqtt = client  # before its thread starts: callbacks publish through it
        client.loop_start()

    def _topic(self, kind: str) -> str:
        return f"{self.settings.mqtt_prefix}/{self.monitor}/{kind}"

    def _publish(self, kind: str, body: bytes, retain: bool) -> None:
        """Hand a QoS 1 message to paho, which keeps it until the broker acknowledges it, across reconnects."""
        client = self._mqtt  # None once close() has stopped it
        if client is None:
            return
        with self._cond:
            self._mqtt_accepted += 1
        # Never hold our lock here: paho calls on_publish with its own lock held.
        rc = client.publish(self._topic(kind), body, qos=1, retain=retain).rc
        if rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued until the broker is back
            return
        with self._cond:
            self._mqtt_accepted -= 1
            counts = self._counts["mqtt"]
            counts["dropped" if rc == mqtt.MQTT_ERR_QUEUE_SIZE else "failed"] += 1
        log.warning("MQTT %s of %s not queued: %s", kind, self.monitor, mqtt.error_string(rc))

    def _mqtt_pending(self) -> int:
        return self._mqtt_accepted - self._counts["mqtt"]["delivered"]

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused %s: %s", self.settings.mqtt_host, self.monitor, reason)
            return
        log.info("MQTT connected to %s:%d for %s", self.settings.mqtt_host, self.settings.mqtt_port, self.monitor)
        with self._status_lock:
            with self._cond:
                self._connected = True
                self._outage_logged = False
                status = self._last_status
            if status is not None:  # held back while disconnected; or the broker sent the will, or restarted empty
                self._publish("status", status, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            self._connected = False
            first = not (self._outage_logged or self._closing)
            self._outage_logged = True
        if first:
            log.warning("MQTT connection to %s lost (%s): reconnecting", self.settings.mqtt_host, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._cond:
            first = not (self._outage_logged or self._closing)
            self._outage_logged = True
        if first:
            s = self.settings
            log.warning("MQTT broker %s:%d unreachable: retrying, messages wait", s.mqtt_host, s.mqtt_port)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            if self._mqtt_pending() > 0:  # not one that close() already counted as dropped
                self._counts["mqtt"]["delivered"] += 1
            self._cond.notify_all()

    def _close_mqtt(self, deadline: float) -> None:
        client = self._mqtt
        assert client is not None
        with self._cond:
            self._cond.wait_for(lambda: self._mqtt_pending() <= 0, max(0.0, deadline - time.monotonic()))
            left = self._mqtt_pending()
            self._counts["mqtt"]["dropped"] += left
            self._mqtt_accepted -= left
        client.disconnect()  # a clean DISCONNECT: the broker discards the will
        # loop_stop() joins paho's thread without a timeout, and that thread may be inside a blocking connect
        # (up to paho's connect_timeout): stop it on a helper thread and wait only what is left of ours.
        stopper = threading.Thread(target=self._stop_mqtt, args=(client,), name=f"alerts-mqtt-stop-{self.monitor}")
        stopper.daemon = True
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))

    def _stop_mqtt(self, client: mqtt.Client) -> None:
        client.loop_stop()
        self._mqtt = None  # paho closes its wake-up socket pair only when the client is collected


def _check_url(url: str) -> None:
    """A webhook URL must be http(s) with a host and no user or password in it (secrets do not belong in config
    files and logs; a token in the path or query is fine, and is kept out of the logs)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"webhooks: not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhooks: a URL must be http:// or https:// with a host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"webhooks: a URL must not hold a user or password: {_safe_url(url)}")


def _safe_url(url: str) -> str:
    """The URL without its path and query for logs: webhook URLs often carry their secret token there."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/..."
