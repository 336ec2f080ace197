"""The shipped glove models on real content from both sets: the default model (models/weights/gloves-n.pt, plain
YOLO11n) and BRA-YOLO11n (gloves-bra-n.pt), each at its own calibrated defaults (benchmarks/real_hands.py prints
the counts).
Scene photos from gloves-scenes/valid, close-ups from gloves/valid, the desk clip (a bare hand, no glove) and blank
frames. The thresholds are the model card's measured numbers (models/README.md), rounded down a little; the card
also lists what these models still get wrong."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.engine import DetectionEngine
from app.export import checked_int8, file_sha256, openvino_export_path, read_openvino_info
from app.nn import BiLevelRoutingAttention
from app.runtime import DEFAULT_WEIGHTS, DESK_CLIP, ROOT, WEIGHTS_DIR

sys.path.insert(0, str(ROOT / "benchmarks"))
from real_hands import (
    CLASSES,
    PHOTOS_PER_CLASS,
    SIZES,
    desk_counts,
    desk_frames,
    found_by_size,
    hands_found,
    single_hand_photos,
)

pytestmark = pytest.mark.slow  # the shipped models on real images and video

# Measured at each model's defaults (models/README.md): labelled hands found of 8 per class and set, and the desk clip.
FOUND_AT_LEAST = {  # measured 6, 6, 8, 8 for both models, in one pass and with TTA
    ("gloves-n.pt", "gloves-scenes", "gloved_hand"): 5,
    ("gloves-n.pt", "gloves-scenes", "bare_hand"): 5,
    ("gloves-n.pt", "gloves", "gloved_hand"): 7,
    ("gloves-n.pt", "gloves", "bare_hand"): 7,
    ("gloves-bra-n.pt", "gloves-scenes", "gloved_hand"): 5,
    ("gloves-bra-n.pt", "gloves-scenes", "bare_hand"): 5,
    ("gloves-bra-n.pt", "gloves", "gloved_hand"): 7,
    ("gloves-bra-n.pt", "gloves", "bare_hand"): 7,
}
# Desk clip, of 12 frames: (frames with the bare hand >=, false gloved_hand boxes <=); measured (9, 0) for both, and
# (9, 1) for the INT8 export: one weak false glove (0.27, just above the 0.256 default) the checkpoint does not give.
DESK = {"gloves-n.pt": (8, 0), "gloves-bra-n.pt": (8, 0), "gloves-n_int8_openvino_model": (8, 1)}
# Every frame of it (378), as an operator watches: (frames with the bare hand >=, frames with a false gloved_hand <=);
# measured (253, 55) and (296, 33): the false gloves a 12-frame sample missed (the model card, "The desk clip").
DESK_EVERY_FRAME = {"gloves-n.pt": (240, 60), "gloves-bra-n.pt": (280, 38)}
# Boxes on a blank frame (black, grey, white); measured: none, but for BRA at its low calibrated confidence (0.139) one
# frame-filling gloved_hand (0.16) on the white frame (an over-exposed camera; the model card's known limits).
BLANK_AT_MOST: dict[tuple[str, int], int] = {("gloves-bra-n.pt", 255): 1}


@pytest.fixture(scope="module", params=["gloves-bra-n.pt", "gloves-n.pt"])
def engine(request: pytest.FixtureRequest) -> DetectionEngine:
    # the checkpoint itself, in OpenVINO f32 (within 1e-3 of PyTorch, test_runtime), on every CPU: `auto` would run
    # the INT8 export instead on CPUs with VNNI / AMX, which has a test of its own below
    return DetectionEngine(WEIGHTS_DIR / request.param, runtime="openvino")


@pytest.fixture(scope="module")
def tta_engine(engine: DetectionEngine) -> DetectionEngine:
    """The same checkpoint under `auto`, as photos run by default: with test-time augmentation that is PyTorch on
    every CPU (Ultralytics implements TTA there only)."""
    return DetectionEngine(engine.weights)


def running(engine: DetectionEngine, tta_engine: DetectionEngine, augment: bool) -> DetectionEngine:
    """The engine a frame (`augment` False) or a photo (True) runs through, checked to run it so."""
    chosen = tta_engine if augment else engine
    assert chosen.settings(augment=augment).augment == augment
    return chosen


def test_weights_are_stripped_calibrated_and_describe_the_glove_classes(engine: DetectionEngine) -> None:
    assert engine.weights.stat().st_size < 15 * 2**20
    assert engine.model.ckpt.get("optimizer") is None  # stripped: for inference and fine-tuning
    assert engine.task == "detect" and engine.names == {0: "gloved_hand", 1: "bare_hand"}
    has_bra = any(isinstance(m, BiLevelRoutingAttention) for m in engine.model.model.modules())
    assert has_bra == ("bra" in engine.weights.name)  # the baseline is plain YOLO11n
    d = engine.defaults
    assert d.calibrated and d.imgsz in (320, 416, 480, 512, 640) and 0 < d.conf < 1  # python -m app calibrate


@pytest.mark.parametrize("value", [0, 127, 255])
@pytest.mark.parametrize("augment", [False, True], ids=["frames", "photos"])
def test_blank_frames_have_next_to_no_detections(
    engine: DetectionEngine, tta_engine: DetectionEngine, value: int, augment: bool
) -> None:
    engine = running(engine, tta_engine, augment)
    settings = engine.settings(augment=augment)
    detections = engine.predict(np.full((480, 640, 3), value, np.uint8), settings, annotate=False).detections
    assert len(detections) <= BLANK_AT_MOST.get((engine.weights.name, value), 0), detections


@pytest.mark.parametrize("dataset", ["gloves-scenes", "gloves"])
@pytest.mark.parametrize("class_name", ["gloved_hand", "bare_hand"])
@pytest.mark.parametrize("augment", [False, True], ids=["frames", "photos"])  # photos run with TTA by default
def test_labelled_hands_are_found(
    engine: DetectionEngine,
    tta_engine: DetectionEngine,
    shared_data: Path,
    dataset: str,
    class_name: str,
    augment: bool,
) -> None:
    engine = running(engine, tta_engine, augment)
    photos = single_hand_photos(shared_data / dataset / "valid", CLASSES[class_name])
    assert len(photos) == PHOTOS_PER_CLASS
    found = hands_found(engine, photos, class_name, engine.defaults.imgsz, engine.defaults.conf, augment)
    assert found >= FOUND_AT_LEAST[engine.weights.name, dataset, class_name], found


def test_desk_clip_bare_hand_and_false_gloves(engine: DetectionEngine, shared_data: Path) -> None:
    """One bare hand over a desk, from a camera nobody trained on: found in how many of 12 frames, and how many
    false gloves (there is no glove in the clip); then over every frame."""
    d = engine.defaults
    bare, gloved, _, _ = desk_counts(engine, desk_frames(DESK_CLIP), d.imgsz, d.conf)
    least, most = DESK[engine.weights.name]
    assert bare >= least and gloved <= most, (bare, gloved)
    bare, _, gloved_frames, _ = desk_counts(engine, desk_frames(DESK_CLIP, count=None), d.imgsz, d.conf)
    least, most = DESK_EVERY_FRAME[engine.weights.name]
    assert bare >= least and gloved_frames <= most, (bare, gloved_frames)


def test_every_labelled_scene_hand_is_counted_once_and_large_ones_are_found(shared_data: Path) -> None:
    """All 297 labelled hands of `gloves-scenes/valid` by size (the card's table); measured at the defaults, found
    with the right class: 16 of 27 large gloves and 10 of 11 large bare hands (over 20 % of the image)."""
    engine = DetectionEngine(DEFAULT_WEIGHTS, runtime="torch")  # not INT8 on its square, as `auto` may choose
    counts = found_by_size(engine, shared_data / "gloves-scenes" / "valid", engine.defaults.imgsz, engine.defaults.conf)
    assert sum(n for n, _, _ in counts.values()) == 297
    assert [counts[size, "bare_hand"][0] for size in SIZES] == [28, 19, 6, 11]  # the bare hands, by size
    assert all(n >= any_class >= found for n, found, any_class in counts.values())
    assert counts[">20%", "gloved_hand"][1] >= 14 and counts[">20%", "bare_hand"][1] >= 9


def test_default_weights_are_the_model_that_scores_best_on_real_scenes() -> None:
    assert DEFAULT_WEIGHTS == ROOT / "models" / "weights" / "gloves-n.pt" and DEFAULT_WEIGHTS.is_file()  # card


def test_int8_export_of_the_default_model_is_checked_and_finds_hands_as_the_checkpoint(shared_data: Path) -> None:
    """The INT8 OpenVINO export shipped beside the default model (`python -m app export --int8`, models/README.md):
    made from this very checkpoint, within 0.01 mAP50 of it on both valid sets (recorded), at its defaults, and
    finding real hands as the checkpoint's thresholds ask."""
    folder = openvino_export_path(DEFAULT_WEIGHTS, "int8")
    checkpoint = DetectionEngine(DEFAULT_WEIGHTS)
    assert checked_int8(DEFAULT_WEIGHTS, file_sha256(DEFAULT_WEIGHTS), checkpoint.defaults.imgsz) == folder
    check = read_openvino_info(folder).check
    assert set(check.data) == {"datasets/gloves-scenes.yaml", "datasets/gloves.yaml"} and check.map50_loss <= 0.01
    engine = DetectionEngine(folder)
    d = checkpoint.defaults  # the checkpoint's settings, and what was measured named as the checkpoint's
    assert engine.defaults == replace(d, measured=replace(d.measured, exported_from=DEFAULT_WEIGHTS.name))
    bare, gloved, _, _ = desk_counts(engine, desk_frames(DESK_CLIP), d.imgsz, d.conf)
    least, most = DESK[folder.name]
    assert bare >= least and gloved <= most, (bare, gloved)
    for class_name in CLASSES:
        photos = single_hand_photos(shared_data / "gloves-scenes" / "valid", CLASSES[class_name])
        found = hands_found(engine, photos, class_name, d.imgsz, d.conf)
        assert found >= FOUND_AT_LEAST[DEFAULT_WEIGHTS.name, "gloves-scenes", class_name], (class_name, found)
