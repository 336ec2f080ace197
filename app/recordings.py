"""Continuous recordings and event clips of a camera monitor, kept as Frigate keeps them.

A monitor makes one `Recorder` for its camera and hands it every annotated frame with the frame's wall-clock time;
the recorder writes browser-playable H.264 MP4 (yuv420p, index up front):

    <monitor folder>/segments/<YYYY-MM-DD>/<HH-MM-SS>.mp4   continuous, `segment_s` long, named by the local time
                                                           of their first frame, cut at multiples of `segment_s`
    <monitor folder>/events/<event key>.mp4                 one per event: `pre_s` before it opened to `post_s`
                                                           after it closed

Each frame is encoded once (libx264, `zerolatency`: one packet out per frame in, no B-frames), with a keyframe at
least every `KEYFRAME_S` and at every segment start. The packets are copied, not re-encoded, into the segment and
into every clip being written, and the last `pre_s + LATE_OPEN_S` seconds of them (from a keyframe) are kept in
memory for the pre-roll of the next clip: memory stays bounded by `pre_s + LATE_OPEN_S + KEYFRAME_S` seconds of
video however long a monitor runs. Timestamps come from the frames' times (variable frame rate), so a 5 s
segment plays for 5 s whatever the camera's rate was.

A file is written as `.<name>.<pid>.part` beside its final name and renamed (after fsync) when complete: a crash
or SIGKILL loses at most the segment and the clips being written, never a finished file. `Retention` deletes
such left-over temporary files once their writer is gone, and old footage (see its docstring).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal, NamedTuple

import av
import cv2
import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

KEYFRAME_S = 1.0  # the most a clip's pre-roll can start early: clips start at a keyframe
LATE_OPEN_S = 2.0  # kept beyond pre_s: an event opens some frames after its start time (policy min_frames)
TIME_BASE = Fraction(1, 90_000)  # MP4 video's usual clock: fine enough for any frame time
GB = 1_000_000_000
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a file name on every system, never hidden
TEMP_RE = re.compile(r"\.(?P<name>.+\.mp4)\.(?P<pid>\d+)\.part")
STALE_TEMP_S = 600.0  # a temporary file whose writer process is gone, untouched this long, is deleted
ABANDONED_TEMP_S = 86_400.0  # ... and one untouched this long whatever its pid says (another host, a reused pid)


@dataclass(frozen=True)
class RecordingSettings:
    """How much a monitor records and how long it is kept. Times in seconds unless named otherwise.

    Attributes:
        segment_s: Length of the continuous segments; they are cut at multiples of it in wall-clock time.
        pre_s: Video kept before an event opened (up to `KEYFRAME_S` more: a clip starts at a keyframe).
        post_s: Video kept after an event closed.
        keep_days: Segments older than this are deleted.
        events_keep_days: Event clips older than this are deleted (longer than segments, as in Frigate).
        max_gb: All footage under the recordings root, in GB (10^9 bytes); above it the oldest goes first.
    """

    segment_s: float = 60.0
    pre_s: float = 5.0
    post_s: float = 5.0
    keep_days: float = 7.0
    events_keep_days: float = 30.0
    max_gb: float = 20.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a number, got {value!r}")
            if f.name in ("pre_s", "post_s"):
                if value < 0:
                    raise ConfigError(f"{f.name} must be 0 or more, got {value!r}")
            elif value <= 0:
                raise ConfigError(f"{f.name} must be above 0, got {value!r}")


@dataclass(frozen=True)
class RecordedFile:
    """A finished recording: a continuous segment or an event's clip. Times are epoch seconds (`time.time()`)."""

    kind: Literal["segment", "clip"]
    path: Path
    started_at: float  # the first frame's time
    ended_at: float  # when the last frame stops showing
    bytes: int
    frames: int
    event_key: str | None = None  # clips only


class _Packet(NamedTuple):
    at: float
    key: bool
    packet: av.Packet


def _ticks(seconds: float) -> int:
    return round(seconds / TIME_BASE)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")  # the pid tells Retention whether a writer lives


