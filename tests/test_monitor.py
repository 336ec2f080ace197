"""Camera monitors (app/monitor.py, `python -m app monitor`) with the shipped model on the shared clips played as
looping cameras: segments and event clips on disk match the records, webhook and MQTT alerts (a real Mosquitto)
match the events, retention holds `max_gb`, an HTTP camera that disappears and comes back is a recorded gap (its
segment in progress recorded while it is away), and a monitor killed mid-segment loses nothing already recorded.
Tests needing ../shared skip where it is absent."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import yaml
from helpers import (
    Broker,
    Receiver,
    Subscriber,
    free_port,
    make_video,
    postgres_cluster,
    postgres_control,
    wait_until,
)

from app import policy, records
from app.cli import main
from app.engine import DetectionEngine
from app.errors import ConfigError
from app.monitor import IDLE_EVERY_S, MonitorConfig, MonitorFeed, MonitorSet
from app.policy import SafetyPolicy
from app.recordings import RecordedFile
from app.records import RecordStore
from app.runtime import DEFAULT_WEIGHTS, ROOT
from app.service import measured_notice
from app.sources import Frame, Source, open_source

# Events open on the first violating frame and close after 1 s without one, so a short test sees whole events.
QUICK_POLICY = {"rule": "gloves_forbidden", "roles": {"glove": ["gloved_hand"], "bare_hand": ["bare_hand"]},
                "min_frames": 1, "cooldown_s": 1.0}  # fmt: skip


def write_config(tmp: Path, monitors: list[dict], **top: Any) -> Path:
    (tmp / "quick.yaml").write_text(yaml.safe_dump({"name": "quick", **QUICK_POLICY}))
    for m in monitors:
        m.setdefault("policy", str(tmp / "quick.yaml"))
        m.setdefault("imgsz", 256)
        m.setdefault("fps", 4)
    config = {
        "records": str(tmp / "records.sqlite"),
        "exports": str(tmp / "exports"),
        "recordings": {"folder": str(tmp / "recordings"), "segment_s": 5, "pre_s": 1, "post_s": 1},
        "monitors": monitors,
        **top,
    }
    path = tmp / "monitors.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def decode(path: Path) -> tuple[int, float, str]:
    """Frames, duration (s) and codec of a video file, by decoding it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.duration * stream.time_base), stream.codec_context.name


# --- configuration ---


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"monitors": []}, "monitors must be a list"),
        ({"cameras": 1}, "unknown key 'cameras'"),
        ({"monitors": [{"name": "a b", "source": 0}]}, "monitors[0].name"),
        ({"monitors": [{"name": "a", "source": 0, "fps": "fast"}]}, "monitors[a].fps: must be a number"),
        ({"monitors": [{"name": "a", "source": 0, "fps": 0}]}, "monitors[a].fps"),
        ({"monitors": [{"name": "a", "source": 0, "conf": 1.5}]}, "monitors[a].conf"),
        ({"monitors": [{"name": "a", "source": 0, "runtime": "tensorrt"}]}, "monitors[a].runtime: must be one of"),
        ({"monitors": [{"name": "a", "source": 0, "zone": "0,0 1,1"}]}, "monitors[a].zone"),
        ({"monitors": [{"name": "a", "source": 0, "policy": "nope"}]}, "monitors[a].policy"),
        ({"monitors": [{"name": "a", "source": "missing.mp4"}]}, "missing.mp4: file not found"),
        ({"monitors": [{"name": "a", "source": 0, "colour": 1}]}, "monitors[a]: unknown key 'colour'"),
        ({"monitors": [{"name": "a", "source": 0}, {"name": "a", "source": 1}]}, "names must be unique"),
        ({"recordings": {"segment_s": -5}}, "recordings: segment_s"),
        ({"recordings": {"max_gb": "lots"}}, "recordings.max_gb: must be a number"),
        ({"alerts": {"webhooks": ["ftp://x"]}}, "alerts: "),
        ({"alerts": {"mqtt": {"host": "h", "port": 70000}}}, "alerts: mqtt_port"),
        ({"alerts": {"mqtt": {"server": "h"}}}, "alerts.mqtt: unknown key 'server'"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, change: dict, named: str) -> None:
    config = {"monitors": [{"name": "bench", "source": 0}], **change}
    path = tmp_path / "monitors.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        MonitorConfig.load(path)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_good_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text(yaml.safe_dump({"monitors": [{"name": "bandsaw-1", "source": "rtsp://cam1/stream"},
                                                 {"name": "bench", "source": "0", "zone": "0.2,0.2 0.8,0.2 0.5,0.9"}],
                                    "alerts": {"webhooks": ["http://alarm.local/hook"],
                                               "mqtt": {"host": "localhost"}}}))  # fmt: skip
    config = MonitorConfig.load(path)
    cam, bench = config.monitors
    assert (cam.source, cam.fps, cam.weights, cam.imgsz, cam.policy) == ("rtsp://cam1/stream", 5.0, DEFAULT_WEIGHTS,
                                                                         None, None)  # fmt: skip
    assert bench.source == 0 and bench.zone == ((0.2, 0.2), (0.8, 0.2), (0.5, 0.9))
    assert config.alerts.webhooks == ("http://alarm.local/hook",) and config.alerts.mqtt_host == "localhost"
    assert config.recordings.segment_s == 60


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """A config works from any working directory: its files are found beside it."""
    folder = tmp_path / "site"
    folder.mkdir()
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "clip.mp4", frames=3)
    (folder / "quick.yaml").write_text(yaml.safe_dump({"name": "quick", **QUICK_POLICY}))
    (folder / "monitors.yaml").write_text(yaml.safe_dump({
        "records": "data/records.sqlite", "exports": "out",
        "monitors": [{"name": "demo", "source": "../videos/clip.mp4", "loop": True, "policy": "quick.yaml"},
                     {"name": "shipped", "source": 0, "policy": "gloves"}]}))  # fmt: skip
    config = MonitorConfig.load(folder / "monitors.yaml")
    assert config.records == str(folder / "data" / "records.sqlite")
    assert (config.exports, config.recordings_dir) == (folder / "out", folder / "out" / "recordings")
    demo, shipped = config.monitors
    assert demo.source == str(tmp_path / "videos" / "clip.mp4")  # as History and the workbook show it: no `..`
    assert (demo.policy, shipped.policy) == (SafetyPolicy.load(folder / "quick.yaml"), SafetyPolicy.load("gloves"))


