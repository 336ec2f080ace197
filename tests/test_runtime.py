"""The engine's runtimes: `auto` runs OpenVINO FP32 on the CPU with PyTorch's detections (or the checked INT8 export
beside the weights, on CPUs with VNNI / AMX), the exports it makes are
cached by checkpoint and input canvas (reused, never stale, rebuilt when damaged), forced runtimes, the checked INT8
export, and what a run records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from app import export
from app.calibration import store_defaults
from app.cli import main as cli_main
from app.engine import DetectionEngine, ModelDefaults
from app.errors import ModelError, ModelExportError
from app.export import AccuracyCheck, CpuPrecisions, cached_export, checked_int8, openvino_export_path, record_check
from app.records import RecordStore
from app.runtime import DEFAULT_WEIGHTS
from app.service import DetectionService, RunOptions
from app.views import stamp

SMALL = 160  # the cache tests' size: the shipped model exports in a few seconds


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped default model, so the INT8 test can put an export beside it."""
    path = tmp_path_factory.mktemp("weights") / DEFAULT_WEIGHTS.name
    shutil.copyfile(DEFAULT_WEIGHTS, path)
    return path


@pytest.fixture(scope="module")
def small(weights: Path) -> DetectionEngine:
    """The default runtime at SMALL, its square export made (or found in the session's cache)."""
    engine = DetectionEngine(weights)
    engine.backend(engine.settings(imgsz=SMALL, device="cpu"))
    return engine


def entry(sha256: str, canvas: tuple[int, int], fmt: str = "openvino") -> Path:
    return export.CACHE_ROOT / f"{fmt}-cache" / f"{sha256}-{canvas[0]}x{canvas[1]}"


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_openvino_f32_gives_pytorchs_detections_on_real_scenes(shared_data: Path) -> None:
    """The shipped default at its default size, on real photos of the scenes' val split, square and wide (each shape
    its own export): the same classes, boxes within 1 px, confidences within 1e-3 (only a detection that close to
    the threshold may be on one side only). `auto` runs this FP32 export on CPUs without VNNI / AMX, and the checked
    INT8 export beside the weights on CPUs with them (scored by its own test in test_shipped_weights)."""
    auto, torch_ = DetectionEngine(DEFAULT_WEIGHTS), DetectionEngine(DEFAULT_WEIGHTS, runtime="torch")
    openvino = DetectionEngine(DEFAULT_WEIGHTS, runtime="openvino")
    settings = auto.settings(device="cpu")
    chosen = "int8" if export.openvino_cpu().fast_int8 else "f32"
    assert (auto.backend(settings).runtime, auto.backend(settings).precision) == ("openvino", chosen)
    assert (openvino.backend(settings).runtime, openvino.backend(settings).precision) == ("openvino", "f32")
    assert torch_.backend(settings).runtime == "torch"
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for path in sorted((shared_data / "gloves-scenes" / "valid" / "images").glob("*.jpg")):
        image = cv2.imread(str(path))
        by_shape.setdefault(image.shape, []).append(image)
    square, wide = by_shape[(640, 640, 3)], by_shape[(657, 1280, 3)]
    images = square[:3] + wide[:3]
    matched = 0
    for image in images:
        expected = torch_.predict(image, settings, annotate=False).detections
        got = openvino.predict(image, settings, annotate=False).detections
        for d in expected:
            near = [g for g in got if g.class_id == d.class_id and np.abs(np.subtract(g.xyxy, d.xyxy)).max() <= 1]
            if near:
                assert abs(near[0].confidence - d.confidence) <= 1e-3
                matched += 1
            else:
                assert d.confidence - settings.conf <= 1e-3
        assert len(got) - len(expected) <= sum(g.confidence - settings.conf <= 1e-3 for g in got)
    assert matched >= 3  # the comparison saw real detections