class _Output:
    """One MP4 being written from copied packets. The newest packet is held back until the next one (or the end)
    says how long it shows: MP4 takes a sample's duration from the next one's time, except for the last sample."""

    def __init__(self, kind: Literal["segment", "clip"], path: Path, size: tuple[int, int], key: str | None) -> None:
        self.kind, self.path, self.event_key = kind, path, key
        self.tmp = _temp_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        # No codec context: packets are muxed as they are; PyAV takes the SPS/PPS (avcC) from the first keyframe.
        self._stream = self._container.add_mux_stream("h264", width=size[0], height=size[1])
        self._stream.time_base = TIME_BASE
        self.started_at = 0.0
        self.frames = 0
        self._held: _Packet | None = None

    def write(self, p: _Packet) -> None:
        if self._held is None:
            self.started_at = p.at
        else:
            self._mux(self._held, p.at)
        self._held = p
        self.frames += 1

    def _mux(self, p: _Packet, until: float) -> None:
        pts = _ticks(p.at - self.started_at)
        packet = p.packet  # the same packet goes to several files: each mux sets its own times
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.duration = max(1, _ticks(until - self.started_at) - pts)
        self._container.mux_one(packet)

    def finish(self, end: float, fallback_s: float) -> RecordedFile:
        """Close at `end` (the last frame shows until then; `fallback_s` if that is not after it) and rename."""
        assert self._held is not None  # outputs are made for a first packet
        last = self._held.at
        end = end if end > last else last + fallback_s
        self._mux(self._held, end)
        self._container.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())  # renamed only once on disk: a power cut leaves no empty final file
        self.tmp.replace(self.path)
        size = self.path.stat().st_size
        return RecordedFile(self.kind, self.path, self.started_at, end, size, self.frames, self.event_key)

    def discard(self) -> None:
        with suppress(Exception):  # already failing: the original error is the one to report
            self._container.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class _Clip:
    path: Path
    opened_at: float
    end_at: float | None = None  # closed: the post-roll ends here
    out: _Output | None = None  # made at its first (key) packet


