"""Files a run leaves for people: annotated images or a browser-playable video, detections as CSV and JSON,
and the events with their snapshots, all under `exports/<date>/<run-id>/`.

Images, snapshots and event lists are written to a temporary name and renamed when complete; detections are
appended as whole lines (see `RunWriter`); the video is renamed when the run closes.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .files import atomic_write
from .policy import SafetyEvent
from .results import FrameResult
from .schema import TEXT, DetectionRow, EventRow

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path.name}")
    return atomic_write(path, buf.tobytes())


def safe_text(value: str) -> str:
    """Text that spreadsheets will not run as a formula (OWASP CSV injection): prefix such cells with '."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


FILE_PRESET = "veryfast"
"""x264 preset of a run's annotated video from a file or folder: smaller files, where nothing waits for a frame."""
LIVE_PRESET = "ultrafast"
"""The same from a live source (the console's camera, a camera or stream run from the CLI), which does not wait: about
4.5 CPU ms a 720x720 frame against 9-10 with `veryfast`, for files 2.55 times larger (benchmarks/video_presets.py on
hand_desk.mp4); on a 2-core box the CPU saved goes to inference (the console's live results at 640, INT8: 12.2 and
13.9 results/s against 11.5).
Camera monitors' recordings (app/recordings.py) keep `veryfast`: they run at a set rate all shift, where the file size
decides how much footage retention can keep."""


class VideoWriter:
    """H.264 / yuv420p MP4 (with the index up front) that browsers play, written with PyAV's bundled libx264.

    Frames are encoded on a background thread (x264 releases the GIL), so encoding overlaps the next frame's
    inference instead of adding to it. At most `queue_size` frames wait.

    Example:
        >>> with VideoWriter(Path("out.mp4"), fps=30) as video:
        ...     video.write(frame_bgr)
    """

    def __init__(self, path: Path, fps: float, queue_size: int = 8, preset: str = FILE_PRESET) -> None:
        self.path, self.preset = path, preset
        self.tmp = path.with_name(f".{path.stem}.part{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps if fps > 0 else 30).limit_denominator(1001)
        self._container = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._stream = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_loop, name=f"encode {path.name}", daemon=True)
        self._thread.start()
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self._error is not None:
            raise OSError(f"video encoding failed: {self._error}") from self._error
        self._queue.put(image)
        self.frames += 1

    def _encode_loop(self) -> None:
        while (image := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the writer reports the first error
            try:
                self._encode(image)
            except Exception as e:
                self._error = e

    def _encode(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._stream is None:  # size comes from the first frame; yuv420p needs even dimensions
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = w - w % 2, h - h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": self.preset, "crf": "23"}
        image = image[: self._stream.height, : self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        self._container.mux(self._stream.encode(frame))

    def close(self) -> Path | None:
        """Finish encoding and move the file into place; returns its path (None if no frame was written)."""
        self._queue.put(None)
        self._thread.join()
        if self._stream is not None and self._error is None:
            self._container.mux(self._stream.encode(None))
        self._container.close()
        if self._error is not None:
            raise OSError(f"video encoding failed: {self._error}") from self._error
        if not self.frames:
            self.tmp.unlink(missing_ok=True)
            return None
        self.tmp.replace(self.path)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunWriter:
    """A run's files, written as frames arrive, so memory does not grow with the run's length.

    `detections.csv` and `detections.jsonl` are appended frame by frame under their final names, each frame's
    rows in one write of whole lines: a reader (or a crash) sees a valid file at every moment, ending with the
    last frame written. `events.json` is rewritten atomically when an event changes. The annotated video keeps
    its temporary name until the run closes (an MP4's index is only written then).
    """

    def __init__(self, run_dir: Path, video_fps: float | None = None, live: bool = False) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        preset = LIVE_PRESET if live else FILE_PRESET
        self.video = None if video_fps is None else VideoWriter(run_dir / "annotated.mp4", video_fps, preset=preset)
        self.images: list[Path] = []
        self._image_stems: set[str] = set()
        self._columns = DetectionRow.file_columns()
        self._text_columns = {c.name for c in self._columns if c.kind == TEXT}
        self._csv = open(run_dir / "detections.csv", "wb", buffering=0)  # noqa: SIM115 (closed in close())
        self._jsonl = open(run_dir / "detections.jsonl", "wb", buffering=0)  # noqa: SIM115
        self._csv.write(self._csv_lines([[c.name for c in self._columns]]))

    def add(self, frame: FrameResult, rows: list[DetectionRow], image: np.ndarray | None) -> None:
        """Append a frame's detection rows and its annotated image (a video frame, or a JPEG per still image)."""
        if rows:
            dicts = [r.as_dict(self._columns) for r in rows]
            cells = [[safe_text(v) if k in self._text_columns and v else v for k, v in d.items()] for d in dicts]
            self._csv.write(self._csv_lines(cells))
            self._jsonl.write(
                "".join(json.dumps(_json_row(d), ensure_ascii=False) + "\n" for d in dicts).encode("utf-8")
            )
        if image is None:
            return
        if self.video is not None:
            self.video.write(image)
        else:
            stem = Path(frame.source or f"frame_{frame.frame_index}").stem
            name = f"{stem}.jpg" if stem not in self._image_stems else f"{stem}-{frame.frame_index}.jpg"
            self._image_stems.add(stem)  # a.jpg and a.png in one folder: two files, not one overwritten
            self.images.append(write_jpeg(self.run_dir / "images" / name, image))

    def snapshot(self, event: SafetyEvent) -> str | None:
        """Save an event's snapshot; returns its path relative to the run folder."""
        if event.snapshot is None:
            return None
        name = snapshot_name(event)
        write_jpeg(self.run_dir / name, event.snapshot)
        return name

    def write_events(self, events: list[EventRow]) -> None:
        """Replace `events.json` with the run's events as they stand."""
        rows = [e.as_dict(EventRow.file_columns()) for e in events]
        atomic_write(self.run_dir / "events.json", json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8"))

    def close(self) -> Path | None:
        """Close the detection files and finish the video. Returns the video path, if any."""
        self._csv.close()
        self._jsonl.close()
        return self.video.close() if self.video is not None else None

    @staticmethod
    def _csv_lines(rows: list[list]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue().encode("utf-8")


def snapshot_name(event: SafetyEvent) -> str:
    """Run-relative path of an event's snapshot, unique per run (one event can start per frame)."""
    return f"events/event_{event.start_frame:06d}.jpg"


def _json_row(row: dict) -> dict:
    """A detection row for JSON: the polygon as a nested list rather than JSON text."""
    return {**row, "polygon": json.loads(row["polygon"])} if row.get("polygon") else row