@pytest.mark.slow  # keeps the fast subset under two minutes
def test_runs_record_runtime_and_precision(small: DetectionEngine, tmp_path: Path) -> None:
    image = tmp_path / "frame.jpg"
    cv2.imwrite(str(image), np.full((SMALL, SMALL, 3), 90, np.uint8))  # square: the canvas exported already
    service = DetectionService(exports_dir=tmp_path / "exports", db=tmp_path / "records.sqlite")
    options = RunOptions(weights=small.weights, imgsz=SMALL, device="cpu", augment_photos=False)  # TTA runs PyTorch
    summary = service.detect_file(image, options).run()
    assert (summary.record.runtime, summary.record.precision) == ("openvino", "f32")
    stored = service.store.run(summary.run_id)
    assert stored is not None and (stored.runtime, stored.precision) == ("openvino", "f32")
    assert "runtime OpenVINO f32" in summary.text() and "runtime **OpenVINO f32**" in stamp(stored)
    assert "runs in OpenVINO f32 (runtime auto)" in service.model_info(small.weights).describe()

    out = tmp_path / "cli"
    assert cli_main(["detect", "--weights", str(small.weights), "--source", str(image), "--imgsz", str(SMALL),
                     "--runtime", "torch", "--save-dir", str(out)]) == 0  # fmt: skip
    (run,) = RecordStore(out / "records.sqlite").runs()
    assert (run.runtime, run.precision) == ("torch", "f32")