class _Timeline:
    """The recorder's state, touched only by its worker thread: the encoder, the pre-roll buffer, the segment and
    the clips being written. Each method returns the files it finished."""

    def __init__(self, folder: Path, settings: RecordingSettings) -> None:
        self.folder, self.settings = folder, settings
        self.encoder: av.VideoCodecContext | None = None
        self.size = (0, 0)
        self.buffer: deque[_Packet] = deque()
        self.buffer_bytes = 0
        self.segment: _Output | None = None
        self.segment_end = 0.0
        self.clips: dict[str, _Clip] = {}
        self.t0 = 0.0
        self.last_at: float | None = None
        self.last_key_at = -math.inf
        self.interval = 0.1  # the last frame interval (capped): how long the very last frame shows
        self.force_key = True
        self.times: dict[int, float] = {}  # encoder pts -> frame time, for packets

    def frame(self, frame: av.VideoFrame, at: float) -> list[RecordedFile]:
        if self.encoder is None:
            self._open_encoder(frame.width, frame.height, at)
        if self.last_at is not None:
            self.interval = min(at - self.last_at, KEYFRAME_S)
        self.last_at = at
        if self.force_key or self.segment is None or at >= self.segment_end or at - self.last_key_at >= KEYFRAME_S:
            frame.pict_type = av.video.frame.PictureType.I  # an IDR (forced-idr): segments and clips start here
            self.force_key = False
        frame.pts = _ticks(at - self.t0)
        self.times[frame.pts] = at
        done: list[RecordedFile] = []
        for packet in self.encoder.encode(frame):
            done += self._packet(_Packet(self.times.pop(packet.pts), packet.is_keyframe, packet))
        return done

    def _open_encoder(self, width: int, height: int, at: float) -> None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = TIME_BASE
        enc.framerate = Fraction(10)  # nominal only: x264 rate control follows the timestamps (VFR)
        # zerolatency: no lookahead or B-frames, so each frame's packet comes out at once, in order (pts == dts),
        # and encoding costs less. SPS/PPS stay in each keyframe (no global header), so any keyframe starts a file.
        enc.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "23", "forced-idr": "1"}
        enc.open()
        self.encoder, self.size, self.t0 = enc, (width, height), at

    def _packet(self, p: _Packet) -> list[RecordedFile]:
        done: list[RecordedFile] = []
        s = self.settings
        if p.key:
            self.last_key_at = p.at
        if self.buffer and self.buffer[-1].at < p.at - s.pre_s - LATE_OPEN_S - KEYFRAME_S:
            self._clear_buffer()  # after a gap in the frames, old ones would only freeze a clip's start
        if self.segment is not None and p.at >= self.segment_end and p.key:
            done.append(self.segment.finish(self.segment_end, self.interval))
            self.segment = None
        if self.segment is None and p.key:
            start = datetime.fromtimestamp(p.at)
            path = self._unique(self.folder / "segments" / f"{start:%Y-%m-%d}" / f"{start:%H-%M-%S}.mp4")
            self.segment = _Output("segment", path, self.size, None)
            self.segment_end = (math.floor(p.at / s.segment_s) + 1) * s.segment_s
        if self.segment is not None:
            self.segment.write(p)
        for key, clip in list(self.clips.items()):
            if clip.end_at is not None and p.at > clip.end_at:
                done += self._finish_clip(key, clip.end_at)
            else:
                self._clip_write(key, clip, p)
        self.buffer.append(p)
        self.buffer_bytes += p.packet.size
        self._trim(p.at - s.pre_s - LATE_OPEN_S)
        return done

    def _trim(self, cutoff: float) -> None:
        """Keep the packets from the newest keyframe at or before `cutoff` on: no clip opened now needs more."""
        while True:
            second_key = next((i for i, q in enumerate(self.buffer) if i and q.key), None)
            if second_key is None or self.buffer[second_key].at > cutoff:
                return
            for _ in range(second_key):
                self.buffer_bytes -= self.buffer.popleft().packet.size

    def _clear_buffer(self) -> None:
        self.buffer.clear()
        self.buffer_bytes = 0

    def _clip_write(self, key: str, clip: _Clip, p: _Packet) -> None:
        if clip.out is None:
            if not p.key:
                return
            clip.out = _Output("clip", clip.path, self.size, key)
        clip.out.write(p)

    def _finish_clip(self, key: str, end: float) -> list[RecordedFile]:
        clip = self.clips.pop(key)
        return [clip.out.finish(end, self.interval)] if clip.out is not None else []

    def open_event(self, key: str, path: Path, at: float) -> list[RecordedFile]:
        clip = self.clips[key] = _Clip(path, at)
        cutoff = at - self.settings.pre_s
        start = 0  # the newest keyframe at or before the cutoff; the oldest one if the buffer starts later
        for i, p in enumerate(self.buffer):
            if p.at > cutoff:
                break
            if p.key:
                start = i
        for i, p in enumerate(self.buffer):
            if i >= start:
                self._clip_write(key, clip, p)
        if clip.out is None:
            self.force_key = True  # nothing buffered yet: start the clip at the next frame
        return []

    def close_event(self, key: str, at: float) -> list[RecordedFile]:
        clip = self.clips.get(key)
        if clip is None or clip.end_at is not None:
            return []
        clip.end_at = max(at, clip.opened_at) + self.settings.post_s
        if self.last_at is not None and self.last_at > clip.end_at:  # closed after its post-roll already passed
            return self._finish_clip(key, clip.end_at)
        return []

    def advance(self, now: float) -> list[RecordedFile]:
        """No frame until `now`: finish what has ended rather than keep it open until the camera is back."""
        done: list[RecordedFile] = []
        if self.segment is not None and now >= self.segment_end:
            done.append(self.segment.finish(self.segment_end, self.interval))
            self.segment = None
        for key, clip in list(self.clips.items()):
            if clip.end_at is not None and now >= clip.end_at:
                done += self._finish_clip(key, clip.end_at)
        if self.buffer and self.buffer[-1].at < now - self.settings.pre_s - LATE_OPEN_S - KEYFRAME_S:
            self._clear_buffer()
        return done

    def finish(self) -> list[RecordedFile]:
        """The monitor stops: the last frame shows for one more frame interval; open events end there too."""
        done: list[RecordedFile] = []
        if self.encoder is not None:
            for packet in self.encoder.encode(None):  # zerolatency holds none back; flushed all the same
                done += self._packet(_Packet(self.times.pop(packet.pts), packet.is_keyframe, packet))
        end = (self.last_at or 0.0) + self.interval
        if self.segment is not None:
            done.append(self.segment.finish(min(end, self.segment_end), self.interval))
            self.segment = None
        for key, clip in list(self.clips.items()):
            done += self._finish_clip(key, end if clip.end_at is None else min(end, clip.end_at))
        self._clear_buffer()
        return done

    def discard(self) -> None:
        """After an error: drop the files being written (finished ones stay)."""
        for out in [self.segment, *(c.out for c in self.clips.values())]:
            if out is not None:
                out.discard()
        self.segment = None
        self.clips.clear()
        self._clear_buffer()

    def _unique(self, path: Path) -> Path:
        """`path`, or `<stem>-1.mp4`...: a monitor restarted within a second, or an hour repeated when clocks go
        back, must not overwrite a segment."""
        n = 0
        candidate = path
        while candidate.exists():
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        return candidate


