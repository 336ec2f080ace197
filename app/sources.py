"""Where frames come from: one image, a folder of images, a video file, or a camera / network stream.

Every source yields `Frame`s; a folder also yields `BadItem`s for files it cannot read, so one corrupt photo
does not end a run. Errors that make the whole source unusable raise `SourceError` with a one-line reason.
"""

from __future__ import annotations

import io
import os
import queue
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image
from ultralytics.data.utils import IMG_FORMATS, VID_FORMATS

from .errors import SourceError

MAX_PIXELS = 50_000_000  # larger images (decompression bombs) are refused before decoding
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
STREAM_TIMEOUT_MS = 10_000  # opening or reading a network stream gives up after this long (then reconnects)
T = TypeVar("T")


@dataclass
class Frame:
    """One decoded frame (BGR) and where it sits in its source."""

    image: np.ndarray
    index: int
    timestamp: float  # seconds from the start of the video / stream; 0 for still images
    name: str  # file name, or the source's description for videos and streams


@dataclass
class BadItem:
    """A file in a folder run that could not be read; the run goes on without it."""

    name: str
    reason: str


class Source:
    """Base class: `frames()` yields what the source holds.

    Attributes:
        kind: A word for people and the records (`image`, `folder`, `video`, `stream`).
        still: Unrelated still images (each frame stands alone: no video, no consecutive-frame events).
        live: Frames arrive in real time (a camera or stream: no end is known, frames may be dropped).
        seekable: Frames can be read again from the start (files).
        total: Frames it will yield, where known.
        fps: Frames per second of a video or stream (0 for stills).
        stride: Every n-th frame is kept (a video file's `stride`; 1 elsewhere): kept frames come at fps / stride.
        description: The source as people name it (file name, camera, URL).
    """

    kind = "source"
    still = False
    live = False
    seekable = True
    total: int | None = None
    fps: float = 0.0
    stride: int = 1
    description: str = ""

    def frames(self) -> Iterator[Frame | BadItem]:
        raise NotImplementedError

    def stop(self) -> None:
        """End `frames()` from another thread (live sources; a file or folder simply runs to its end)."""

    @property
    def warnings(self) -> list[str]:
        """Problems found while reading that did not stop the run (a cut-off video)."""
        return []


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to BGR uint8, or raise `SourceError` saying why it cannot be used.

    Grayscale, alpha and 16-bit images are converted, and turned upright by their EXIF orientation; sizes beyond
    `MAX_PIXELS` are refused from the header, before decoding, so a small file claiming huge dimensions cannot
    exhaust memory.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{display_name(path)}: file not found")
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII file names
    if data.size == 0:
        raise SourceError(f"{display_name(path.name)}: empty file")
    _check_image_size(data, display_name(path.name))
    # any depth and colour (16-bit, grey), turned as its EXIF orientation says, as a browser shows a phone photo;
    # IMREAD_UNCHANGED would ignore the orientation and run a portrait photo on its side
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise SourceError(f"{display_name(path.name)}: not a readable image (corrupt or unsupported format)")
    return to_bgr8(image)


def redact(text: str | None) -> str:
    """A source URL (or a message holding one) without the credentials of `rtsp://user:password@camera/...`: what
    is stored, shown and sent about a camera."""
    return _CREDENTIALS.sub(r"\1***@", text or "")


def file_description(path: Path) -> str:
    """A file or folder source as it is recorded and shown: its whole path, so `clip.mp4` named from one folder is
    told from another's, and without `..`."""
    return display_name(os.path.abspath(path))


