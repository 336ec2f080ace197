"""The engine and its sources: model checks, typed results, images / folders / videos / streams, tracking."""

from __future__ import annotations

import struct
import threading
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from ultralytics import YOLO
from ultralytics.engine.results import Results

from app.engine import DetectionEngine, EngineSettings
from app.errors import ModelError, SourceError
from app.outputs import VideoWriter
from app.results import from_ultralytics
from app.sources import (
    MAX_PIXELS,
    BadItem,
    Frame,
    StreamSource,
    VideoSource,
    open_source,
    read_image,
)

LOW = EngineSettings(conf=0.001, imgsz=96)  # the one-epoch test models only score low


def make_video(
    path: Path, frames: int = 12, size: tuple[int, int] = (128, 96), fps: float = 10.0, noise: bool = False
) -> Path:
    """A small H.264 clip of a bright square moving right, written with the project's own writer.

    With `noise`, every frame is fresh noise, so each one takes a similar share of the file.
    """
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps) as video:
        for i in range(frames):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise else None
            img = np.full((size[1], size[0], 3), 40, np.uint8) if img is None else img
            cv2.rectangle(img, (5 + 6 * i, 30), (35 + 6 * i, 60), (60, 200, 240), -1)
            video.write(img)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


@pytest.fixture(scope="module")
def detector(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["detect"][0], LOW)


@pytest.fixture(scope="module")
def segmenter(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["segment"][0], EngineSettings(conf=1e-9, imgsz=96))


def test_engine_reports_task_and_classes(detector: DetectionEngine, segmenter: DetectionEngine) -> None:
    assert (detector.task, segmenter.task) == ("detect", "segment")
    assert detector.names[4] == "hand" and len(segmenter.names) == 6
    assert len(detector.sha256) == 64


@pytest.mark.parametrize("kind", ["missing", "suffix", "garbage", "empty", "tensors", "classify"])
def test_engine_rejects_unusable_weights(kind: str, tmp_path: Path) -> None:
    path = tmp_path / ("w.txt" if kind == "suffix" else "w.pt")
    message = {"missing": "model file not found", "suffix": "expected a .pt checkpoint",
               "garbage": "not a YOLO checkpoint", "empty": "empty file",
               "tensors": "not a YOLO checkpoint", "classify": "is a classify model"}[kind]  # fmt: skip
    if kind == "empty":
        path.touch()
    elif kind in ("suffix", "garbage"):
        path.write_bytes(b"\x00not a checkpoint" * 10)
    elif kind == "tensors":
        torch.save({"weight": torch.zeros(3)}, path)
    elif kind == "classify":
        YOLO("yolo11n-cls.yaml").save(path)
    with pytest.raises(ModelError, match=message):
        DetectionEngine(path)


def test_predict_returns_typed_detections(detector: DetectionEngine, trained_models: dict) -> None:
    image_path = next((trained_models["detect"][1].parent / "valid" / "images").glob("*.jpg"))
    result = detector.predict(read_image(image_path))
    assert result.width == result.height == 96
    assert result.detections and result.annotated.shape == (96, 96, 3)
    for d in result.detections:
        assert d.class_name == detector.names[d.class_id] and 0.001 <= d.confidence <= 1
        x1, y1, x2, y2 = d.xyxy
        assert 0 <= x1 <= x2 <= 96 and 0 <= y1 <= y2 <= 96
        assert d.track_id is None and d.polygon is None and d.mask_area is None


def test_segment_engine_returns_mask_fields(segmenter: DetectionEngine, trained_models: dict) -> None:
    image_path = next((trained_models["segment"][1].parent / "valid" / "images").glob("*.jpg"))
    result = segmenter.predict(read_image(image_path))
    assert result.detections
    assert all(d.polygon is not None and d.mask_area is not None for d in result.detections)


def test_masks_become_pixel_polygons_with_areas() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    masks = torch.zeros(2, 60, 80)
    masks[0, 10:30, 20:60] = 1  # 40 x 20 rectangle
    masks[1, 40:50, 5:15] = 1  # 10 x 10 square
    boxes = torch.tensor([[20, 10, 60, 30, 0.9, 1], [5, 40, 15, 50, 0.4, 0]], dtype=torch.float32)
    result = from_ultralytics(Results(image, "x.jpg", {0: "a", 1: "b"}, boxes=boxes, masks=masks), 7, 1.5, "x.jpg")
    big, small = result.detections
    assert (result.frame_index, result.timestamp, result.width, result.height) == (7, 1.5, 80, 60)
    assert (big.class_name, big.confidence, big.xyxy) == ("b", pytest.approx(0.9), (20.0, 10.0, 60.0, 30.0))
    assert big.mask_area == pytest.approx(800, rel=0.1) and small.mask_area == pytest.approx(100, rel=0.25)
    xs, ys = zip(*big.polygon, strict=True)
    assert min(xs) >= 19 and max(xs) <= 61 and min(ys) >= 9 and max(ys) <= 31
    assert result.counts() == {"b": 1, "a": 1}


