"""Evaluation scores and the confusion matrix counted at the console's confidence rather than the validator's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils.metrics import ConfusionMatrix

from app.engine import DetectionEngine
from app.evaluation import MATRIX_CONF, _MatrixAtConf, _validator, evaluate
from app.export import export_openvino
from app.runtime import DEFAULT_WEIGHTS, ROOT

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
    data = ROOT / "datasets" / "gloves.yaml"
    folder = export_openvino(DEFAULT_WEIGHTS, imgsz=640, out=tmp_path / "gloves-n_openvino_model")
    square = evaluate(DEFAULT_WEIGHTS, data, imgsz=640, canvas="square", plots_dir=tmp_path / "square")
    export = evaluate(folder, data, imgsz=640, plots_dir=tmp_path / "export")
    assert (square.canvas, export.canvas) == ("square", "square")  # a static export runs square whatever is asked
    assert (export.map50, export.map50_95) == pytest.approx((square.map50, square.map50_95), abs=0.003)


@pytest.mark.parametrize("imgsz", [640, 320])
def test_each_image_is_scored_on_the_canvas_the_engine_runs_it_on(tmp_path: Path, imgsz: int) -> None:
    """The default `frame` canvas letterboxes each image exactly as the engine letterboxes a frame of its shape (no
    half-stride border, no canvas shared with other images), so scores and the calibrated confidence are those of
    what an operator runs."""
    shapes = [(640, 640), (480, 640), (657, 1280), (300, 500), (1080, 1920)]  # (h, w): the sets' shapes, a camera's
    folder = tmp_path / "images"
    folder.mkdir()
    for h, w in shapes:
        cv2.imwrite(str(folder / f"{h}x{w}.jpg"), np.full((h, w, 3), 90, np.uint8))
    engine = DetectionEngine(DEFAULT_WEIGHTS)
    validator = _validator(DetectionValidator, MATRIX_CONF)(args={"rect": True, "imgsz": imgsz, "task": "detect"})
    validator.stride, validator.data = int(engine.model.model.stride.max()), {"names": engine.names, "channels": 3}
    dataset = validator.build_dataset(str(folder), batch=1)
    assert validator.canvas == "frame"
    for i in range(len(shapes)):
        image = dataset[i]["img"]  # the letterboxed CHW tensor the model sees
        frame = cv2.imread(dataset.im_files[i])
        assert tuple(image.shape[1:]) == engine._canvas(frame, imgsz), dataset.im_files[i]
