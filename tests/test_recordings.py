"""Tests of app/recordings.py on real video: segments, event clips, the bounded pre-roll, SIGKILL, retention.

Frames are synthetic (a moving box, and the frame number drawn as 16 black or white blocks that survive H.264) and
carry explicit times, so minutes of recording take seconds to make and nothing sleeps.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import sync_playwright

from app.errors import ConfigError
from app.recordings import (
    ABANDONED_TEMP_S,
    KEYFRAME_S,
    LATE_OPEN_S,
    STALE_TEMP_S,
    RecordedFile,
    Recorder,
    RecordingSettings,
    Retention,
)
from app.runtime import ROOT

T0 = 1_800_000_000.0  # a multiple of 60 s: segments are cut at the test's own whole seconds
BITS = 16
DAY = 86_400.0


def make_frame(n: int, width: int = 320, height: int = 240) -> np.ndarray:
    """Frame `n`: a gradient, a box that moves, and `n` in binary along the top edge."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    x = (n * 7) % (width - 60)
    image[height // 2 : height // 2 + 40, x : x + 60] = (0, 0, 255)
    block = width // BITS
    for bit in range(BITS):
        image[:block, bit * block : (bit + 1) * block] = 255 if n >> bit & 1 else 0
    return image


def frame_number(image: np.ndarray) -> int:
    block = image.shape[1] // BITS
    cells = image[block // 4 : 3 * block // 4].reshape(-1, BITS, block, 3)[:, :, block // 4 : 3 * block // 4]
    return sum(1 << bit for bit, on in enumerate(cells.mean(axis=(0, 2, 3)) > 128) if on)


def probe(path: Path) -> dict:
    """What a player sees: codec, pixel format, duration and every frame's (time, number)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.time, frame_number(f.to_ndarray(format="bgr24"))) for f in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "duration": float(stream.duration * stream.time_base),
            "frames": frames,
        }


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".part"))


def faststart(path: Path) -> bool:
    """The index (moov) comes before the media (mdat): a browser plays before the whole file arrives."""
    data = path.read_bytes()
    return 0 < data.find(b"moov") < data.find(b"mdat")


def test_segments_are_browser_playable_and_as_long_as_their_frames(tmp_path: Path) -> None:
    files: list[RecordedFile] = []
    folder = tmp_path / "bandsaw-1"
    frames = [make_frame(i, 640, 480) for i in range(240)]  # 30 s at 8 fps; made first, so only recording is timed
    recorder = Recorder(folder, RecordingSettings(segment_s=5), on_file=files.append)
    cpu, wall = time.process_time(), time.perf_counter()
    for i, image in enumerate(frames):
        recorder.add(image, T0 + i / 8)
    recorder.close()
    cpu_ms, wall_ms = (time.process_time() - cpu) / 240 * 1000, (time.perf_counter() - wall) / 240 * 1000
    print(f"\nrecording 640x480: {cpu_ms:.1f} ms CPU per frame (all threads), {wall_ms:.1f} ms wall per frame")

    paths = sorted(folder.rglob("*.mp4"))
    day = f"{datetime.fromtimestamp(T0):%Y-%m-%d}"
    assert [p.relative_to(folder).as_posix() for p in paths] == [
        f"segments/{day}/{datetime.fromtimestamp(T0 + 5 * k):%H-%M-%S}.mp4" for k in range(6)
    ]
    assert temp_files(tmp_path) == []
    assert [(f.kind, f.path, f.bytes, f.frames) for f in files] == [("segment", p, p.stat().st_size, 40) for p in paths]
    for k, (path, recorded) in enumerate(zip(paths, files, strict=True)):
        assert (recorded.started_at, recorded.ended_at, recorded.event_key) == (T0 + 5 * k, T0 + 5 * k + 5, None)
        info = probe(path)
        assert (info["codec"], info["pix_fmt"], info["size"]) == ("h264", "yuv420p", (640, 480))
        assert info["duration"] == pytest.approx(5.0, abs=0.01)
        assert [n for _, n in info["frames"]] == list(range(40 * k, 40 * k + 40))
        assert faststart(path)


def test_event_clips_span_pre_to_post_overlap_and_finish_at_close(tmp_path: Path) -> None:
    files: list[RecordedFile] = []
    settings = RecordingSettings(segment_s=60, pre_s=2, post_s=3)
    recorder = Recorder(tmp_path / "cam", settings, on_file=files.append)
    clips = {}
    for i in range(250):  # 25 s at 10 fps: frame i at i / 10 s
        recorder.add(make_frame(i), T0 + i / 10)
        if i == 120:
            clips["a"] = recorder.open_event("a", T0 + 12)  # 12 -> 15 s: clip from 10 s to 18 s
        elif i == 130:
            clips["b"] = recorder.open_event("b", T0 + 13)  # 13 -> 20 s, overlapping a
        elif i == 150:
            recorder.close_event("a", T0 + 15)
            recorder.close_event("not-mine", T0 + 15)  # an event of an earlier recorder: ignored
        elif i == 200:
            recorder.close_event("b", T0 + 20)
        elif i == 220:
            clips["c"] = recorder.open_event("c", T0 + 22)  # still open when the monitor stops
    recorder.close()

    assert temp_files(tmp_path) == []
    on_disk = sorted(tmp_path.rglob("*.mp4"))
    assert sorted(f.path for f in files) == on_disk
    assert all(f.bytes == f.path.stat().st_size for f in files)
    by_key = {f.event_key: f for f in files if f.kind == "clip"}
    assert (
        {k: f.path for k, f in by_key.items()} == clips == {k: tmp_path / "cam" / "events" / f"{k}.mp4" for k in "abc"}
    )
    expected = {"a": (10, 18), "b": (11, 23), "c": (20, 25)}  # seconds: event start - pre_s, end + post_s
    for key, (start, end) in expected.items():
        recorded, info = by_key[key], probe(by_key[key].path)
        assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
        first, last = info["frames"][0][1] / 10, info["frames"][-1][1] / 10  # when those frames were taken
        assert start - KEYFRAME_S <= first <= start  # it starts at a keyframe at most KEYFRAME_S early
        assert last == pytest.approx(min(end, 24.9))
        assert [n for _, n in info["frames"]] == list(range(round(first * 10), round(last * 10) + 1))
        assert end - start <= info["duration"] <= end - start + KEYFRAME_S + 0.1
        assert info["duration"] == pytest.approx(recorded.ended_at - recorded.started_at, abs=0.001)
        assert recorded.started_at == pytest.approx(T0 + first)
        assert faststart(recorded.path)
    (segment,) = [f for f in files if f.kind == "segment"]
    assert (segment.frames, segment.started_at, segment.ended_at) == (250, T0, pytest.approx(T0 + 25))


def test_irregular_frame_times_play_at_their_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    times = T0 + np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.6, 59))])
    files: list[RecordedFile] = []
    with Recorder(tmp_path / "cam", RecordingSettings(segment_s=60), on_file=files.append) as recorder:
        for i, at in enumerate(times):
            # an odd size is cropped to even; a camera that comes back at another size is scaled to the first
            recorder.add(make_frame(i, 321, 241) if i < 40 else make_frame(i, 640, 480)[::2, ::2], float(at))
    (recorded,) = files
    info = probe(recorded.path)
    assert info["size"] == (320, 240)
    assert [n for _, n in info["frames"]] == list(range(60))
    assert [t for t, _ in info["frames"]] == pytest.approx(list(times - T0), abs=0.001)  # VFR: the frames' times
    last_interval = times[-1] - times[-2]
    assert info["duration"] == pytest.approx(times[-1] - T0 + last_interval, abs=0.001)
    assert recorded.ended_at == pytest.approx(times[-1] + last_interval)


@pytest.mark.browser
def test_segment_and_clip_play_in_chromium_for_their_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    times = T0 + np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.4, 39))])  # irregular: VFR
    files: list[RecordedFile] = []
    with Recorder(tmp_path, RecordingSettings(segment_s=60, pre_s=1, post_s=1), on_file=files.append) as recorder:
        for i, at in enumerate(times):
            recorder.add(make_frame(i), float(at))
            if i == 20:
                recorder.open_event("e", float(at))
                recorder.close_event("e", float(at))
    expected = {f.path.relative_to(tmp_path).as_posix(): f.ended_at - f.started_at for f in files}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    played = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            for name in expected:
                page.set_content(f'<video id="v" src="http://127.0.0.1:{server.server_port}/{name}" muted></video>')
                page.wait_for_function(
                    "document.getElementById('v').readyState >= 2 || document.getElementById('v').error", timeout=15000
                )
                played[name] = page.evaluate("[v.duration, v.videoWidth, v.error && v.error.message]")
            browser.close()
    finally:
        server.shutdown()
    assert len(played) == 2
    for name, seconds in expected.items():
        assert played[name] == [pytest.approx(seconds, abs=0.01), 320, None], name


def test_pre_buffer_is_bounded_however_long_the_monitor_runs(tmp_path: Path) -> None:
    settings = RecordingSettings(segment_s=10, pre_s=1)
    fps = 15
    sizes = {}
    with Recorder(tmp_path / "cam", settings) as recorder:
        for i in range(1, 601):  # 40 s
            recorder.add(make_frame(i, 160, 120), T0 + i / fps)
            if i in (150, 300, 600):
                sizes[i] = recorder.buffered()
    # from the newest keyframe at least pre_s + LATE_OPEN_S back: at most one keyframe interval more than that
    least, most = (settings.pre_s + LATE_OPEN_S) * fps, (settings.pre_s + LATE_OPEN_S + KEYFRAME_S) * fps + 1
    assert all(least <= packets <= most for packets, _ in sizes.values()), sizes
    assert max(b for _, b in sizes.values()) < 2 * min(b for _, b in sizes.values()), sizes


def test_advance_finishes_files_while_the_camera_is_away(tmp_path: Path) -> None:
    files: list[RecordedFile] = []
    settings = RecordingSettings(segment_s=60, pre_s=1, post_s=1)
    recorder = Recorder(tmp_path / "cam", settings, on_file=files.append)
    for i in range(15):  # 50-52.8 s at 5 fps, then the camera drops
        recorder.add(make_frame(i), T0 + 50 + i / 5)
        if i == 5:
            recorder.open_event("e1", T0 + 51)
            recorder.close_event("e1", T0 + 52)
    recorder.advance(T0 + 61)
    recorder.buffered()  # waits for the worker, and reports what it finished
    assert sorted((f.kind, f.ended_at) for f in files) == [("clip", T0 + 53), ("segment", T0 + 60)]
    assert temp_files(tmp_path) == [] and all(f.path.exists() for f in files)
    for i in range(15, 30):  # back at 75 s: a new segment; a new event's pre-roll holds nothing from before the gap
        recorder.add(make_frame(i), T0 + 75 + (i - 15) / 5)
        if i == 20:
            recorder.open_event("e2", T0 + 76)
    recorder.close()
    e2 = next(f for f in files if f.event_key == "e2")
    assert [n for _, n in probe(e2.path)["frames"]] == list(range(15, 30))
    segment2 = max((f for f in files if f.kind == "segment"), key=lambda f: f.started_at)
    assert segment2.path.name == f"{datetime.fromtimestamp(T0 + 75):%H-%M-%S}.mp4" and segment2.frames == 15


def test_recorder_rejects_unsafe_or_repeated_event_keys(tmp_path: Path) -> None:
    with Recorder(tmp_path / "cam") as recorder:
        for key in ("../x", ".hidden", "a/b", ""):
            with pytest.raises(ValueError, match="safe file name"):
                recorder.open_event(key, T0)
        recorder.open_event("17", T0)
        with pytest.raises(ValueError, match="already opened"):
            recorder.open_event("17", T0 + 1)
    assert not (tmp_path / "cam" / "events").exists()  # an event without frames leaves no file


@pytest.mark.parametrize(
    ("key", "value"),
    [("segment_s", 0), ("pre_s", -1), ("post_s", float("nan")), ("keep_days", 0), ("max_gb", -2), ("segment_s", "5")],
)
def test_settings_errors_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{key} must be ") as error:
        RecordingSettings(**{key: value})
    assert "\n" not in str(error.value)


RECORDING_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np
from app.recordings import Recorder, RecordingSettings
recorder = Recorder(Path(sys.argv[1]), RecordingSettings(segment_s=1, pre_s=0.5, post_s=0.5))
recorder.open_event("open-when-killed", time.time())
image = np.zeros((120, 160, 3), np.uint8)
for n in range(100_000):
    image[:, :] = n % 256
    recorder.add(image, time.time())
    time.sleep(0.05)
"""


@pytest.mark.slow  # a recording subprocess in real time
def test_sigkill_loses_only_the_files_being_written(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RECORDING_SCRIPT, str(folder)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(folder.glob("segments/*/*.mp4"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]

    segments = sorted(folder.glob("segments/*/*.mp4"))
    assert len(segments) >= 3
    for path in segments:  # every finished segment is whole
        info = probe(path)
        assert info["codec"] == "h264" and len(info["frames"]) >= 1 and 0 < info["duration"] <= 1.01
    left = temp_files(tmp_path)
    assert 1 <= len(left) <= 2  # the segment in flight, and the open event's clip if it had a frame
    assert all(f".{proc.pid}.part" in p.name for p in left)
    # Retention deletes them once they are stale (their writer is gone), never the finished segments
    assert Retention(tmp_path).prune(now=time.time() + STALE_TEMP_S / 2) == []
    assert sorted(Retention(tmp_path).prune(now=time.time() + STALE_TEMP_S + 1)) == left
    assert sorted(folder.glob("segments/*/*.mp4")) == segments


def test_retention_deletes_old_then_oldest_footage_and_never_files_being_written(tmp_path: Path) -> None:
    now = T0 + 30 * DAY
    dead = subprocess.Popen(["true"])
    dead.wait()

    def put(relative: str, age_days: float) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - age_days * DAY, now - age_days * DAY))
        return path

    def segment(monitor: str, age_days: float) -> Path:
        start = datetime.fromtimestamp(now - age_days * DAY)
        return put(f"{monitor}/segments/{start:%Y-%m-%d}/{start:%H-%M-%S}.mp4", age_days)

    seg = {(m, a): segment(m, a) for m, a in [("cam1", 10), ("cam1", 8), ("cam1", 3), ("cam1", 1)]}
    seg |= {(m, a): segment(m, a) for m, a in [("cam2", 9), ("cam2", 2), ("cam2", 0.5)]}
    clip_40, clip_20, clip_1 = put("cam1/events/7.mp4", 40), put("cam1/events/8.mp4", 20), put("cam2/events/9.mp4", 1)
    writing = put(f"cam1/segments/x/.12-00-00.mp4.{os.getpid()}.part", 0.5)  # a live writer's: kept however old
    fresh = put(f"cam2/events/.10.mp4.{dead.pid}.part", 60 / DAY)  # writer gone, but only just: kept
    stale = put(f"cam2/events/.11.mp4.{dead.pid}.part", 1 / 24)  # writer gone an hour: deleted
    abandoned = put("cam2/events/.12.mp4.1.part", ABANDONED_TEMP_S / DAY + 1)  # untouched for days: deleted
    others = [put("cam1/latest.jpg", 50), put("cam1/export.mp4", 50)]  # not footage this module wrote

    settings = RecordingSettings(keep_days=7, events_keep_days=30, max_gb=1)
    assert Retention(tmp_path, settings).prune(now) == [
        abandoned, stale, seg["cam1", 10], seg["cam2", 9], seg["cam1", 8], clip_40,
    ]  # fmt: skip
    assert not seg["cam1", 10].parent.exists()  # the emptied date folder is gone

    # over max_gb: the oldest segments of any monitor go first; clips only once no segment is left
    tiny = RecordingSettings(keep_days=7, events_keep_days=30, max_gb=4500 / 1e9)  # 8000 bytes are left
    assert Retention(tmp_path, tiny).prune(now) == [seg["cam1", 3], seg["cam2", 2], seg["cam1", 1], seg["cam2", 0.5]]
    assert clip_20.exists() and clip_1.exists()
    tinier = RecordingSettings(keep_days=7, events_keep_days=30, max_gb=2500 / 1e9)
    assert Retention(tmp_path, tinier).prune(now) == [clip_20, clip_1]
    assert writing.exists() and fresh.exists() and all(p.exists() for p in others)
    assert Retention(tmp_path, tinier).prune(now) == []