def test_a_bad_policy_file_fails_at_config_load_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**QUICK_POLICY, "rule": "gloves_optional"}))
    path = tmp_path / "monitors.yaml"
    path.write_text(yaml.safe_dump({"monitors": [{"name": "bench", "source": 0, "policy": "bad.yaml"}]}))
    with pytest.raises(ConfigError) as error:
        MonitorConfig.load(path)
    assert str(error.value) == (
        "monitors[bench].policy: policy 'bad': rule must be one of gloves_required, gloves_forbidden, got "
        "'gloves_optional'"
    )


def test_a_monitors_policy_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config check, model check, the monitor's status and its runs all use the policy read with the config."""
    reads: list[str] = []
    read = policy.read_yaml_mapping
    monkeypatch.setattr(policy, "read_yaml_mapping", lambda path, *a: reads.append(path.name) or read(path, *a))
    path = write_config(tmp_path, [{"name": "desk", "source": str(make_video(tmp_path / "clip.mp4", frames=3)),
                                    "runtime": "torch"}])  # fmt: skip
    config = MonitorConfig.load(path)
    monitors = MonitorSet(config)
    [spec], [monitor] = config.monitors, monitors.monitors
    run = monitors.service.open_run(open_source(spec.source), spec.options(), monitor=spec.name)
    assert run.policy is spec.policy and monitor.policy_name == "quick"
    assert reads == ["quick.yaml"]


