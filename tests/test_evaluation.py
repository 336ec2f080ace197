"""Evaluation scores and the confusion matrix counted at the console's confidence rather than the validator's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils.metrics import ConfusionMatrix

from app.engine import DetectionEngine
from app.evaluation import (
    MATRIX_CONF,
    Evaluation,
    _map50,
    _MatrixAtConf,
    _Seen,
    _validator,
    evaluate,
    map50_difference,
)
from app.export import export_openvino
from app.runtime import DEFAULT_WEIGHTS

NAMES = {0: "gloved_hand", 1: "bare_hand"}


def test_matrix_counts_only_boxes_at_its_own_confidence() -> None:
    detections = {  # a confident glove on the labelled glove, a weak bare hand on the background
        "bboxes": torch.tensor([[10.0, 10, 50, 50], [200, 200, 240, 240]]),
        "conf": torch.tensor([0.9, 0.3]),
        "cls": torch.tensor([0.0, 1.0]),
    }
    batch = {"bboxes": torch.tensor([[12.0, 11, 50, 52], [100, 10, 140, 50]]), "cls": torch.tensor([0.0, 1.0])}
    ours, validators = _MatrixAtConf(0.5, NAMES), ConfusionMatrix(names=NAMES)
    for matrix in (ours, validators):
        matrix.process_batch(detections, batch, conf=0.001)  # what the validator passes while measuring mAP
    # [predicted][true], background last: the glove found, the bare hand missed; the weak box counts only at 0.001
    assert ours.matrix.astype(int).tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert validators.matrix.astype(int).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


@pytest.mark.slow
def test_scores_do_not_depend_on_the_matrix_confidence(trained_models: dict, tmp_path: Path) -> None:
    weights, data = trained_models["segment"]  # the segment validator gets the same matrix as the detect one
    loose = evaluate(weights, data, imgsz=96, device="cpu", plots_dir=tmp_path / "loose", matrix_conf=0.001)
    strict = evaluate(weights, data, imgsz=96, device="cpu", plots_dir=tmp_path / "strict", matrix_conf=1.0)
    assert MATRIX_CONF == 0.25 and (loose.matrix_conf, strict.matrix_conf) == (0.001, 1.0)
    assert (strict.map50, strict.map50_95) == pytest.approx((loose.map50, loose.map50_95))
    nc = len(strict.confusion_matrix) - 1
    instances = sum(c.instances for c in strict.classes)
    # The one-epoch model's boxes are all weak: many at 0.001, none at 1, where every labelled object is a miss.
    assert sum(row[nc] for row in loose.confusion_matrix[:nc]) > 0
    assert all(v == 0 for row in strict.confusion_matrix[:nc] for v in row)
    assert sum(strict.confusion_matrix[nc][:nc]) == instances
    assert (
        strict.matrix_summary() == f"at confidence 1.0: 0 of {instances} labelled objects found with the right "
        "class, 0 with the wrong one, 0 boxes on the background"
    )
    assert (Path(strict.plots_dir) / "confusion_matrix.png").is_file()


@pytest.mark.slow
def test_a_checkpoint_scored_square_scores_as_its_static_export(shared_data: Path, tmp_path: Path) -> None:
    """`python -m app export` scores an INT8 / FP16 export beside its checkpoint: both must see the same square
    canvas. (Ultralytics' own validator pads a checkpoint's 640x640 photos to 672x672, which alone moved mAP50-95 on
    `gloves/` valid from 0.537 to 0.640 and was read as a quantisation loss.)"""
    valid = shared_data / "gloves" / "valid"  # a third of its photos: a canvas difference shows in any of them
    for image in sorted((valid / "images").glob("*.jpg"))[:48]:
        for kind, name in (("images", image.name), ("labels", f"{image.stem}.txt")):
            (tmp_path / "valid" / kind).mkdir(parents=True, exist_ok=True)
            (tmp_path / "valid" / kind / name).symlink_to(valid / kind / name)
    data = tmp_path / "gloves-48.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: valid/images\nval: valid/images\nnames: [gloved_hand, bare_hand]\n")
    folder = export_openvino(DEFAULT_WEIGHTS, imgsz=640, out=tmp_path / "gloves-n_openvino_model")
    square = evaluate(DEFAULT_WEIGHTS, data, imgsz=640, canvas="square", plots_dir=tmp_path / "square")
    export = evaluate(folder, data, imgsz=640, plots_dir=tmp_path / "export")
    assert (square.canvas, export.canvas) == ("square", "fixed")  # a static export runs on its input whatever is asked
    assert (export.map50, export.map50_95) == pytest.approx((square.map50, square.map50_95), abs=0.003)


@pytest.mark.parametrize("imgsz", [640, 320])
def test_each_image_is_scored_on_the_pixels_the_engine_runs(tmp_path: Path, imgsz: int) -> None:
    """The default `frame` canvas letterboxes each image exactly as the engine's predictor letterboxes a frame of its
    shape (no half-stride border, no canvas shared with other images, the predictor's rounding), so scores and the
    calibrated confidence are those of what an operator runs."""
    shapes = [(640, 640), (480, 640), (657, 1280), (641, 1280), (300, 500), (1080, 1920)]  # the sets', odd, a camera's
    folder = tmp_path / "images"
    folder.mkdir()
    noise = np.random.default_rng(0)
    for h, w in shapes:  # noise: any difference in scaling shows in the pixels
        cv2.imwrite(str(folder / f"{h}x{w}.png"), noise.integers(0, 256, (h, w, 3), dtype=np.uint8))
    engine = DetectionEngine(DEFAULT_WEIGHTS)
    seen = _Seen("frame")
    validator = _validator(DetectionValidator, MATRIX_CONF, seen)(args={"rect": True, "imgsz": imgsz, "task": "detect"})
    validator.stride, validator.data = int(engine.model.model.stride.max()), {"names": engine.names, "channels": 3}
    dataset = validator.build_dataset(str(folder), batch=1)
    assert seen.canvas == "frame"
    model = engine.model  # its predictor, set up by a first prediction, letterboxes as every runtime's canvas does
    model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=imgsz, verbose=False)
    for i in range(len(shapes)):
        frame = cv2.imread(dataset.im_files[i])
        ours = dataset[i]["img"].numpy().transpose(1, 2, 0)[..., ::-1]  # CHW RGB -> HWC BGR
        predictors = model.predictor.pre_transform([frame])[0]
        assert ours.shape[:2] == engine._canvas(frame, imgsz), dataset.im_files[i]
        assert np.array_equal(ours, predictors), dataset.im_files[i]


def _scored(hits: list[bool]) -> Evaluation:
    """An evaluation of images with one labelled glove each and one box on it: right (a hit) or wrong."""
    per_image = {
        f"{i:03d}.jpg": (np.full((1, 10), hit), np.array([0.9]), np.array([0.0]), np.array([0.0]))
        for i, hit in enumerate(hits)
    }
    evaluation = Evaluation("w.pt", "d.yaml", 640, "val", 0.7, False, False, "frame", len(hits), 0, 0, 0, 0, 0, 0, 0,
                            [], "", 0.25, [], per_image=per_image)  # fmt: skip
    return replace(evaluation, map50=_map50(list(per_image.values())))


def test_bootstrap_interval_surrounds_the_score_and_narrows_with_more_images() -> None:
    few, many = _scored([True, False] * 10), _scored([True, False] * 200)
    for e in (few.with_interval(500), many.with_interval(500)):
        lo, hi = e.map50_interval
        assert 0 <= lo < e.map50 < hi <= 1
    width = [e.with_interval(500).map50_interval for e in (few, many)]
    assert width[1][1] - width[1][0] < (width[0][1] - width[0][0]) / 2  # 20x the images: under half as wide
    assert few.with_interval(500) == few.with_interval(500)  # seeded: the same interval every run
    assert "per_image" not in few.to_dict()  # not written to the JSON


def test_paired_difference_tells_models_apart_only_when_the_images_do() -> None:
    good, weak = _scored([True] * 15 + [False] * 5), _scored([True] * 5 + [False] * 15)
    diff, lo, hi = map50_difference(weak, good, 500)
    assert diff == pytest.approx(good.map50 - weak.map50) and 0 < lo < diff < hi
    assert map50_difference(good, good, 500) == (0.0, 0.0, 0.0)  # the same boxes on the same images
    close = _scored([True] * 14 + [False] * 6)  # one image apart out of 20
    _, lo, hi = map50_difference(close, good, 500)
    assert lo <= 0 <= hi
    with pytest.raises(ValueError, match="share no images"):
        map50_difference(good, replace(good, per_image={"other.jpg": good.per_image["000.jpg"]}), 10)