def display_name(path: str | Path) -> str:
    """A path as text that can be stored and printed: bytes that are not UTF-8 (possible in Linux file names,
    kept by Python as surrogates) become U+FFFD."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert gray / BGRA / 16-bit / float images to 3-channel 8-bit BGR."""
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image * (255 if image.max() <= 1 else 1), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def _check_image_size(data: np.ndarray, name: str) -> None:
    """Read the dimensions from the header (PIL opens lazily) and refuse oversized images."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes())) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise SourceError(f"{name}: image dimensions exceed the {MAX_PIXELS:,}-pixel limit") from None
    except Exception:
        return  # a format PIL does not know: OpenCV decides
    if w * h > MAX_PIXELS:
        raise SourceError(f"{name}: {w}x{h} pixels is larger than the {MAX_PIXELS:,}-pixel limit")


class ImageSource(Source):
    kind = "image"
    still = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = 1
        self.description = file_description(path)
        self._image = read_image(path)  # fail now, not mid-run

    def frames(self) -> Iterator[Frame]:
        yield Frame(self._image, 0, 0.0, display_name(self.path.name))


class FolderSource(Source):
    kind = "folder"
    still = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix[1:].lower() in IMG_FORMATS)
        if not self.files:
            raise SourceError(f"{display_name(path)}: no images in this folder")
        self.total = len(self.files)
        self.description = file_description(path)

    def frames(self) -> Iterator[Frame | BadItem]:
        for i, f in enumerate(self.files):
            try:
                yield Frame(read_image(f), i, 0.0, display_name(f.name))
            except SourceError as e:
                yield BadItem(display_name(f.name), str(e))


class VideoSource(Source):
    """A video file, decoded with OpenCV; `stride` keeps every n-th frame."""

    kind = "video"

    def __init__(self, path: Path, stride: int = 1) -> None:
        if stride < 1:
            raise SourceError(f"frame stride must be >= 1, got {stride}")
        self.path, self.stride = path, stride
        name = display_name(path.name)
        if display_name(path) != str(path):
            raise SourceError(f"{name}: the video decoder cannot open names that are not UTF-8")
        cap = cv2.VideoCapture(str(path))
        try:
            # The container's stated size first, so an absurd one is refused before a frame is allocated.
            _check_frame_size(name, cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            ok, first = cap.read()
            if not cap.isOpened() or not ok or first is None:
                raise SourceError(f"{name}: not a readable video (no frames could be decoded)")
            _check_frame_size(name, first.shape[1], first.shape[0])
            self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        self.frame_count = count if count > 0 else None
        self.total = -(-count // stride) if count > 0 else None
        self.description = file_description(path)
        self.frames_read = 0

    def frames(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                if index % self.stride == 0:
                    ok, image = cap.read()
                    if not ok:
                        break
                    yield Frame(image, index, index / self.fps, display_name(self.path.name))
                elif not cap.grab():  # skipped frames are not decoded to pixels
                    break
                index += 1
            self.frames_read = index
        finally:
            cap.release()

    @property
    def truncated(self) -> bool:
        """True when fewer frames decoded than the container announced (a cut-off file)."""
        return self.frame_count is not None and 0 < self.frames_read < self.frame_count - 1

    @property
    def warnings(self) -> list[str]:
        if not self.truncated:
            return []
        return [f"video ended after {self.frames_read} of {self.frame_count} frames (truncated file?)"]


def _check_frame_size(name: str, w: float, h: float) -> None:
    if w * h > MAX_PIXELS:
        raise SourceError(f"{name}: {w:.0f}x{h:.0f} video frames exceed the {MAX_PIXELS:,}-pixel limit")


class StreamSource(Source):
    """A camera index or an RTSP/HTTP URL. Reconnects after a dropped connection, waiting longer after each failed
    try (`reconnect_delay` doubling up to `max_delay`); `stop()` ends it cleanly from another thread.

    `max_reconnects` consecutive failed tries end it (None: never give up, as a camera monitor must);
    `on_state(state, reason)` hears `reconnecting` when the feed drops and `running` when frames flow again.
    """

    kind = "stream"
    live = True
    seekable = False

    def __init__(
        self, spec: str | int, reconnect_delay: float = 1.0, max_reconnects: int | None = 5, max_delay: float = 30.0,
        on_state: Callable[[str, str], None] | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.reconnect_delay, self.max_reconnects, self.max_delay = reconnect_delay, max_reconnects, max_delay
        self.on_state = on_state
        self.description = f"camera {spec}" if isinstance(spec, int) else redact(spec)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> cv2.VideoCapture:
        if isinstance(self.spec, int):
            return cv2.VideoCapture(self.spec)
        # Network streams: a dead server must not hang a read for FFmpeg's default (minutes).
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, timeouts)

    def frames(self) -> Iterator[Frame]:
        index, start, failures, dropped = 0, time.monotonic(), 0, False
        while not self._stop.is_set():
            cap = self._open()
            if cap.isOpened():
                self.fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
                try:
                    while not self._stop.is_set():
                        ok, image = cap.read()
                        if not ok:
                            break  # dropped: reconnect
                        if dropped and self.on_state is not None:
                            self.on_state("running", "")
                        failures, dropped = 0, False
                        yield Frame(image, index, time.monotonic() - start, self.description)
                        index += 1
                finally:
                    cap.release()
                reason = "the stream stopped sending frames"
            else:
                cap.release()
                reason = "cannot open stream"
            if self._stop.is_set():
                return
            failures += 1
            if self.max_reconnects is not None and failures > self.max_reconnects:
                if index == 0:
                    raise SourceError(f"{self.description}: {reason} (tried {failures} times)")
                return  # the stream ended for good (or a file URL reached its end)
            if not dropped and self.on_state is not None:
                self.on_state("reconnecting", reason)
            dropped = True
            self._stop.wait(min(self.reconnect_delay * 2 ** (failures - 1), self.max_delay))


class LoopingVideoSource(VideoSource):
    """A video file played as if it were a camera: in real time at its own frame rate and, with `loop`, from the
    start again at its end, until `stop()` (demos and tests of camera monitors)."""

    kind = "stream"
    live = True
    seekable = False

    def __init__(self, path: Path, loop: bool = True) -> None:
        super().__init__(path)
        self.total, self.loop = None, loop
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic()
        while not self._stop.is_set():
            for frame in super().frames():
                due = start + index / self.fps  # real time: a frame is not handed out before its moment
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                yield Frame(frame.image, index, time.monotonic() - start, self.description)
                index += 1
            if not self.loop:
                return


class LiveSource(Source):
    """Frames pushed one at a time (a browser webcam); a run pulls exactly the frames pushed so far."""

    kind = "stream"
    live = True
    seekable = False

    def __init__(self, description: str = "browser camera", fps: float = 10.0) -> None:
        self.description, self.fps = description, fps
        self._pending: deque[Frame] = deque()
        self._start = time.monotonic()
        self._index = 0

    def push(self, image: np.ndarray) -> None:
        self._pending.append(Frame(image, self._index, time.monotonic() - self._start, self.description))
        self._index += 1

    def frames(self) -> Iterator[Frame]:
        while self._pending:
            yield self._pending.popleft()


PREFETCH = 4
"""Frames a file source decodes ahead of the one being processed."""


@dataclass
class _Failure:
    error: BaseException


def prefetched(items: Iterator[T], depth: int = PREFETCH) -> Iterator[T]:
    """`items`, produced on a thread of their own up to `depth` ahead, so that decoding the next frame overlaps
    processing this one (OpenCV's and PIL's decoders release the GIL). An error in the producer is raised here, in
    order; closing this iterator stops the producer and closes `items`."""
    pending: queue.Queue[T | _Failure | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _Failure | None) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(None)
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Failure(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while (item := pending.get()) is not None:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        producer.join(timeout=30)


def open_source(spec: str | Path | int, stride: int = 1) -> Source:
    """Pick the source type from a path, folder, digit string (camera) or URL.

    Raises:
        SourceError: For a missing path, an unknown file type or an unreadable image / video.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return StreamSource(int(spec))
    text = str(spec)
    if text.lower().startswith(("rtsp://", "rtmp://", "http://", "https://")):
        return StreamSource(text)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise SourceError(f"{display_name(path)}: file not found")
    suffix = path.suffix[1:].lower()
    if suffix in VID_FORMATS and suffix != "gif":
        return VideoSource(path, stride)
    if suffix in IMG_FORMATS:
        return ImageSource(path)
    name = display_name(path.name)
    raise SourceError(f"{name}: unsupported file type '.{suffix}' (use an image, a video or a folder)")
