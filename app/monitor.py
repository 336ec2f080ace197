"""Camera monitors: cameras at machines watched all shift by a server-side process, with recordings and alerts.

`python -m app monitor --config monitors.yaml` (or `webui.py --monitors monitors.yaml`) runs one `Monitor` thread
per camera. Each one reads its camera on a thread of its own and keeps only the newest frame (a slow model never
falls behind the camera), processes at most `fps` frames a second as one long `DetectionRun` (records, events and
snapshots as for any run), records the annotated frames in segments with event clips (`recordings.py`), sends
alerts when an event opens and closes (`alerts.py`), and writes its status row and latest frame about once a second
for the console's Monitors tab. A camera that drops is reconnected with back-off and the gap is recorded; a run
that fails (records unreachable, a disk error) is saved, recorded as a gap and started again; a monitor that fails
never stops the others. One model is loaded per weights file and shared by the monitors that name it.

Example config (see the README's "Monitoring cameras"):

    records: exports/records.sqlite       # or postgresql://monitor@db.workshop/gloves
    recordings: {folder: exports/recordings, segment_s: 60, pre_s: 5, post_s: 5, keep_days: 7, max_gb: 20}
    alerts: {webhooks: [http://alarm.workshop/hook], mqtt: {host: localhost, port: 1883, prefix: gloves}}
    monitors:
      - {name: bandsaw-1, source: "rtsp://cam1.workshop/stream", policy: gloves_forbidden, fps: 5}
      - {name: bench, source: 0, policy: gloves_required, zone: "0.2,0.2 0.8,0.2 0.8,0.9 0.2,0.9"}
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .alerts import Alerts, AlertSettings, event_payload
from .engine import RUNTIMES
from .errors import ConfigError, GloveSafetyError
from .files import read_yaml_mapping
from .outputs import write_jpeg
from .pipeline import DetectionRun, RunUpdate
from .policy import SafetyPolicy, check_zone, parse_zone
from .recordings import RecordedFile, Recorder, RecordingSettings, Retention
from .records import HOST, utc_now
from .runtime import DEFAULT_WEIGHTS, EXPORTS_DIR
from .schema import EventRow, GapRow, MonitorRow, RecordingRow, score_text
from .service import DetectionService, RunOptions
from .sources import Frame, LoopingVideoSource, Source, StreamSource, open_source, redact

log = logging.getLogger(__name__)

DEFAULT_FPS = 5.0
"""Frames processed per second when a monitor does not say (a bandsaw's hands move slower than a camera's rate)."""
STATUS_EVERY_S = 1.0
"""How often a monitor writes its status row, its latest frame and its retained MQTT status."""
RESTART_DELAYS_S = (1.0, 60.0)
"""A failed run is started again after 1 s, doubling to at most 60 s while it keeps failing."""
RETENTION_EVERY_S = 60.0
IDLE_EVERY_S = 0.5
"""While no frame comes (a camera away), how often a monitor's feed says so (its recorder then ends what is due)."""
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # names become folders and MQTT topics
TOP_KEYS = ("records", "exports", "recordings", "alerts", "monitors")
MONITOR_KEYS = ("name", "source", "loop", "policy", "zone", "weights", "runtime", "imgsz", "conf", "iou", "fps")
RECORDING_KEYS = ("folder", "segment_s", "pre_s", "post_s", "keep_days", "events_keep_days", "max_gb")
ALERT_KEYS = ("webhooks", "mqtt")
MQTT_KEYS = ("host", "port", "prefix")


@dataclass(frozen=True)
class MonitorSpec:
    """One camera to watch, as the config names it."""

    name: str
    source: str | int  # camera index, rtsp:// / http:// URL or a video file
    loop: bool = False  # a video file starts again at its end (demos, tests)
    policy: SafetyPolicy | None = None  # read once, with the config: the monitor and each of its runs use this one
    zone: tuple[tuple[float, float], ...] | None = None
    weights: Path = DEFAULT_WEIGHTS
    runtime: str | None = None  # engine.RUNTIMES; None: auto (the fastest that keeps the model's accuracy)
    imgsz: int | None = None
    conf: float | None = None
    iou: float | None = None
    fps: float = DEFAULT_FPS

    def options(self) -> RunOptions:
        return RunOptions(
            weights=self.weights, conf=self.conf, iou=self.iou, imgsz=self.imgsz, policy=self.policy, zone=self.zone,
            runtime=self.runtime,
        )  # fmt: skip

    def open_source(self, on_state: Any) -> Source:
        """The camera, stream or file; cameras and streams reconnect forever (a monitor outlives a dropped feed)."""
        if isinstance(self.source, int) or "://" in self.source:
            return StreamSource(self.source, max_reconnects=None, on_state=on_state)
        return LoopingVideoSource(Path(self.source), loop=self.loop)


