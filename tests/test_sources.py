"""Sources: images, folders, videos and streams, with their typed attributes and their refusals."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_video, png_header_only

from app.errors import SourceError
from app.sources import (
    MAX_PIXELS,
    BadItem,
    Frame,
    LiveSource,
    StreamSource,
    VideoSource,
    open_source,
    prefetched,
    read_image,
)


def test_video_source_stride_and_timestamps(tmp_path: Path) -> None:
    source = open_source(make_video(tmp_path / "clip.mp4", frames=12), stride=5)
    assert isinstance(source, VideoSource) and source.total == 3 and source.fps == pytest.approx(10)
    frames = list(source.frames())
    assert [(f.index, f.timestamp) for f in frames] == [(0, 0.0), (5, 0.5), (10, 1.0)]
    assert frames[0].image.shape == (96, 128, 3) and not source.truncated


def test_truncated_video_is_read_up_to_the_cut_and_flagged(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=60, noise=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    source = open_source(cut)
    frames = list(source.frames())
    assert 0 < len(frames) < 60 and source.truncated


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable video"), (b"just some text, not a video\n" * 20, "not a readable video")],
)
def test_unreadable_videos_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.mp4").write_bytes(content)
    with pytest.raises(SourceError, match=message):
        open_source(tmp_path / "bad.mp4")


def test_image_variants_decode_to_bgr8(tmp_path: Path) -> None:
    gray = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([gray, gray, gray, gray]))
    cv2.imwrite(str(tmp_path / "deep.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "ünïcødé 名前.jpg"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    for name in ("gray.png", "alpha.png", "deep.png", "ünïcødé 名前.jpg"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (32, 64, 3), name
        assert abs(int(image[0, 40, 0]) - 40) <= 2, name


def test_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path: Path) -> None:
    """A portrait phone photo is stored landscape with EXIF orientation 6 (turn 90 degrees clockwise to show it);
    browsers show it upright, so the model must see it upright too, not on its side."""
    from PIL import Image

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :10] = 255  # a white band at the stored image's left edge: at the top once turned clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (80, 40, 3)
    assert image[:10].mean() > 200 and image[20:].mean() < 30


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jpg", b"", "empty file"),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 200, "not a readable image"),
        ("text.png", b"hello", "not a readable image"),
    ],
)
def test_bad_images_are_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=message):
        read_image(tmp_path / name)


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 60_000, 60_000)
    assert bomb.stat().st_size < 200 and MAX_PIXELS < 60_000**2
    with pytest.raises(SourceError, match="pixel limit"):
        read_image(bomb)


def test_folder_skips_bad_files_and_keeps_going(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"ok{i}.jpg"), np.full((32, 32, 3), 50 * i, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "notes.txt").write_text("ignored: not an image type")
    items = list(open_source(tmp_path).frames())
    assert [type(i).__name__ for i in items] == ["BadItem", "Frame", "Frame", "Frame"]
    assert isinstance(items[0], BadItem) and items[0].name == "broken.jpg"


def test_unknown_paths_and_types(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        open_source(tmp_path / "nope.jpg")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(SourceError, match="unsupported file type"):
        open_source(tmp_path / "doc.pdf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "empty")


def test_stream_stops_cleanly_from_another_thread(tmp_path: Path) -> None:
    stream = StreamSource(str(make_video(tmp_path / "cam.mp4", frames=30)), reconnect_delay=0.01)
    seen: list[Frame] = []
    for frame in stream.frames():
        seen.append(frame)
        if len(seen) == 5:
            threading.Thread(target=stream.stop).start()
    assert 5 <= len(seen) <= 7
    assert [f.index for f in seen] == list(range(len(seen)))


def test_stream_reconnects_after_the_feed_drops(tmp_path: Path) -> None:
    # A file behind a "stream" ends like a dropped feed: the source reopens it, so frames keep coming.
    stream = StreamSource(str(make_video(tmp_path / "cam.mp4", frames=4)), reconnect_delay=0.01)
    frames = []
    for frame in stream.frames():
        frames.append(frame)
        if len(frames) == 10:
            stream.stop()
    assert len(frames) == 10 and [f.index for f in frames] == list(range(10))  # 4 + 4 + 2: two reconnects


def test_unreachable_stream_gives_up_with_a_clear_error() -> None:
    stream = StreamSource("rtsp://127.0.0.1:9/none", reconnect_delay=0.01, max_reconnects=1)
    with pytest.raises(SourceError, match="cannot open stream"):
        list(stream.frames())


def test_sources_say_what_they_are(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    video = make_video(tmp_path / "v.mp4", frames=3)
    kinds = {
        "image": open_source(tmp_path / "a.jpg"),
        "folder": open_source(tmp_path),
        "video": open_source(video),
        "stream": open_source("rtsp://127.0.0.1:9/x"),
        "live": LiveSource(),
    }
    flags = {k: (s.still, s.live, s.seekable) for k, s in kinds.items()}
    assert flags == {"image": (True, False, True), "folder": (True, False, True), "video": (False, False, True),
                     "stream": (False, True, False), "live": (False, True, False)}  # fmt: skip


def test_files_are_described_by_their_whole_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file named relative to the current folder is recorded as the file it is, so History and the workbook tell
    `clip.mp4` of one folder from that of another."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    make_video(tmp_path / "v.mp4", frames=3)
    monkeypatch.chdir(tmp_path)
    described = [open_source(name).description for name in ("a.jpg", "v.mp4", ".")]
    assert described == [str(tmp_path / "a.jpg"), str(tmp_path / "v.mp4"), str(tmp_path)]


def test_live_source_yields_exactly_what_was_pushed() -> None:
    live = LiveSource()
    assert list(live.frames()) == []
    live.push(np.zeros((4, 4, 3), np.uint8))
    live.push(np.ones((4, 4, 3), np.uint8))
    frames = list(live.frames())
    assert [f.index for f in frames] == [0, 1] and frames[0].timestamp <= frames[1].timestamp
    assert list(live.frames()) == []


def test_prefetched_keeps_order_raises_in_order_and_stops_when_closed() -> None:
    """Items come in order from a producer thread; its error comes after the items before it; closing early stops
    the producer and closes the source's own iterator."""
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise SourceError("broken frame")

    got = []
    with pytest.raises(SourceError, match="broken frame"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1, 2]

    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.set()

    threads = threading.active_count()
    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert closed.wait(5) and threading.active_count() == threads
