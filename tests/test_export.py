"""ONNX export of the BRA models (static and dynamic) with parity against PyTorch, and ONNX models in the engine,
the CLI and the console's service."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from app.cli import main as cli_main
from app.engine import DetectionEngine
from app.errors import ModelError
from app.export import export_onnx, onnx_parity, read_onnx_info
from app.service import DetectionService

pytestmark = pytest.mark.slow  # ONNX exports of both tasks, static and dynamic

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def exports(trained_models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    """(task, dynamic) -> .onnx exported from the session's one-epoch BRA models at 96."""
    out = tmp_path_factory.mktemp("onnx")
    return {
        (task, dynamic): export_onnx(trained_models[task][0], 96, dynamic, out / f"{task}-{dynamic}.onnx")
        for task in ("detect", "segment")
        for dynamic in (False, True)
    }


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_static_export_matches_pytorch(task: str, exports: dict, trained_models: dict) -> None:
    onnx_file = exports[(task, False)]
    info = read_onnx_info(onnx_file)
    assert info.task == task and info.input_hw == (96, 96)
    assert onnx_parity(trained_models[task][0], onnx_file, [(1, 3, 96, 96)]) <= TOLERANCE


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_dynamic_export_matches_pytorch_at_other_sizes_and_batches(task: str, exports: dict, trained_models: dict):
    onnx_file = exports[(task, True)]
    assert read_onnx_info(onnx_file).input_hw is None
    # 160x128 and 224x64 pad the BRA windows differently from the 96x96 trace
    shapes = [(1, 3, 96, 96), (2, 3, 160, 128), (1, 3, 64, 224)]
    assert onnx_parity(trained_models[task][0], onnx_file, shapes) <= TOLERANCE


def test_parity_with_a_loaded_model_leaves_it_predicting(exports: dict, trained_models: dict) -> None:
    weights, data = trained_models["detect"]
    engine = DetectionEngine(weights)
    settings = engine.settings(conf=0.002, imgsz=96)
    image = cv2.imread(str(next((data.parent / "valid" / "images").glob("*.jpg"))))
    before = engine.predict(image, settings).detections
    assert onnx_parity(engine.model, exports[("detect", False)], [(1, 3, 96, 96)]) <= TOLERANCE
    assert engine.predict(image, settings).detections == before  # not switched to export mode


@pytest.mark.parametrize("dynamic", [False, True])
def test_engine_runs_onnx_like_the_checkpoint(dynamic: bool, exports: dict, trained_models: dict) -> None:
    weights, data = trained_models["detect"]
    image = cv2.imread(str(next((data.parent / "valid" / "images").glob("*.jpg"))))
    torch_engine = DetectionEngine(weights)
    onnx_engine = DetectionEngine(exports[("detect", dynamic)])
    assert onnx_engine.task == "detect" and onnx_engine.names == torch_engine.names
    expected = torch_engine.predict(image, torch_engine.settings(conf=0.002, imgsz=96))
    got = onnx_engine.predict(image, onnx_engine.settings(conf=0.002, imgsz=96))
    assert len(expected.detections) > 0
    assert [d.class_id for d in got.detections] == [d.class_id for d in expected.detections]
    boxes = np.array([d.xyxy for d in got.detections]) - np.array([d.xyxy for d in expected.detections])
    assert np.abs(boxes).max() < 0.5  # pixels
    assert got.annotated.shape == image.shape


def test_segment_onnx_gives_masks(exports: dict, trained_models: dict) -> None:
    _, data = trained_models["segment"]
    image = cv2.imread(str(next((data.parent / "valid" / "images").glob("*.jpg"))))
    engine = DetectionEngine(exports[("segment", True)])
    result = engine.predict(image, engine.settings(conf=1e-9, imgsz=96))
    assert result.detections and all(d.mask_area is not None for d in result.detections)


def test_cli_export_and_detect_with_onnx(trained_models: dict, tmp_path: Path, capsys) -> None:
    weights, data = trained_models["detect"]
    out = tmp_path / "model.onnx"
    argv = ["export", "--weights", str(weights), "--imgsz", "96", "--dynamic", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert f"exported {out} (dynamic)" in printed and float(printed.rsplit(": ", 1)[1]) <= TOLERANCE
    image = next((data.parent / "valid" / "images").glob("*.jpg"))
    argv = ["detect", "--weights", str(out), "--source", str(image), "--imgsz", "96", "--conf", "0.002",
            "--save-dir", str(tmp_path / "exports")]  # fmt: skip
    assert cli_main(argv) == 0


def test_console_lists_and_accepts_onnx(exports: dict, tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    shutil.copy(exports[("detect", False)], tmp_path / "weights" / "shipped.onnx")
    service = DetectionService(exports_dir=tmp_path / "exports", weights_dir=tmp_path / "weights")
    assert service.available_models() == [tmp_path / "weights" / "shipped.onnx"]
    info = service.add_upload(exports[("segment", True)])
    assert info.task == "segment" and info.path.suffix == ".onnx" and info.path.parent == service.uploads_dir


def test_onnx_files_that_are_not_yolo_exports_are_refused(tmp_path: Path) -> None:
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelError, match="not an ONNX model"):
        DetectionEngine(tmp_path / "garbage.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain", [x], [y])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match="without Ultralytics' task"):
        DetectionEngine(tmp_path / "plain.onnx")


def test_a_static_export_run_records_the_size_it_ran_at(exports: dict, trained_models: dict, tmp_path: Path) -> None:
    from app.service import DetectionService, RunOptions

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    service = DetectionService(exports_dir=tmp_path / "exports")
    run = service.detect_file(image, RunOptions(weights=exports[("detect", False)], imgsz=640))  # asks for 640
    summary = run.run()
    assert service.store.run(summary.run_id).imgsz == run.settings.imgsz == 96  # the export's fixed input size