def test_cli_refuses_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text("monitors:\n  - {name: bench, source: 0, fps: five}\n")
    assert main(["monitor", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: monitors[bench].fps: must be a number, got 'five'"


class StallingCamera(Source):
    """A camera that sends one frame and then nothing until stopped (it went away)."""

    live = True

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def frames(self) -> Iterator[Frame]:
        yield Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, "cam")
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_a_feed_without_frames_says_so_while_it_waits() -> None:
    """The monitor's recorder hears the time every IDLE_EVERY_S while no frame comes, on the processing thread."""
    feed = MonitorFeed(StallingCamera(), fps=10, name="cam")
    idle: list[tuple[float, threading.Thread]] = []

    def on_idle(now: float) -> None:
        idle.append((now, threading.current_thread()))
        if len(idle) == 3:
            feed.stop()

    feed.on_idle = on_idle
    started = time.time()
    assert len(list(feed.frames())) == 1
    times = [started] + [t for t, _ in idle]
    assert len(idle) == 3 and all(thread is threading.current_thread() for _, thread in idle)
    assert all(IDLE_EVERY_S * 0.8 <= b - a <= IDLE_EVERY_S * 3 for a, b in itertools.pairwise(times))


# --- real monitors ---


@pytest.fixture
def clips(shared_data: Path) -> dict[str, str]:
    videos = shared_data / "videos"
    return {"slides": str(videos / "gloves_slideshow.mp4"), "desk": str(videos / "hand_desk.mp4")}


@pytest.mark.slow
def test_two_monitors_record_segments_events_and_alerts(tmp_path: Path, clips: dict[str, str]) -> None:
    """Two looping clips watched for ~30 s with 5-s segments: several playable segments each holding every
    processed frame, event clips covering their events, webhook and MQTT messages that match the records, and a
    final retained status `stopped`."""
    broker = Broker(tmp_path).start()
    receiver = Receiver()
    subscriber = Subscriber(broker.port, "plant/gloves/+/events")
    try:
        path = write_config(
            tmp_path,
            [{"name": "slides", "source": clips["slides"], "loop": True},
             {"name": "desk", "source": clips["desk"], "loop": True}],
            alerts={"webhooks": [receiver.url], "mqtt": {"host": "127.0.0.1", "port": broker.port,
                                                         "prefix": "plant/gloves"}},
        )  # fmt: skip
        monitors = MonitorSet(MonitorConfig.load(path))
        judged = set()  # the monitors whose status row said it judged a hand (the card's OK, not "No hand")
        with monitors:
            store = RecordStore(tmp_path / "records.sqlite")
            end = time.monotonic() + 30
            while time.monotonic() < end:
                judged |= {m.name for m in store.monitors() if m.status == "running" and m.hands > 0}
                monitors.wait(0.5)
        status = Subscriber(broker.port, "plant/gloves/+/status")
        retained = {}
        for _ in range(2):
            body, was_retained = status.get()
            retained[body["monitor"]] = (body["status"], body["violation"], body["hands"], was_retained)
        status.close()
    finally:
        subscriber.close()
        receiver.close()
        broker.stop()

    assert "slides" in judged, "the slideshow's gloves are judged hands in its status"
    # stopped: no verdict left up, in the retained status and in the records
    assert retained == {"slides": ("stopped", False, 0, True), "desk": ("stopped", False, 0, True)}
    assert not any(m.violation or m.hands for m in store.monitors())
    rows = {m.name: m for m in store.monitors()}
    events = []
    for name in ("slides", "desk"):
        row = rows[name]
        run = store.run(row.run_id)
        assert run is not None and run.monitor == name and run.status == "stopped" and row.status == "stopped"
        assert row.frames == run.frames > 20, "about 4 frames a second for 30 s"
        segments = [r for r in store.recordings(name) if r.kind == "segment"]
        on_disk = sorted((tmp_path / "recordings" / name / "segments").glob("*/*.mp4"))
        assert sorted(Path(r.path) for r in segments) == on_disk and len(on_disk) >= 5
        assert not list((tmp_path / "recordings").rglob("*.part")), "no half-written file after a clean stop"
        decoded = [decode(p) for p in on_disk]
        assert all(codec == "h264" for _, _, codec in decoded)
        assert sum(n for n, _, _ in decoded) == run.frames, "every processed frame is in a segment"
        assert [r.frames for r in sorted(segments, key=lambda r: r.path)] == [n for n, _, _ in decoded]
        assert all(d <= 5.5 for _, d, _ in decoded) and sum(d > 3 for _, d, _ in decoded) >= 3
        events += store.monitor_events([name])[name]
    assert any(e.class_name == "gloved_hand" for e in events), "the slideshow's gloves open events"
    for event in events:
        assert event.closed and event.clip, "every event is closed and has its clip when the monitor stops"
        clip = store.recording(event.clip)
        assert clip is not None and clip.kind == "clip" and clip.event_id == event.id
        frames, duration, _ = decode(Path(event.clip))
        # From a keyframe up to 1 s before (start - pre_s) to (end + post_s), or the monitor's stop.
        assert frames >= 2 and event.end_time - event.start_time <= duration <= event.end_time - event.start_time + 4

    hooks = [receiver.body() for _ in range(2 * len(events))]
    mqtt = [subscriber.get()[0] for _ in range(2 * len(events))]
    for messages in (hooks, mqtt):
        by_event = {(m["event_id"], m["state"]): m for m in messages}
        assert len(by_event) == 2 * len(events)
        for e in events:
            closed = by_event[(e.id, "closed")]
            assert by_event[(e.id, "opened")]["reason"] == e.reason
            assert (closed["reason"], closed["class"], closed["peak_confidence"], closed["clip"]) == (
                e.reason, e.class_name, e.peak_confidence, e.clip)  # fmt: skip
            assert (closed["start_time"], closed["end_time"]) == (e.start_time, e.end_time)
            assert Path(closed["snapshot"]).is_file()


@pytest.mark.slow
def test_retention_holds_max_gb_while_monitoring(tmp_path: Path, clips: dict[str, str]) -> None:
    """With `max_gb` set to about two segments, old segments are deleted as new ones come, their rows say so, and
    every row not marked pruned points at a file that exists."""
    path = write_config(tmp_path, [{"name": "desk", "source": clips["desk"], "loop": True}])
    config = yaml.safe_load(path.read_text())
    config["recordings"].update(segment_s=2, max_gb=0.0005)  # 500 kB: a 2-s segment here is 100-300 kB
    path.write_text(yaml.safe_dump(config))
    with MonitorSet(MonitorConfig.load(path), retention_every_s=1) as monitors:
        monitors.wait(16)
    pruned = monitors.prune()
    store = RecordStore(tmp_path / "records.sqlite")
    rows = store.recordings("desk")
    footage = sum(p.stat().st_size for p in (tmp_path / "recordings").rglob("*.mp4"))
    assert footage <= 500_000
    gone = [r for r in rows if r.pruned_at]
    assert len(gone) >= 3, "old segments were deleted while it ran"
    assert all(not Path(r.path).exists() for r in gone)
    assert all(Path(r.path).exists() for r in rows if not r.pruned_at)
    assert {str(p) for p in pruned} <= {r.path for r in gone}


def test_a_segment_pruned_before_its_row_is_recorded_is_marked_pruned(tmp_path: Path, clips: dict[str, str]) -> None:
    """The race a loaded machine hits: retention deletes a segment just renamed into place, before the monitor has
    recorded its row (so retention's marking finds none); the row, recorded then, says pruned all the same."""
    path = write_config(tmp_path, [{"name": "desk", "source": clips["desk"]}])
    monitors = MonitorSet(MonitorConfig.load(path))
    try:
        (monitor,) = monitors.monitors
        gone, kept = tmp_path / "gone.mp4", tmp_path / "kept.mp4"
        kept.write_bytes(b"x" * 10)
        for file in (gone, kept):
            monitor._on_file(RecordedFile("segment", file, 0.0, 2.0, 10, 4))
        rows = {Path(r.path).name: r for r in monitors.service.store.recordings("desk")}
        assert rows["gone.mp4"].pruned_at is not None and rows["kept.mp4"].pruned_at is None
    finally:
        monitors.service.shutdown()


class MjpegCamera:
    """An HTTP camera on loopback (multipart JPEG, as many IP cameras serve) that can go away and come back on the
    same port."""

    def __init__(self, clip: str) -> None:
        cap = cv2.VideoCapture(clip)
        self.jpegs = []
        for _ in range(30):
            image = cap.read()[1]
            self.jpegs.append(cv2.imencode(".jpg", cv2.resize(image, (320, 320)))[1].tobytes())
        cap.release()
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.up = threading.Event()

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while camera.up.is_set():
                        jpeg = camera.jpegs[i % len(camera.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")  # fmt: skip
                        i += 1
                        time.sleep(0.1)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.up.set()
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.up.clear()  # open connections end: the camera is gone
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.mark.slow
def test_a_camera_that_disappears_and_comes_back_is_a_recorded_gap(tmp_path: Path, clips: dict[str, str]) -> None:
    camera = MjpegCamera(clips["desk"])
    camera.start()
    path = write_config(tmp_path, [{"name": "ipcam", "source": f"http://127.0.0.1:{camera.port}/stream.mjpg"}])
    store = RecordStore(tmp_path / "records.sqlite")
    statuses: list[str] = []
    try:
        with MonitorSet(MonitorConfig.load(path)):
            wait_until(lambda: any(m.frames > 3 for m in store.monitors()), 60, "frames from the camera")
            camera.stop()
            wait_until(lambda: store.monitors()[0].status == "reconnecting", 30, "status reconnecting")
            statuses.append(store.monitors()[0].status)
            time.sleep(3)
            before = store.monitors()[0].frames
            camera.start()
            wait_until(lambda: store.monitors()[0].frames > before + 3, 60, "frames after the camera came back")
            statuses.append(store.monitors()[0].status)
    finally:
        camera.stop()
    gaps = store.gaps("ipcam")
    assert statuses == ["reconnecting", "running"]
    assert len(gaps) == 1 and gaps[0].ended_at and gaps[0].reason.startswith("camera: ")
    assert gaps[0].ended_at > gaps[0].started_at
    row = store.monitors()[0]
    run = store.run(row.run_id)
    assert run is not None and run.frames == row.frames, "one run across the gap: the camera's frames all recorded"


@pytest.mark.slow
def test_the_segment_in_progress_is_recorded_while_the_camera_is_away(tmp_path: Path) -> None:
    """A camera that stops sending frames: the segment in progress is finished, renamed and recorded within about
    `segment_s` (+ a second), with every frame processed before the camera went, while the camera is still away."""
    camera = MjpegCamera(str(make_video(tmp_path / "camera.mp4", frames=30)))
    camera.start()
    path = write_config(tmp_path, [{"name": "ipcam", "source": f"http://127.0.0.1:{camera.port}/stream.mjpg"}])
    config = yaml.safe_load(path.read_text())
    config["recordings"]["segment_s"] = segment_s = 2
    path.write_text(yaml.safe_dump(config))
    store = RecordStore(tmp_path / "records.sqlite")
    segments = tmp_path / "recordings" / "ipcam" / "segments"

    def recorded() -> list:
        return [r for r in store.recordings("ipcam") if r.kind == "segment"]

    def all_recorded(run_id: str) -> bool:
        """No segment being written, and the recorded ones hold every frame the run processed."""
        return not list(segments.rglob("*.part")) and sum(r.frames for r in recorded()) == store.run(run_id).frames

    try:
        with MonitorSet(MonitorConfig.load(path)) as monitors:
            monitor = monitors.monitors[0]
            wait_until(lambda: monitor.live.frames > 3, 60, "frames from the camera")
            camera.stop()
            away = time.monotonic()
            wait_until(lambda: all_recorded(monitor.live.run_id), segment_s + 10, "the segment in progress recorded")
            took = time.monotonic() - away
            assert monitor.run_now is not None and monitor.live.run_id == store.monitors()[0].run_id, "still watching"
            rows, frames = recorded(), store.run(monitor.live.run_id).frames
    finally:
        camera.stop()
    assert took <= segment_s + 2, f"recorded {took:.1f} s after the camera went away"
    assert sorted(Path(r.path) for r in rows) == sorted(segments.glob("*/*.mp4"))
    assert [decode(Path(r.path))[0] for r in rows] == [r.frames for r in rows] and sum(r.frames for r in rows) == frames


def monitor_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "app", "monitor", "--config", str(config)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_sigkill_loses_only_the_segment_in_flight_and_sigterm_stops_cleanly(
    tmp_path: Path, clips: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    path = write_config(tmp_path, [{"name": "desk", "source": clips["desk"], "loop": True}])
    config = yaml.safe_load(path.read_text())
    config["recordings"]["segment_s"] = 3
    path.write_text(yaml.safe_dump(config))
    db = tmp_path / "records.sqlite"
    first = monitor_process(path, tmp_path / "first.log")
    processes.append(first)
    wait_until(lambda: db.exists() and len(RecordStore(db).recordings("desk")) >= 2, 90, "two finished segments")
    time.sleep(1.5)  # mid-segment
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    store = RecordStore(db)
    recorded = store.recordings("desk")
    assert recorded and all(decode(Path(r.path))[0] > 0 for r in recorded), "every recorded segment plays"
    finished = sorted((tmp_path / "recordings" / "desk" / "segments").glob("*/*.mp4"))
    assert sorted(Path(r.path) for r in recorded) == finished, "a file on disk is a file in the records"
    in_flight = list((tmp_path / "recordings" / "desk" / "segments").rglob("*.part"))
    assert len(in_flight) <= 1, "only the segment in flight is lost (and the clip of an event still open)"
    killed_run = store.monitors()[0].run_id

    second = monitor_process(path, tmp_path / "second.log")
    processes.append(second)
    wait_until(lambda: store.monitors()[0].run_id != killed_run and store.monitors()[0].frames > 2, 90, "restart")
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0, (tmp_path / "second.log").read_text()
    assert store.run(killed_run).status == "interrupted", "the killed process's run is closed as interrupted"
    [downtime] = store.gaps("desk")
    assert downtime.reason.startswith("the monitor's process ended without stopping") and downtime.run_id == killed_run
    assert downtime.started_at < downtime.ended_at
    row = store.monitors()[0]
    assert row.status == "stopped" and store.run(row.run_id).status == "stopped"
    assert not list((tmp_path / "recordings").rglob(f".*.{second.pid}.part")), "SIGTERM finishes its files"
    log = (tmp_path / "second.log").read_text().splitlines()
    # as it starts: what its model was measured to find, where the operator reads the monitor's lines
    assert f"  {measured_notice(DEFAULT_WEIGHTS, DetectionEngine(DEFAULT_WEIGHTS).defaults)}" in log
    said = log[-2:]  # what was watched, and where it is saved
    assert re.fullmatch(rf"desk: stopped, {row.frames} frame\(s\), \d+ event\(s\) opened, run {row.run_id}", said[0])
    assert said[1] == (f"saved: records in {db}, recordings in {tmp_path / 'recordings'}, "
                       f"run folders in {tmp_path / 'exports'}")  # fmt: skip


@pytest.mark.slow
def test_a_records_server_outage_is_a_gap_not_a_crash(
    tmp_path: Path, clips: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL stopped for longer than the store's reconnect window (30 s; 2 s here): the run fails, the monitor
    keeps watching, starts a new run when the server is back, records the gap and closes the failed run."""
    monkeypatch.setattr(records, "OPEN_TIMEOUT_S", 2.0)
    with postgres_cluster(fsync=False) as server:
        url = f"{server}/postgres"
        path = write_config(tmp_path, [{"name": "desk", "source": clips["desk"], "loop": True}])
        config = yaml.safe_load(path.read_text())
        config["records"] = url
        path.write_text(yaml.safe_dump(config))
        control = postgres_control(server)
        with MonitorSet(MonitorConfig.load(path)) as monitors:
            monitor = monitors.monitors[0]
            wait_until(lambda: monitor.live.frames > 5, 60, "frames")
            first_run = monitor.live.run_id
            control("stop")
            wait_until(lambda: monitor.live.status == "failed", 30, "the run to fail")
            assert monitor.is_alive()
            time.sleep(3)
            control("start")
            wait_until(lambda: monitor.live.run_id != first_run and monitor.live.status == "running", 90, "a new run")
            frames = monitor.live.frames
            wait_until(lambda: monitor.live.frames > frames + 3, 60, "frames after the outage")
        store = RecordStore(url)
        try:
            assert store.run(first_run).status == "failed"
            again = store.run(monitor.live.run_id)
            assert again is not None and again.status == "stopped" and again.frames > 3
            [gap] = store.gaps("desk")
            assert gap.reason.startswith("run failed: ") and gap.ended_at and gap.ended_at > gap.started_at
            assert store.monitors()[0].status == "stopped"
        finally:
            store.close()


@pytest.mark.slow
def test_a_dead_camera_does_not_stop_the_other_monitors(tmp_path: Path, clips: dict[str, str]) -> None:
    """One camera that never answers: it reconnects with back-off and says why, its time without frames is an open
    gap, and the other monitor watches on."""
    dead = f"rtsp://127.0.0.1:{free_port()}/stream"
    path = write_config(tmp_path, [{"name": "dead", "source": dead}, {"name": "desk", "source": clips["desk"],
                                                                       "loop": True}])  # fmt: skip
    store = RecordStore(tmp_path / "records.sqlite")
    with MonitorSet(MonitorConfig.load(path)) as monitors:
        wait_until(lambda: {m.name: m.frames for m in store.monitors()}.get("desk", 0) > 10, 90, "desk frames")
        wait_until(lambda: store.monitors()[0].status == "reconnecting", 30, "the dead camera reconnecting")
        dead_row = store.monitors()[0]
        assert all(m.is_alive() for m in monitors.monitors)
    assert dead_row.name == "dead" and dead_row.frames == 0 and "cannot open stream" in dead_row.message
    [gap] = store.gaps("dead")
    assert gap.reason == "camera: cannot open stream" and gap.ended_at, "closed when the monitor stops"
    assert [m.status for m in store.monitors()] == ["stopped", "stopped"]
