"""The engine: model checks, run settings and model defaults, typed results, tracking."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ultralytics import YOLO
from ultralytics.engine.results import Results
from ultralytics.utils.metrics import box_iou

from app.engine import DetectionEngine, Measured, ModelDefaults, RunSettings
from app.errors import ModelError
from app.results import from_ultralytics
from app.sources import (
    Frame,
    read_image,
)

LOW = RunSettings(conf=0.001, imgsz=96)  # the one-epoch test models only score low


@pytest.fixture(scope="module")
def detector(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["detect"][0])


@pytest.fixture(scope="module")
def segmenter(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["segment"][0])


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
    result = detector.predict(read_image(image_path), LOW)
    assert result.width == result.height == 96
    assert result.detections and result.annotated.shape == (96, 96, 3)
    for d in result.detections:
        assert d.class_name == detector.names[d.class_id] and 0.001 <= d.confidence <= 1
        x1, y1, x2, y2 = d.xyxy
        assert 0 <= x1 <= x2 <= 96 and 0 <= y1 <= y2 <= 96
        assert d.track_id is None and d.polygon is None and d.mask_area is None


@pytest.mark.slow  # seconds of real work: in the full suite, keeping the fast loop under 2 minutes
def test_segment_engine_returns_mask_fields(segmenter: DetectionEngine, trained_models: dict) -> None:
    image_path = next((trained_models["segment"][1].parent / "valid" / "images").glob("*.jpg"))
    result = segmenter.predict(read_image(image_path), RunSettings(conf=1e-9, imgsz=96))
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
    only = detector.settings(conf=0.001, imgsz=96, classes=["hand", "0"])
    assert only.classes == (4, 0) and {d.class_id for d in detector.predict(image, only).detections} <= {0, 4}
    with pytest.raises(ModelError, match="unknown class 'mitten'"):
        detector.class_ids(["mitten"])
    with pytest.raises(ModelError, match=r"confidence and IoU must be in 0\.\.1"):
        detector.settings(conf=1.5)
    with pytest.raises(ModelError, match="unknown class ids"):
        RunSettings(classes=(42,)).check(detector.names)
    with pytest.raises(ModelError, match=r"image size must be 32\.\.4096, got 16$"):
        detector.settings(imgsz=16)
    with pytest.raises(ModelError, match=r"image size must be 32\.\.4096, got 100000"):
        detector.settings(imgsz=100_000)  # a typo: gigabytes of canvas


def test_settings_start_from_the_model_defaults(detector: DetectionEngine) -> None:
    # The one-epoch test model stores no calibrated defaults: its training size and the usual confidence.
    assert detector.defaults == ModelDefaults(imgsz=96, conf=0.25, iou=0.7, calibrated=False)
    assert detector.settings() == RunSettings(conf=0.25, iou=0.7, imgsz=96)
    assert detector.settings(conf=0.4, imgsz=128) == RunSettings(conf=0.4, iou=0.7, imgsz=128)


def test_calibrated_defaults_are_read_from_the_checkpoint(trained_models: dict, tmp_path: Path) -> None:
    from app.calibration import store_defaults

    weights = tmp_path / "calibrated.pt"
    weights.write_bytes(trained_models["detect"][0].read_bytes())
    store_defaults(weights, ModelDefaults(imgsz=160, conf=0.35, iou=0.6, calibrated=True, agnostic=True))
    engine = DetectionEngine(weights)
    assert engine.defaults == ModelDefaults(imgsz=160, conf=0.35, iou=0.6, calibrated=True, agnostic=True)
    assert engine.settings() == RunSettings(conf=0.35, iou=0.6, imgsz=160, agnostic=True)
    assert engine.settings(agnostic=False).agnostic is False


def test_agnostic_nms_keeps_one_box_where_classes_overlap(trained_models: dict) -> None:
    """Across classes, no two kept boxes overlap beyond the NMS IoU (one hand: gloved or bare, not both)."""
    engine = DetectionEngine(trained_models["detect"][0], runtime="torch")
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    per_class = engine.predict(image, replace(LOW, iou=0.3), annotate=False).detections
    agnostic = engine.predict(image, replace(LOW, iou=0.3, agnostic=True), annotate=False).detections
    assert 0 < len(agnostic) <= len(per_class)
    ious = box_iou(*(torch.tensor([d.xyxy for d in agnostic]),) * 2).fill_diagonal_(0)
    assert float(ious.max()) <= 0.3 + 1e-6


@pytest.mark.parametrize(
    "stored", [None, {"imgsz": "big", "conf": 0.3, "iou": 0.7}, {"imgsz": 320, "conf": 2.0, "iou": 0.7}, [1, 2]]
)
def test_unusable_stored_defaults_fall_back_to_the_training_size(stored: object) -> None:
    assert ModelDefaults.of(stored, [320, 320]) == ModelDefaults(imgsz=320, conf=0.25, iou=0.7, calibrated=False)


MEASURED = {"data": "gloves-scenes valid", "images": 126, "classes": [["gloved_hand", 26, 100], ["bare_hand", 44, 147]],
            "false_boxes": 49}  # fmt: skip


@pytest.mark.parametrize(
    "stored", [None, [1], {"data": "x"}, MEASURED | {"images": -1}, MEASURED | {"classes": [["hand", 5, 3]]},
               MEASURED | {"classes": []}, MEASURED | {"false_boxes": "many"}, MEASURED | {"classes": [["hand", 1]]}]
)  # fmt: skip
def test_unusable_measured_counts_are_left_out_not_the_defaults(stored: object) -> None:
    """A model file can hold anything: counts that cannot be true are not shown, and the defaults still hold."""
    defaults = ModelDefaults.of({"imgsz": 640, "conf": 0.3, "iou": 0.5, "measured": stored}, None)
    assert defaults == ModelDefaults(imgsz=640, conf=0.3, iou=0.5, calibrated=True)


def test_measured_counts_read_as_an_operator_reads_them() -> None:
    defaults = ModelDefaults.of({"imgsz": 640, "conf": 0.3, "iou": 0.5, "measured": MEASURED}, None)
    assert defaults.measured.text() == (
        "measured on 126 images it did not train on (gloves-scenes valid): it found 70 of 247 labelled objects (28%; "
        "gloved_hand 26 of 100, bare_hand 44 of 147); 49 boxes matched no labelled object")  # fmt: skip
    assert ModelDefaults.of(defaults.as_dict(), None) == defaults  # stored and read back unchanged


def test_non_ascii_class_names_render(trained_models: dict) -> None:
    engine = DetectionEngine(trained_models["detect"][0], runtime="torch")  # names changed in the loaded model
    names = dict(enumerate(["перчатка", "手袋", "guante_ñ", "c", "рука", "e"]))
    engine.model.model.names = names
    image = np.full((96, 96, 3), 90, np.uint8)
    result = engine.predict(image, LOW)
    assert result.detections and all(d.class_name in names.values() for d in result.detections)
    assert not np.array_equal(result.annotated, image)  # boxes and labels were drawn


def test_tracking_assigns_ids_across_frames(trained_models: dict, tmp_path: Path) -> None:
    cfg = Path(__import__("ultralytics").__file__).parent / "cfg" / "trackers" / "bytetrack.yaml"
    tracker = yaml.safe_load(cfg.read_text())
    # ByteTrack multiplies IoU by the score when matching (fuse_score); at these scores nothing would match.
    tracker.update(track_high_thresh=0.001, track_low_thresh=0.0005, new_track_thresh=0.001, fuse_score=False)
    (tmp_path / "tracker.yaml").write_text(yaml.safe_dump(tracker))
    engine = DetectionEngine(trained_models["detect"][0])
    settings = RunSettings(conf=0.001, imgsz=96, track=True, tracker=str(tmp_path / "tracker.yaml"))
    scene = np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)  # a still camera view
    frames = [Frame(scene, i, i / 10, "cam") for i in range(8)]
    results = [engine.predict(f, settings, annotate=False) for f in frames]
    # Ultralytics leaves a frame's detections untracked (id None) when the tracker confirms none of them.
    ids = [d.track_id for r in results for d in r.detections if d.track_id is not None]
    assert ids and len(set(ids)) < len(ids)  # the same objects keep their ids from frame to frame
    engine.reset()
    again = engine.predict(frames[0], settings, annotate=False)
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


@pytest.mark.slow  # exports / several runs: outside the fast subset
def test_exports_carry_the_checkpoints_calibrated_defaults(trained_models: dict, tmp_path: Path) -> None:
    """An exported model runs at its checkpoint's calibrated confidence and IoU, at the export's own size; an
    export of a checkpoint without them falls back as that checkpoint does."""
    from app.calibration import store_defaults
    from app.export import export_onnx, export_openvino

    weights = tmp_path / "calibrated.pt"
    weights.write_bytes(trained_models["detect"][0].read_bytes())
    measured = Measured("gloves-scenes valid", 126, tuple((f"class_{i}", i, 2 * i) for i in range(1, 81)), 49)
    store_defaults(weights, ModelDefaults(imgsz=160, conf=0.35, iou=0.6, calibrated=True, agnostic=True,
                                          measured=measured))  # fmt: skip
    onnx_file = export_onnx(weights, imgsz=128, out=tmp_path / "calibrated.onnx")
    folder = export_openvino(weights, imgsz=128, out=tmp_path / "calibrated_openvino_model")
    for exported in (onnx_file, folder):  # what was measured travels too, for 80 classes as for two
        engine = DetectionEngine(exported)
        assert engine.defaults == ModelDefaults(imgsz=128, conf=0.35, iou=0.6, calibrated=True, agnostic=True,
                                                measured=replace(measured, exported_from="calibrated.pt"))  # fmt: skip
        assert engine.settings() == RunSettings(conf=0.35, iou=0.6, imgsz=128, agnostic=True)
    uncalibrated = export_onnx(trained_models["detect"][0], imgsz=128, out=tmp_path / "plain.onnx")
    assert DetectionEngine(uncalibrated).defaults == ModelDefaults(imgsz=128, conf=0.25, iou=0.7, calibrated=False)


@pytest.mark.slow  # an OpenVINO export for the `auto` comparison
def test_test_time_augmentation_runs_a_checkpoint_in_pytorch_only(trained_models: dict) -> None:
    weights = trained_models["detect"][0]
    auto = DetectionEngine(weights)
    settings = auto.settings(augment=True)
    backend = auto.backend(settings)
    assert settings.augment and (backend.runtime, backend.note) == ("torch", "")
    assert auto.backend(auto.settings()).runtime == "openvino"  # without it, `auto` on a CPU as before
    image = np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    low = replace(settings, conf=0.001)
    assert (
        auto.predict(image, low, annotate=False).detections
        != auto.predict(image, replace(low, augment=False), annotate=False).detections
    )  # flips and scales give other boxes
    assert DetectionEngine(weights, runtime="onnx").settings(augment=True).augment is False  # forced: as asked
    segment = DetectionEngine(trained_models["segment"][0], runtime="torch")  # Ultralytics: one pass for masks
    assert not segment.supports_augment and segment.settings(augment=True).augment is False