class Recorder:
    """Records one monitor's annotated frames: continuous segments and a clip per event (see the module docstring).

    Encoding and writing run on a background thread (x264 releases the GIL), so they overlap the monitor's next
    inference; at most `queue_size` frames wait, after which `add` waits. Call it from one thread. `on_file` is
    called on the caller's thread, from `add`, `open_event`, `close_event`, `advance` or `close`, once a file is
    complete under its final name (a finished file is reported at the first such call after it is done).
    After an error every call raises it (OSError); files being written are dropped, finished ones stay.

        recorder = Recorder(Path("recordings/bandsaw-1"), RecordingSettings(segment_s=60), on_file=store)
        recorder.add(annotated_bgr, at=time.time())
        clip = recorder.open_event("bandsaw-1-000123", at)   # the clip's final path
        recorder.close_event("bandsaw-1-000123", at)          # done once frames reach at + post_s
        recorder.close()                                      # finishes the segment and every clip
    """

    def __init__(
        self,
        folder: Path,
        settings: RecordingSettings | None = None,
        on_file: Callable[[RecordedFile], None] | None = None,
        queue_size: int = 8,
    ) -> None:
        self.folder = Path(folder).absolute()  # RecordedFile paths compare equal to Retention's
        self.settings = settings or RecordingSettings()
        self.on_file = on_file
        self._timeline = _Timeline(self.folder, self.settings)
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=queue_size)
        self._done: queue.SimpleQueue[RecordedFile] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._keys: set[str] = set()
        self._size: tuple[int, int] | None = None  # (width, height) of the video; of the first frame, made even
        self._first_shape: tuple[int, int] | None = None
        self._last_at = -math.inf
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"record {self.folder.name}", daemon=True)
        self._thread.start()

    def add(self, image: np.ndarray, at: float) -> None:
        """Record a BGR frame taken at `at` (epoch seconds). Times should increase; one that does not is placed
        1 ms after the previous frame. Frames of another size than the first are scaled to it."""
        self._check()
        at = max(float(at), self._last_at + 0.001)  # MP4 needs increasing times: a stepped-back clock must not stop it
        self._last_at = at
        self._put(("frame", self._video_frame(image), at))

    def open_event(self, key: str, at: float) -> Path:
        """Start the clip of event `key` (opened at `at`), from `pre_s` before; returns the path it will have.
        `key` is the file name's stem: letters, digits, '.', '_' and '-', unique per recorder."""
        self._check()
        if not KEY_RE.fullmatch(key):
            raise ValueError(f"event key {key!r} is not a safe file name: use letters, digits, '.', '_' and '-'")
        if key in self._keys:
            raise ValueError(f"event {key!r} was already opened by this recorder")
        self._keys.add(key)
        path = self.folder / "events" / f"{key}.mp4"
        self._put(("open_event", key, path, float(at)))
        return path

    def close_event(self, key: str, at: float) -> None:
        """Event `key` closed at `at`: its clip is finished once a frame is past `at + post_s` (or at `close()`).
        Frames already past that when it is called (a close reported late) stay in the clip, which ends at once.
        A key this recorder did not open (an event from before a restart) is ignored."""
        self._check()
        self._put(("close_event", key, float(at)))

    def advance(self, now: float) -> None:
        """No frame has come until `now` (the camera stalled): finish the segment and the clips whose end has
        passed now, rather than when frames return. A monitor calls it while it waits for frames."""
        self._check()
        self._put(("advance", float(now)))

    def buffered(self) -> tuple[int, int]:
        """(packets, bytes) held for clips' pre-roll, once the frames given so far are encoded."""
        self._queue.join()
        self._deliver()
        return len(self._timeline.buffer), self._timeline.buffer_bytes

    def close(self) -> None:
        """Finish the current segment and every clip (open events end at the last frame), then report them."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(("finish",))
        self._thread.join()
        self._deliver()
        if self._error is not None:
            raise OSError(f"recording to {self.folder} failed: {self._error}") from self._error

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _video_frame(self, image: np.ndarray) -> av.VideoFrame:
        """The frame to encode, made here: `from_ndarray` copies, so the caller may draw on `image` again."""
        h, w = image.shape[:2]
        if self._size is None:
            self._first_shape = (h, w)
            self._size = (w - w % 2, h - h % 2)  # yuv420p needs even dimensions
        if (h, w) == self._first_shape:
            image = image[: self._size[1], : self._size[0]]
        else:  # the camera changed resolution: keep one video size, as segments and clips share the packets
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")

    def _put(self, command: tuple) -> None:
        self._queue.put(command)
        self._deliver()

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"the recorder of {self.folder} is closed")
        if self._error is not None:
            raise OSError(f"recording to {self.folder} failed: {self._error}") from self._error

    def _deliver(self) -> None:
        while self.on_file is not None:
            try:
                recorded = self._done.get_nowait()
            except queue.Empty:
                return
            self.on_file(recorded)

    def _work(self) -> None:
        timeline = self._timeline
        while True:
            command = self._queue.get()
            name, args = command[0], command[1:]
            try:
                if self._error is None:  # after an error: drain, so the caller never blocks on a full queue
                    for recorded in getattr(timeline, name)(*args):
                        if self.on_file is not None:  # nobody listening: keep nothing
                            self._done.put(recorded)
            except Exception as e:
                self._error = e
                timeline.discard()
            finally:
                self._queue.task_done()
            if name == "finish":
                return


class Retention:
    """Deletes old footage under a recordings root holding any number of monitor folders, as Frigate does.

    The rule, applied by `prune` (call it every few minutes, from one place per root):

    1. Temporary files (`.<name>.<pid>.part`) are never deleted while being written. One is left over (its writer
       was killed) when its process no longer runs and it is untouched for `STALE_TEMP_S`, or untouched for
       `ABANDONED_TEMP_S` whatever its pid; those are deleted first.
    2. Segments (`*/segments/<date>/*.mp4`) older than `keep_days` and event clips (`*/events/*.mp4`) older than
       `events_keep_days` are deleted, oldest first. Age is the file's modification time: when it was finished.
    3. While all footage under the root (both kinds, and temporary files) is over `max_gb`, the oldest segment of
       any monitor is deleted; clips only once no segment is left, oldest first.

    Footage left by earlier processes counts the same. Emptied folders of past days are removed; other files are
    left alone.
    """

    def __init__(self, root: Path, settings: RecordingSettings | None = None) -> None:
        self.root = Path(root).absolute()  # deleted paths compare equal to the Recorder's RecordedFile paths
        self.settings = settings or RecordingSettings()

    def prune(self, now: float | None = None) -> list[Path]:
        """Apply the rule at `now` (default: the time now); returns the deleted paths in the order deleted."""
        now = time.time() if now is None else now
        segments, clips, temps = self._scan()
        total = sum(size for _, _, size in (*segments, *clips, *temps))
        deleted: list[Path] = []
        today = f"{datetime.fromtimestamp(now):%Y-%m-%d}"

        def delete(path: Path, size: int) -> None:
            nonlocal total
            try:
                path.unlink()
            except FileNotFoundError:  # deleted meanwhile (another pruner, or a person): no longer counted
                total -= size
                return
            except OSError as e:  # kept; the next files go instead, so the limit still holds
                log.warning("could not delete %s: %s", path, e)
                return
            total -= size
            deleted.append(path)
            # a past day's folder, once empty; never today's, where a recorder may be about to start a segment
            if path.parent.parent.name == "segments" and path.parent.name < today:
                with suppress(OSError):  # not empty
                    path.parent.rmdir()

        for mtime, path, size in temps:
            pid = int(TEMP_RE.fullmatch(path.name)["pid"])
            if now - mtime > ABANDONED_TEMP_S or (now - mtime > STALE_TEMP_S and not _process_runs(pid)):
                delete(path, size)
        day = 86_400.0
        kept: dict[str, list[tuple[float, Path, int]]] = {"segments": [], "clips": []}
        for kind, files, keep_days in (
            ("segments", segments, self.settings.keep_days),
            ("clips", clips, self.settings.events_keep_days),
        ):
            for mtime, path, size in files:
                if now - mtime > keep_days * day:
                    delete(path, size)
                else:
                    kept[kind].append((mtime, path, size))
        for _, path, size in (*kept["segments"], *kept["clips"]):  # each already oldest first
            if total <= self.settings.max_gb * GB:
                break
            delete(path, size)
        return deleted

    def _scan(self) -> tuple[list[tuple[float, Path, int]], ...]:
        """(mtime, path, bytes) of segments, clips and temporary files under the root, each oldest first."""
        segments, clips, temps = [], [], []
        for folder, _, names in os.walk(self.root):
            parent = Path(folder)
            for name in names:
                path = parent / name
                try:
                    st = path.lstat()
                except FileNotFoundError:  # renamed or deleted since listed
                    continue
                if not stat.S_ISREG(st.st_mode):  # links and the like: not footage this module wrote
                    continue
                entry = (st.st_mtime, path, st.st_size)
                if TEMP_RE.fullmatch(name):
                    temps.append(entry)
                elif name.endswith(".mp4") and not name.startswith("."):
                    if parent.name == "events":
                        clips.append(entry)
                    elif parent.parent.name == "segments":
                        segments.append(entry)
        return sorted(segments), sorted(clips), sorted(temps)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True
