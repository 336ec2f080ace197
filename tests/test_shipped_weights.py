"""The shipped glove models on real content: the default BRA model (models/weights/gloves-bra-n.pt) and the plain
YOLO11n baseline trained at the same schedule (gloves-n.pt). Bare hands in the shared desk clip, gloved and bare
hands in valid photos, nothing in blank frames. The assertions are the model card's measured behaviour
(models/README.md), which also lists what these models still get wrong."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.engine import DetectionEngine, RunSettings
from app.nn import BiLevelRoutingAttention
from app.runtime import DEFAULT_WEIGHTS, ROOT, WEIGHTS_DIR

pytestmark = pytest.mark.slow  # the shipped models on real images and video

SETTINGS = RunSettings(conf=0.25, imgsz=320)  # the training size, where the card's valid scores were measured
PHOTOS_PER_CLASS = 8  # valid photos holding exactly one hand of the class, first by name


@pytest.fixture(scope="module", params=["gloves-bra-n.pt", "gloves-n.pt"])
def engine(request: pytest.FixtureRequest) -> DetectionEngine:
    return DetectionEngine(WEIGHTS_DIR / request.param)


def test_weights_are_stripped_and_describe_the_glove_classes(engine: DetectionEngine) -> None:
    assert engine.weights.stat().st_size < 15 * 2**20
    assert engine.model.ckpt.get("optimizer") is None  # stripped: for inference and fine-tuning
    assert engine.task == "detect" and engine.names == {0: "gloved_hand", 1: "bare_hand"}
    has_bra = any(isinstance(m, BiLevelRoutingAttention) for m in engine.model.model.modules())
    assert has_bra == ("bra" in engine.weights.name)  # the baseline is plain YOLO11n


@pytest.mark.parametrize("value", [0, 127, 255])
def test_blank_frames_have_no_detections(engine: DetectionEngine, value: int) -> None:
    assert engine.predict(np.full((480, 640, 3), value, np.uint8), SETTINGS, annotate=False).detections == []


def _frames(clip: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        assert ok, f"frame {index} of {clip}"
        frames.append(frame)
    cap.release()
    return frames


# Of 12 frames, per model and size; measured 3 and 9 (BRA), 7 and 8 (plain): models/README.md, Known limits.
DESK_FRAMES_WITH_BARE_HAND = {
    ("gloves-bra-n.pt", 640): 2,
    ("gloves-bra-n.pt", 960): 8,
    ("gloves-n.pt", 640): 6,
    ("gloves-n.pt", 960): 7,
}


@pytest.mark.parametrize("imgsz", [640, 960])
def test_bare_hand_found_in_desk_clip_frames(engine: DetectionEngine, shared_data: Path, imgsz: int) -> None:
    """The clip shows one bare hand over a desk throughout (720x720: run at 640 and 960, where the hand is large
    enough). A hand from another source: the card lists how weak both models still are on it, and the false
    gloved_hand boxes the BRA model puts on the desk; the plain model puts none there."""
    frames = _frames(shared_data / "videos" / "hand_desk.mp4", 12)
    settings = RunSettings(conf=0.25, imgsz=imgsz)
    found = [{d.class_name for d in engine.predict(f, settings, annotate=False).detections} for f in frames]
    assert sum("bare_hand" in classes for classes in found) >= DESK_FRAMES_WITH_BARE_HAND[engine.weights.name, imgsz]
    if "bra" not in engine.weights.name:
        assert not any("gloved_hand" in classes for classes in found), found


def _single_hand_photos(shared_data: Path, class_id: int) -> list[tuple[Path, np.ndarray]]:
    """Valid photos labelled with exactly one hand, of `class_id`, and that hand's box in pixels."""
    chosen = []
    for label in sorted((shared_data / "gloves" / "valid" / "labels").glob("*.txt")):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        if len(rows) == 1 and int(rows[0][0]) == class_id:
            image = label.parent.parent / "images" / f"{label.stem}.jpg"
            h, w = cv2.imread(str(image)).shape[:2]
            cx, cy, bw, bh = (float(v) for v in rows[0][1:5])
            box = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            chosen.append((image, box))
        if len(chosen) == PHOTOS_PER_CLASS:
            break
    return chosen


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


MISSED_AT_MOST = 1  # of 8 per class, both models; measured: one glove each (models/README.md)


@pytest.mark.parametrize("class_name", ["gloved_hand", "bare_hand"])
def test_labelled_hands_found_in_valid_photos(engine: DetectionEngine, shared_data: Path, class_name: str) -> None:
    class_id = {"gloved_hand": 0, "bare_hand": 1}[class_name]
    photos = _single_hand_photos(shared_data, class_id)
    assert len(photos) == PHOTOS_PER_CLASS
    missed = []
    for image, box in photos:
        detections = engine.predict(cv2.imread(str(image)), SETTINGS, annotate=False).detections
        if not any(d.class_name == class_name and _iou(np.array(d.xyxy), box) >= 0.5 for d in detections):
            missed.append(f"{image.name}: {detections}")
    assert len(missed) <= MISSED_AT_MOST, missed


def test_default_weights_path_is_the_shipped_bra_model() -> None:
    assert DEFAULT_WEIGHTS == ROOT / "models" / "weights" / "gloves-bra-n.pt" and DEFAULT_WEIGHTS.is_file()
