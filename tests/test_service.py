"""The console's service layer without a browser: models, uploads, no-weights help, live runs, history."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.errors import ServiceError
from app.service import NO_WEIGHTS_HELP, DetectionService, RunOptions


@pytest.fixture
def service(tmp_path: Path) -> DetectionService:
    (tmp_path / "weights").mkdir()
    return DetectionService(exports_dir=tmp_path / "exports", weights_dir=tmp_path / "weights")


def test_without_weights_the_console_says_how_to_get_them(service: DetectionService) -> None:
    assert service.available_models() == [] and service.default_model() is None
    with pytest.raises(ServiceError, match="No trained weights") as e:
        service.live(RunOptions(weights=None))
    assert str(e.value) == NO_WEIGHTS_HELP and "train.py" in NO_WEIGHTS_HELP


def test_uploaded_checkpoint_is_checked_kept_and_listed(service: DetectionService, trained_models: dict) -> None:
    info = service.add_upload(trained_models["segment"][0])
    assert info.task == "segment" and info.path.parent == service.uploads_dir
    assert info.path.name == f"segment-{info.sha256[:8]}.pt"
    assert service.available_models() == [info.path] and service.default_model() == info.path


def test_bad_uploads_are_refused(service: DetectionService, tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(b"x")
    with pytest.raises(ServiceError, match=r"upload a \.pt checkpoint"):
        service.add_upload(tmp_path / "model.zip")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ServiceError, match="not an ONNX model"):
        service.add_upload(tmp_path / "model.onnx")
    (tmp_path / "best.pt").write_bytes(b"garbage")
    with pytest.raises(ServiceError, match="not a YOLO checkpoint"):
        service.add_upload(tmp_path / "best.pt")
    assert service.available_models() == []


def test_live_session_records_every_pushed_frame(service: DetectionService, trained_models: dict) -> None:
    shutil.copy(trained_models["detect"][0], service.weights_dir / "d.pt")
    options = RunOptions(weights=str(service.weights_dir / "d.pt"), conf=0.002, imgsz=96, policy=None)
    live = service.live(options)
    frames = [np.full((96, 96, 3), v, np.uint8) for v in (30, 90, 150)]
    updates = [live.process(f) for f in frames]
    assert [u.frame.frame_index for u in updates] == [0, 1, 2]
    summary = live.finish()
    assert live.finish() is summary  # a second Stop is harmless
    with pytest.raises(ServiceError, match="live run has ended"):
        live.process(frames[0])
    record = service.store.run(summary.run_id)
    assert (record.kind, record.frames, record.status) == ("stream", 3, "stopped")
    assert service.history("2000-01-01", None)[0].id == summary.run_id
    assert service.workbook(run_id=summary.run_id).is_file()


def test_runs_keep_their_own_settings_on_a_shared_model(service: DetectionService, trained_models: dict) -> None:
    shutil.copy(trained_models["detect"][0], service.weights_dir / "d.pt")
    weights = str(service.weights_dir / "d.pt")
    strict = service.live(RunOptions(weights=weights, conf=0.9, imgsz=96))
    loose = service.live(RunOptions(weights=weights, conf=0.002, imgsz=96))
    image = np.full((96, 96, 3), 100, np.uint8)
    assert loose.process(image).frame.detections and not strict.process(image).frame.detections
    assert service.store.run(strict.finish().run_id).conf == 0.9
    loose.finish()
    with pytest.raises(ServiceError, match="unknown class 'mitten'"):
        service.live(RunOptions(weights=weights, classes=["mitten"]))
    with pytest.raises(ServiceError, match="classes the model does not have"):
        service.live(RunOptions(weights=weights, policy="gloves"))