def test_class_filter_and_settings_checks(detector: DetectionEngine) -> None:
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    detector.update(classes=detector.class_ids(["hand", "0"]))
    try:
        assert {d.class_id for d in detector.predict(image).detections} <= {0, 4}
    finally:
        detector.update(classes=None)
    with pytest.raises(ModelError, match="unknown class 'mitten'"):
        detector.class_ids(["mitten"])
    with pytest.raises(ModelError, match=r"confidence and IoU must be in 0\.\.1"):
        detector.update(conf=1.5)
    with pytest.raises(ModelError, match="unknown class ids"):
        detector.update(classes=[42])
    assert detector.settings.conf == LOW.conf  # a rejected change leaves the settings as they were


def test_non_ascii_class_names_render(trained_models: dict) -> None:
    engine = DetectionEngine(trained_models["detect"][0], LOW)
    names = dict(enumerate(["перчатка", "手袋", "guante_ñ", "c", "рука", "e"]))
    engine.model.model.names = names
    image = np.full((96, 96, 3), 90, np.uint8)
    result = engine.predict(image)
    assert result.detections and all(d.class_name in names.values() for d in result.detections)
    assert not np.array_equal(result.annotated, image)  # boxes and labels were drawn


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


def test_tracking_assigns_ids_across_frames(trained_models: dict, tmp_path: Path) -> None:
    cfg = Path(__import__("ultralytics").__file__).parent / "cfg" / "trackers" / "bytetrack.yaml"
    tracker = yaml.safe_load(cfg.read_text())
    # ByteTrack multiplies IoU by the score when matching (fuse_score); at these scores nothing would match.
    tracker.update(track_high_thresh=0.001, track_low_thresh=0.0005, new_track_thresh=0.001, fuse_score=False)
    (tmp_path / "tracker.yaml").write_text(yaml.safe_dump(tracker))
    engine = DetectionEngine(
        trained_models["detect"][0],
        EngineSettings(conf=0.001, imgsz=96, track=True, tracker=str(tmp_path / "tracker.yaml")),
    )
    scene = np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)  # a still camera view
    frames = [Frame(scene, i, i / 10, "cam") for i in range(8)]
    results = [engine.predict(f, annotate=False) for f in frames]
    # Ultralytics leaves a frame's detections untracked (id None) when the tracker confirms none of them.
    ids = [d.track_id for r in results for d in r.detections if d.track_id is not None]
    assert ids and len(set(ids)) < len(ids)  # the same objects keep their ids from frame to frame
    engine.reset()
    again = engine.predict(frames[0], annotate=False)
    assert min(d.track_id for d in again.detections) == 1  # a new run numbers its tracks from 1 again


class _Marker:
    """Pickles to a call that creates a file: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("where", ["top", "nested"])
def test_checkpoints_that_run_code_are_refused_without_running_it(where: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = _Marker(marker)
    ckpt = {"model": payload} if where == "top" else {"model": None, "train_args": {"x": [1, {"y": payload}]}}
    torch.save(ckpt, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not a YOLO checkpoint"):
        DetectionEngine(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.fixture
def real_checkpoint(trained_models: dict) -> bytes:
    return trained_models["detect"][0].read_bytes()


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_checkpoints_are_refused(keep: float, real_checkpoint: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    path.write_bytes(real_checkpoint[: int(len(real_checkpoint) * keep)])
    with pytest.raises(ModelError, match="truncated, damaged or another format"):
        DetectionEngine(path)


@pytest.mark.parametrize("entry", ["best/payload.py", "../../etc/cron.d/job", "other/data.pkl", "best/data/0.so"])
def test_archives_with_unexpected_entries_are_refused_unread(entry: str, real_checkpoint: bytes, tmp_path: Path):
    path = tmp_path / "extra.pt"
    path.write_bytes(real_checkpoint)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(entry, b"import os; os.system('touch marker')")
    with pytest.raises(ModelError, match=r"entries torch\.save never writes"):
        DetectionEngine(path)
    (tmp_path / "original.pt").write_bytes(real_checkpoint)
    assert DetectionEngine(tmp_path / "original.pt").task == "detect"  # the same archive without the extra loads


def test_oversized_checkpoints_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    with open(path, "wb") as f:  # sparse: 201 MB on paper, nothing on disk
        f.truncate(201 * 2**20)
    with pytest.raises(ModelError, match="over the 200 MB limit"):
        DetectionEngine(path)