@pytest.mark.slow  # seconds of real work: in the full suite, keeping the fast loop under 2 minutes
def test_the_cache_is_reused_and_a_changed_checkpoint_gets_its_own(
    small: DetectionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = entry(small.sha256, (SMALL, SMALL))
    xml = next(made.rglob("*.xml"))
    built = xml.stat().st_mtime_ns

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    with monkeypatch.context() as patch:
        patch.setattr(export, "export_openvino", no_export)
        again = DetectionEngine(small.weights)
        assert again.backend(again.settings(imgsz=SMALL, device="cpu")).runtime == "openvino"
    assert xml.stat().st_mtime_ns == built

    changed = tmp_path / small.weights.name
    shutil.copyfile(small.weights, changed)
    store_defaults(changed, ModelDefaults(imgsz=SMALL, conf=0.3, iou=0.6, calibrated=True))
    other = DetectionEngine(changed)
    assert other.sha256 != small.sha256
    assert other.backend(other.settings(device="cpu")).runtime == "openvino"
    assert entry(other.sha256, (SMALL, SMALL)).is_dir() and made.is_dir()


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_a_damaged_cache_entry_is_rebuilt(small: DetectionEngine) -> None:
    made = entry(small.sha256, (SMALL, SMALL))
    weights_bin = next(made.rglob("*.bin"))
    size = weights_bin.stat().st_size
    with open(weights_bin, "r+b") as f:  # half-written, as by a full disk or a copy cut short
        f.truncate(size // 2)
    engine = DetectionEngine(small.weights)
    assert engine.backend(engine.settings(imgsz=SMALL, device="cpu")).runtime == "openvino"
    assert weights_bin.stat().st_size == size
    image = np.full((SMALL, SMALL, 3), 90, np.uint8)
    assert engine.predict(image, engine.settings(imgsz=SMALL, device="cpu")).annotated.shape == image.shape


def test_concurrent_builders_keep_the_first_sound_entry(
    small: DetectionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another process renamed its entry into place first, `cached_export` keeps that one and drops its own;
    a damaged entry in the way is replaced."""
    made = entry(small.sha256, (SMALL, SMALL))
    mine = Path(shutil.copytree(made, tmp_path / "mine"))
    marker = json.loads((mine / "export.json").read_text())
    (mine / "export.json").write_text(json.dumps({**marker, "parity": -1.0}))  # tells the two apart
    export._publish(mine, made, "openvino")
    assert json.loads((made / "export.json").read_text())["parity"] != -1.0 and mine.exists()
    next(made.rglob("*.bin")).unlink()  # damaged: a file of the export is missing
    export._publish(mine, made, "openvino")
    assert json.loads((made / "export.json").read_text())["parity"] == -1.0 and not mine.exists()
    monkeypatch.setattr(export, "export_openvino", None)  # sound: used as it is, nothing exported
    assert cached_export(small.weights, small.sha256, "openvino", (SMALL, SMALL)) == made / "model_openvino_model"


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_forced_runtimes(small: DetectionEngine) -> None:
    settings = small.settings(imgsz=SMALL, device="cpu")
    onnx = DetectionEngine(small.weights, runtime="onnx")  # its export is checked against PyTorch when made
    assert (onnx.backend(settings).runtime, onnx.backend(settings).precision) == ("onnxruntime", "f32")
    image = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    assert onnx.predict(image, settings).annotated.shape == image.shape
    assert DetectionEngine(small.weights, runtime="torch").backend(settings).runtime == "torch"
    onnx_file = cached_export(small.weights, small.sha256, "onnx", (SMALL, SMALL))
    with pytest.raises(ModelError, match="runs in ONNX Runtime only"):
        DetectionEngine(onnx_file, runtime="openvino")
    with pytest.raises(ModelError, match="runtime must be one of auto, torch, onnx, openvino"):
        DetectionEngine(small.weights, runtime="tensorrt")
    # On a GPU, auto keeps PyTorch (device 0 is only asked for here: nothing runs on it).
    assert small.backend(small.settings(imgsz=SMALL, device="0")).runtime == "torch"


def test_auto_falls_back_to_pytorch_and_says_so(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise ModelExportError("gloves-n.pt: OpenVINO fp32 export failed: RuntimeError: no")

    monkeypatch.setattr("app.engine.cached_export", failing)
    engine = DetectionEngine(weights)
    backend = engine.backend(engine.settings(imgsz=SMALL, device="cpu"))
    assert backend.runtime == "torch" and "OpenVINO could not run this model, so PyTorch did" in backend.note
    with pytest.raises(ModelExportError, match="export failed"):
        forced = DetectionEngine(weights, runtime="openvino")
        forced.backend(forced.settings(imgsz=SMALL, device="cpu"))


def test_the_int8_export_beside_the_weights_only_when_checked(
    small: DetectionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in INT8 export (the FP32 graph, labelled INT8 in its metadata) beside the weights: used by `auto` only
    when its check says it was made from these weights, at this size, within 0.01 mAP50, and the CPU has INT8
    instructions."""
    folder = openvino_export_path(small.weights, "int8")
    shutil.copytree(entry(small.sha256, (SMALL, SMALL)) / "model_openvino_model", folder, dirs_exist_ok=True)
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    (folder / "metadata.yaml").write_text(yaml.safe_dump({**meta, "args": {**meta.get("args", {}), "quantize": 8}}))
    assert checked_int8(small.weights, small.sha256, SMALL) is None  # no check recorded
    for sha, loss, size in [("0" * 64, 0.005, SMALL), (small.sha256, 0.02, SMALL), (small.sha256, 0.005, 320)]:
        record_check(folder, AccuracyCheck(sha, loss, ("datasets/gloves.yaml",)))
        assert checked_int8(small.weights, small.sha256, size) is None
    record_check(folder, AccuracyCheck(small.sha256, 0.009, ("datasets/gloves.yaml", "datasets/gloves-scenes.yaml")))
    assert checked_int8(small.weights, small.sha256, SMALL) == folder

    settings = small.settings(imgsz=SMALL, device="cpu")
    vnni = CpuPrecisions("test CPU", "f32", ("FP32", "INT8"), ("avx512_vnni",))
    without = CpuPrecisions("test CPU", "f32", ("FP32", "INT8"), ())
    monkeypatch.setattr("app.engine.openvino_cpu", lambda: without)
    assert DetectionEngine(small.weights).backend(settings).precision == "f32"  # INT8 would be no faster here
    monkeypatch.setattr("app.engine.openvino_cpu", lambda: vnni)
    assert DetectionEngine(small.weights).backend(settings).precision == "int8"
    shutil.rmtree(folder)


def test_old_entries_and_stale_hidden_folders_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "openvino-cache"
    names = [f"{i:064x}-160x160" for i in range(4)]
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        (root / name / "export.json").write_text("{}")
        os.utime(root / name / "export.json", (1000 + i, 1000 + i))  # last used: the later, the more recently
    (root / ".building-killed").mkdir()
    os.utime(root / ".building-killed", (0, 0))
    (root / ".building-now").mkdir()  # another process is building it
    monkeypatch.setattr(export, "CACHE_ENTRIES", 2)
    export._evict(root)
    assert sorted(p.name for p in root.iterdir()) == [".building-now", *names[2:]]