@dataclass(frozen=True)
class MonitorConfig:
    """A monitor config file: the cameras and where their records, recordings and alerts go."""

    monitors: tuple[MonitorSpec, ...]
    records: str | None = None  # None: $GLOVE_RECORDS, else EXPORTS/records.sqlite
    exports: Path = EXPORTS_DIR
    recordings_dir: Path = EXPORTS_DIR / "recordings"
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @classmethod
    def load(cls, path: str | Path) -> MonitorConfig:
        """Read and check a config; `ConfigError` names the first bad key (`monitors[1].fps: ...`)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"monitor config not found: {path}")
        data = read_yaml_mapping(path, ConfigError, path.name, "with a monitors list")
        _known(data, TOP_KEYS, path.name)
        base = path.resolve().parent  # relative paths in the config are relative to the config file, not to cwd
        monitors = data.get("monitors")
        if not isinstance(monitors, list) or not monitors:
            raise ConfigError(f"{path.name}: monitors must be a list of cameras (name, source, ...)")
        specs = tuple(_monitor(m, f"monitors[{i}]", base) for i, m in enumerate(monitors))
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path.name}: monitor names must be unique, got {names}")
        exports = base / _get(data, "exports", str, str(EXPORTS_DIR), path.name)
        rec = _section(data, "recordings", RECORDING_KEYS)
        folder = base / _get(rec, "folder", str, str(exports / "recordings"), "recordings")
        numbers = {k: _get(rec, k, float, None, "recordings") for k in RECORDING_KEYS if k != "folder" and k in rec}
        try:
            recordings = RecordingSettings(**numbers)
        except GloveSafetyError as e:
            raise ConfigError(f"recordings: {e}") from None
        alerts = _section(data, "alerts", ALERT_KEYS)
        hooks = alerts.get("webhooks") or []
        if isinstance(hooks, str):
            hooks = [hooks]
        if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
            raise ConfigError("alerts.webhooks: give a list of http(s):// URLs")
        mqtt = _section(alerts, "mqtt", MQTT_KEYS, "alerts.")
        try:
            alert_settings = AlertSettings(
                webhooks=tuple(hooks),
                mqtt_host=_get(mqtt, "host", str, None, "alerts.mqtt"),
                mqtt_port=_get(mqtt, "port", int, 1883, "alerts.mqtt"),
                mqtt_prefix=_get(mqtt, "prefix", str, "gloves", "alerts.mqtt"),
            )
        except GloveSafetyError as e:
            raise ConfigError(f"alerts: {e}") from None
        records = _get(data, "records", str, None, path.name)
        if records is not None and "://" not in records:
            records = str(base / records)
        return cls(
            monitors=specs, records=records, exports=exports,
            recordings_dir=folder, recordings=recordings, alerts=alert_settings,
        )  # fmt: skip


def _known(data: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(map(str, data)) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(keys)}")


def _section(data: dict, key: str, keys: tuple[str, ...], prefix: str = "") -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}{key}: must be a mapping of {', '.join(keys)}")
    _known(value, keys, prefix + key)
    return value


def _get(data: dict, key: str, kind: type, default: Any, where: str) -> Any:
    """A value of the right type, or `ConfigError` naming `where.key` (YAML reads `five` as text)."""
    value = data.get(key, default)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        want = {float: "a number", int: "a whole number", str: "text", bool: "true or false"}[kind]
        raise ConfigError(f"{where}.{key}: must be {want}, got {value!r}")
    return value


def _monitor(data: Any, where: str, base: Path) -> MonitorSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping with name and source")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}.name: use 1-64 letters, digits, - or _ (it names folders and MQTT topics)")
    where = f"monitors[{name}]"
    _known(data, MONITOR_KEYS, where)
    source = data.get("source")
    if isinstance(source, bool) or not isinstance(source, int | str) or source == "":
        raise ConfigError(f"{where}.source: give a camera index, an rtsp:// or http:// URL, or a video file")
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, str) and "://" not in source:
        source = os.path.normpath(base / source)  # recorded and shown as a plain path: no `..` left in it
        try:
            if open_source(source).kind != "video":
                raise ConfigError(f"{where}.source: {source} is not a video file, camera or stream")
        except GloveSafetyError as e:
            raise ConfigError(f"{where}.source: {e}") from None
    for key, low, high in (("conf", 0.0, 1.0), ("iou", 0.0, 1.0)):
        value = _get(data, key, float, None, where)
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{where}.{key}: must be between {low:g} and {high:g}, got {value!r}")
    imgsz = _get(data, "imgsz", int, None, where)
    if imgsz is not None and not 32 <= imgsz <= 4096:
        raise ConfigError(f"{where}.imgsz: must be between 32 and 4096 pixels, got {imgsz}")
    runtime = _get(data, "runtime", str, None, where)
    if runtime is not None and runtime not in RUNTIMES:
        raise ConfigError(f"{where}.runtime: must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    fps = _get(data, "fps", float, DEFAULT_FPS, where)
    if not 0 < fps <= 120:
        raise ConfigError(f"{where}.fps: must be a number of frames per second in (0, 120], got {fps!r}")
    policy = _get(data, "policy", str, None, where)
    if policy is not None:
        beside = base / policy  # a policy file beside the config; else a shipped name (or a path from cwd)
        try:
            policy = SafetyPolicy.load(beside if beside.is_file() else policy)
        except GloveSafetyError as e:
            raise ConfigError(f"{where}.policy: {e}") from None
    zone = data.get("zone")
    try:
        zone = parse_zone(zone) if isinstance(zone, str) else (check_zone(zone, "zone") if zone else None)
    except GloveSafetyError as e:
        raise ConfigError(f"{where}.zone: {e}") from None
    return MonitorSpec(
        name=name, source=source, loop=_get(data, "loop", bool, False, where), policy=policy, zone=zone,
        weights=base / _get(data, "weights", str, str(DEFAULT_WEIGHTS), where), runtime=runtime, imgsz=imgsz,
        conf=_get(data, "conf", float, None, where), iou=_get(data, "iou", float, None, where), fps=fps,
    )  # fmt: skip


class MonitorFeed(Source):
    """A source read on a thread of its own, handed on at most `fps` frames a second, always the newest frame (so
    processing never lags the camera; frames in between are dropped, as a monitor should). While no frame comes,
    `on_idle` (if set) is called with the time (`time.time()`) every `IDLE_EVERY_S`, on the thread iterating
    `frames()`."""

    kind = "stream"
    live = True
    seekable = False

    def __init__(self, source: Source, fps: float, name: str) -> None:
        self.source, self.name = source, name
        self.on_idle: Callable[[float], None] | None = None
        self.description = source.description
        self.fps = min(fps, source.fps) if source.fps else fps
        self.started = time.time()  # wall clock of timestamp 0
        self._interval = 1.0 / fps
        self._latest: Frame | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()
        with self._cond:
            self._cond.notify_all()

    def wall(self, timestamp: float) -> float:
        """The wall-clock time (`time.time()`) of a frame timestamp of this feed."""
        return self.started + timestamp

    def _read(self) -> None:
        try:
            for frame in self.source.frames():
                if isinstance(frame, Frame):
                    with self._cond:
                        self._latest = frame
                        self._cond.notify_all()
        except BaseException as e:  # handed to the processing thread, which ends the run with it
            self._error = e
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def frames(self) -> Iterator[Frame]:
        reader = threading.Thread(target=self._read, name=f"read {self.name}", daemon=True)
        reader.start()
        index, next_due = 0, time.monotonic()
        try:
            while not self._stop.wait(max(0.0, next_due - time.monotonic())):
                with self._cond:
                    if self._latest is None and not self._ended and not self._stop.is_set():
                        self._cond.wait(IDLE_EVERY_S)
                    frame, self._latest = self._latest, None
                    ended = self._ended
                if frame is None:
                    if self._error is not None:
                        raise self._error
                    if ended or self._stop.is_set():
                        return
                    if self.on_idle is not None:  # outside the lock: the reader must not wait for it
                        self.on_idle(time.time())
                    continue
                next_due = time.monotonic() + self._interval
                yield Frame(frame.image, index, time.time() - self.started, self.name)
                index += 1
        finally:
            self.source.stop()
            reader.join(timeout=15)


@dataclass
class _Live:
    """What a monitor shows now (read by its status writer)."""

    status: str = "starting"
    message: str | None = None
    run_id: str | None = None
    frames: int = 0
    fps: float = 0.0
    last_frame_at: str | None = None
    violation: bool = False
    hands: int = 0  # gloves and bare hands the policy judged in the latest frame


class Monitor(threading.Thread):
    """One camera, watched until `stop()`: runs, recordings, alerts and a status row (see the module's docstring)."""

    def __init__(
        self, spec: MonitorSpec, service: DetectionService, recordings_dir: Path, recordings: RecordingSettings,
        alerts: AlertSettings,
    ) -> None:  # fmt: skip
        super().__init__(name=f"monitor {spec.name}", daemon=True)
        self.spec, self.service = spec, service
        self.alerts = Alerts(alerts, spec.name)  # one MQTT connection per monitor: its last will is its status
        self.store = service.store
        self.folder = Path(recordings_dir) / spec.name
        self.settings = recordings
        self.latest_frame = self.folder / "latest.jpg"
        self.live = _Live()
        self.started_at = utc_now()
        self.policy_name = spec.policy.name if spec.policy else None
        self.events = 0  # opened since this monitor started
        self.run_now: DetectionRun | None = None
        self._halt = threading.Event()
        self._gap: GapRow | None = None
        self._unfinished: str | None = None
        self._open: dict[int, Path] = {}  # events open now: id -> the clip it will have
        self._last_status = 0.0
        self._frame_times: list[float] = []

    def stop(self) -> None:
        self._halt.set()
        run = self.run_now
        if run is not None:
            run.stop()

    def run(self) -> None:
        self._record_downtime()
        delay = RESTART_DELAYS_S[0]
        while not self._halt.is_set():
            try:
                if self._watch():
                    break  # a file that ended without `loop`
                delay = RESTART_DELAYS_S[0]
            except Exception as e:  # never let one camera's failure end the monitor (or the others)
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                if not isinstance(e, GloveSafetyError | OSError):
                    log.exception("monitor %s: run failed", self.spec.name)
                self._unfinished = self.live.run_id  # closed as failed once the records can be written again
                self._start_gap(f"run failed: {reason}")
                self._set_status("failed", f"{reason}; starting again in {delay:g} s")
                self._halt.wait(delay)
                delay = min(delay * 2, RESTART_DELAYS_S[1])
        self._end_gap()
        self._set_status("stopped", None, force=True)
        self.alerts.close()

    def _watch(self) -> bool:
        """One run over the camera until it ends or the monitor stops; True when the source ended for good."""
        if self._unfinished is not None:  # a run that failed with the records down could not record its end
            failed = self.store.run(self._unfinished)
            if failed is not None and failed.status == "running":
                self.store.finish_run(failed.id, "failed")
            self._unfinished = None
        feed = MonitorFeed(self.spec.open_source(self._on_source_state), self.spec.fps, self.spec.name)
        run = self.service.open_run(feed, self.spec.options(), monitor=self.spec.name)
        self.run_now, self.live.run_id = run, run.summary.run_id
        if self._halt.is_set():
            run.stop()
        recorder = Recorder(self.folder, self.settings, on_file=self._on_file)
        # the camera away: the segment and clips in progress end on time, not when frames return
        feed.on_idle = recorder.advance
        try:
            for update in run:
                self._frame(update, feed, recorder)
        finally:
            # events the run closed as it ended (the monitor stopping, a failure) close their clips and alerts
            for row in run.summary.events:
                if row.id in self._open:
                    self._event(row, feed, recorder, closed=True)
            recorder.close()
            self.run_now = None
        return run.summary.status == "completed" and not self._halt.is_set()

    def _frame(self, update: RunUpdate, feed: MonitorFeed, recorder: Recorder) -> None:
        frame = update.frame
        now = time.time()
        if frame is None:
            return
        image = frame.annotated if frame.annotated is not None else frame.image
        recorder.add(image, feed.wall(frame.timestamp))
        for row in update.events:
            self._event(row, feed, recorder, closed=row.closed)
        live = self.live
        live.frames += 1
        live.last_frame_at = utc_now()
        live.violation = bool(self._open) or (update.status is not None and not update.status.ok)
        live.hands = update.status.judged if update.status is not None else 0
        self._frame_times = [t for t in self._frame_times if t > now - 5.0] + [now]
        live.fps = (len(self._frame_times) - 1) / max(now - self._frame_times[0], 1e-6)
        self._end_gap()
        if now - self._last_status >= STATUS_EVERY_S:
            write_jpeg(self.latest_frame, image, quality=80)
            self._set_status("running", None)

    def _record_downtime(self) -> None:
        """A previous process that ended without stopping this monitor (killed, crashed, power cut) left a time with
        no frames: recorded as a gap from its last frame to now."""
        try:
            last = next((m for m in self.store.monitors() if m.name == self.spec.name), None)
            if last is not None and last.status != "stopped" and (last.last_frame_at or last.updated_at):
                self.store.save_gap(GapRow(
                    monitor=self.spec.name, started_at=last.last_frame_at or last.updated_at, ended_at=utc_now(),
                    reason="the monitor's process ended without stopping (killed or crashed)", run_id=last.run_id,
                ))  # fmt: skip
        except GloveSafetyError as e:
            log.warning("monitor %s: %s", self.spec.name, e)

    def _event(self, row: EventRow, feed: MonitorFeed, recorder: Recorder, closed: bool) -> None:
        """An event opened, changed or closed: its clip and its alerts (a closed event is never reported again)."""
        assert row.id is not None
        run = self.run_now
        snapshot = str(Path(run.summary.output_dir) / row.snapshot) if run is not None and row.snapshot else None
        if row.id not in self._open:
            self._open[row.id] = recorder.open_event(str(row.id), feed.wall(row.start_time))
            self._alert(row, "opened", snapshot, self._open[row.id], feed)
            self.live.violation = True
            self._set_status("running", None, force=True)
        if closed:
            clip = self._open.pop(row.id)
            recorder.close_event(str(row.id), feed.wall(row.end_time))
            self._alert(row, "closed", snapshot, clip, feed)

    def _alert(self, row: EventRow, state: str, snapshot: str | None, clip: Path, feed: MonitorFeed) -> None:
        log.info("%s: event %d %s: %s (%s, peak %s)%s", self.spec.name, row.id, state, row.reason, row.class_name,
                 score_text(row.peak_confidence), f"; clip {clip}" if state == "closed" else "")  # fmt: skip
        self.events += state == "opened"
        payload = event_payload(row, self.policy_name, snapshot, clip)
        payload["started_at"] = _iso(feed.wall(row.start_time))  # the wall clock, for people reading the alert
        payload["ended_at"] = _iso(feed.wall(row.end_time)) if state == "closed" else None
        self.alerts.event(state, payload)

    def _on_file(self, recorded: RecordedFile) -> None:
        """A segment or clip is complete: record it (and a clip with its event)."""
        event_id = int(recorded.event_key) if recorded.event_key else None
        self.store.add_recording(RecordingRow(
            monitor=self.spec.name, kind=recorded.kind, path=str(recorded.path), started_at=_iso(recorded.started_at),
            ended_at=_iso(recorded.ended_at), bytes=recorded.bytes, frames=recorded.frames, run_id=self.live.run_id,
            event_id=event_id,
        ))  # fmt: skip
        if event_id is not None:
            self.store.set_event_clip(event_id, str(recorded.path))
        # Retention may have taken the file between its rename and this row (its marking then found no row): the
        # row must not point at footage that is gone
        if not recorded.path.exists():
            self.store.mark_pruned([str(recorded.path)])

    def _on_source_state(self, state: str, reason: str) -> None:
        if state == "reconnecting":
            self._start_gap(f"camera: {reason}")
            self._set_status("reconnecting", reason, force=True)
        else:
            self._end_gap()
            self._set_status("running", None, force=True)

    def _start_gap(self, reason: str) -> None:
        if self._gap is None:
            self._gap = GapRow(monitor=self.spec.name, started_at=utc_now(), reason=reason, run_id=self.live.run_id)
            self._save_quietly(lambda: self.store.save_gap(self._gap))

    def _end_gap(self) -> None:
        gap, self._gap = self._gap, None
        if gap is not None:
            gap.ended_at = utc_now()
            self._save_quietly(lambda: self.store.save_gap(gap))

    def _set_status(self, status: str, message: str | None, force: bool = False) -> None:
        live = self.live
        changed = (status, message) != (live.status, live.message)
        live.status, live.message = status, message
        if status in ("stopped", "failed"):  # no run, no verdict: a stopped saw is not still in violation
            live.violation, live.hands = False, 0
        now = time.time()
        if not (force or changed or now - self._last_status >= STATUS_EVERY_S):
            return
        self._last_status = now
        row = self.status_row()
        self._save_quietly(lambda: self.store.save_monitor(row))
        self.alerts.status({
            "monitor": row.name, "status": row.status, "violation": row.violation, "hands": row.hands,
            "fps": round(row.fps, 2), "frames": row.frames, "last_frame_at": row.last_frame_at, "message": row.message,
            "updated_at": row.updated_at,
        })  # fmt: skip

    def status_row(self) -> MonitorRow:
        live = self.live
        return MonitorRow(
            name=self.spec.name, source=redact(str(self.spec.source)), status=live.status, violation=live.violation,
            hands=live.hands, fps=round(live.fps, 2), frames=live.frames, last_frame_at=live.last_frame_at,
            run_id=live.run_id, policy=self.policy_name,
            latest_frame=str(self.latest_frame) if self.latest_frame.exists() else None, message=live.message,
            host=HOST, pid=os.getpid(), started_at=self.started_at, updated_at=utc_now(),
        )  # fmt: skip

    def _save_quietly(self, write: Any) -> None:
        """Status and gap rows are best effort: the records being down is itself what a gap records."""
        try:
            write()
        except GloveSafetyError as e:
            log.warning("monitor %s: %s", self.spec.name, e)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


class MonitorSet:
    """The monitors of one config, run together: one model per weights file, retention of all
    footage under the recordings folder every minute.

    Example:
        >>> with MonitorSet(MonitorConfig.load("monitors.yaml")) as monitors:
        ...     monitors.wait(60)  # or until stop() (a signal handler, the console shutting down)
    """

    def __init__(
        self,
        config: MonitorConfig,
        service: DetectionService | None = None,
        retention_every_s: float = RETENTION_EVERY_S,
    ) -> None:
        self.config, self.retention_every_s = config, retention_every_s
        self.service = service or DetectionService(exports_dir=config.exports, db=config.records)
        if config.records is not None and str(self.service.store.location) != str(config.records):
            raise ConfigError(
                f"records: the console records to {self.service.store.location} but the monitor config says "
                f"{config.records}; remove one of them"
            )
        for spec in config.monitors:  # a bad model or a policy that does not fit it: said now, not per camera
            try:
                engine = self.service.engine(spec.weights, runtime=spec.runtime)
                if spec.policy:
                    spec.policy.check(engine.names)
                engine.settings(conf=spec.conf, iou=spec.iou, imgsz=spec.imgsz)
            except GloveSafetyError as e:
                raise ConfigError(f"monitors[{spec.name}]: {e}") from None
        self.retention = Retention(config.recordings_dir, config.recordings)
        self.service.served_dirs.append(config.recordings_dir)  # latest frames and clips, for the Monitors tab
        self.monitors = [
            Monitor(spec, self.service, config.recordings_dir, config.recordings, config.alerts)
            for spec in config.monitors
        ]
        self._stop = threading.Event()
        self._retention = threading.Thread(target=self._prune_loop, name="retention", daemon=True)

    def start(self) -> MonitorSet:
        for monitor in self.monitors:
            monitor.start()
        self._retention.start()
        return self

    def wait(self, duration: float | None = None) -> None:
        """Until `stop()` is called, every monitor has ended, or `duration` seconds have passed."""
        end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set() and any(m.is_alive() for m in self.monitors):
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            self._stop.wait(1.0 if left is None else min(1.0, left))

    def interrupt(self) -> None:
        """Make `wait()` return (safe in a signal handler); `stop()` then stops the monitors."""
        self._stop.set()

    def stop(self) -> None:
        """Stop every monitor: runs saved, segments and clips finished, status `stopped`, alerts flushed."""
        self._stop.set()
        for monitor in self.monitors:
            monitor.stop()
        for monitor in self.monitors:
            monitor.join(timeout=30)
        self._retention.join(timeout=30)

    def __enter__(self) -> MonitorSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def prune(self) -> list[Path]:
        """Apply retention now; deleted files are marked pruned in the records."""
        pruned = self.retention.prune()
        self.service.store.mark_pruned(str(p) for p in pruned)
        return pruned

    def _prune_loop(self) -> None:
        while True:
            try:
                self.prune()
            except (GloveSafetyError, OSError) as e:  # tried again next minute
                log.warning("retention: %s", e)
            if self._stop.wait(self.retention_every_s):
                return
