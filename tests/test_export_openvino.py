"""OpenVINO exports of the BRA models: FP32 parity with PyTorch at an explicit f32 precision, FP16 and INT8
exports, the folder checks that run before anything is compiled, and the CPU report."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import BANDSAW_NAMES, make_polygon_dataset
from ultralytics import YOLO

from app.errors import ModelExportError
from app.export import (
    ISA_FEATURES,
    MAX_BIN_BYTES,
    MAX_METADATA_BYTES,
    _calibration_yaml,
    compile_openvino,
    compiled_precision,
    export_onnx,
    export_openvino,
    openvino_cpu,
    openvino_parity,
    openvino_precision_callback,
    read_openvino_info,
)
from app.runtime import DEFAULT_WEIGHTS, ROOT

TOLERANCE = 1e-3  # as for ONNX: raw outputs, pixels and scores
IMGSZ = 96

pytestmark = pytest.mark.slow  # OpenVINO conversions of both tasks


def tiny_checkpoint(config: str, folder: Path) -> Path:
    """An untrained model from one of our YAMLs (`yolo11n-bra.yaml`: scale n) with the 6 bandsaw classes, saved
    as a checkpoint: parity needs no training."""
    spec = yaml.safe_load((ROOT / "models" / config.replace("yolo11n", "yolo11")).read_text())
    (folder / config).write_text(yaml.safe_dump({**spec, "nc": len(BANDSAW_NAMES)}))
    yolo = YOLO(str(folder / config))
    yolo.model.names = dict(enumerate(BANDSAW_NAMES))
    path = folder / f"{yolo.task}.pt"
    yolo.save(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """task -> an untrained BRA-YOLO11n checkpoint."""
    tmp = tmp_path_factory.mktemp("ov-weights")
    return {
        "detect": tiny_checkpoint("yolo11n-bra.yaml", tmp),
        "segment": tiny_checkpoint("yolo11n-seg-bra.yaml", tmp),
    }


@pytest.fixture(scope="module")
def fp32_exports(checkpoints: dict[str, Path]) -> dict[str, Path]:
    """task -> FP32 OpenVINO folder at 96, beside its checkpoint (the default place)."""
    return {task: export_openvino(pt, IMGSZ) for task, pt in checkpoints.items()}


@pytest.fixture
def export_copy(fp32_exports: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the detect export, for tests that spoil it."""
    return Path(shutil.copytree(fp32_exports["detect"], tmp_path / "copy_openvino_model"))


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_fp32_export_matches_pytorch_at_f32(task: str, checkpoints: dict, fp32_exports: dict) -> None:
    folder = fp32_exports[task]
    assert folder == checkpoints[task].parent / f"{task}_openvino_model"
    info = read_openvino_info(folder)
    assert info.task == task and info.names == dict(enumerate(BANDSAW_NAMES))
    assert info.input_hw == (IMGSZ, IMGSZ) and info.precision == "fp32"
    assert openvino_parity(checkpoints[task], folder) <= TOLERANCE
    compiled = compile_openvino(folder, "f32", threads=1)
    assert compiled_precision(compiled) == "f32" and compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_export_sends_no_telemetry(fp32_exports: dict) -> None:
    # Importing app made openvino_telemetry unimportable, so the converter fell back to its no-op stub.
    assert sys.modules["openvino_telemetry"] is None
    assert sys.modules["openvino.tools.ovc.convert_impl"].tm.__name__ == "openvino.tools.ovc.telemetry_stub"


def test_fp16_export_sits_beside_the_fp32_one(checkpoints: dict, fp32_exports: dict) -> None:
    folder = export_openvino(checkpoints["detect"], IMGSZ, "fp16")
    assert folder == checkpoints["detect"].parent / "detect_fp16_openvino_model"
    assert read_openvino_info(folder).precision == "fp16"
    assert read_openvino_info(fp32_exports["detect"]).precision == "fp32"  # not overwritten
    assert openvino_parity(checkpoints["detect"], folder) < 0.5  # FP16 weights: within half a pixel


def test_ultralytics_runs_the_export_at_the_pinned_precision(checkpoints: dict, fp32_exports: dict) -> None:
    folder = fp32_exports["detect"]
    image = np.random.default_rng(0).integers(0, 255, (IMGSZ, IMGSZ, 3), dtype=np.uint8)
    model = YOLO(str(folder), task="detect")
    model.add_callback("on_predict_start", openvino_precision_callback("f32"))
    got = model.predict(image, imgsz=IMGSZ, conf=0.0, verbose=False)[0]
    backend = model.predictor.model.backend
    assert backend.compile_model.keywords["config"]["INFERENCE_PRECISION_HINT"] == "f32"
    compiled = backend.ov_compiled_model
    assert compiled_precision(compiled) == "f32"
    model.predict(image, imgsz=IMGSZ, verbose=False)
    assert backend.ov_compiled_model is compiled  # compiled once, not per call
    expected = YOLO(str(checkpoints["detect"])).predict(image, imgsz=IMGSZ, conf=0.0, verbose=False)[0]
    assert len(got.boxes) == len(expected.boxes) > 0
    assert np.abs(got.boxes.data.numpy() - expected.boxes.data.numpy()).max() < 0.01


def test_openvino_cpu_report() -> None:
    cpu = openvino_cpu()
    assert cpu.default in ("f32", "bf16", "f16") and cpu.device
    assert "FP32" in cpu.capabilities and cpu.supports("f32")
    assert set(cpu.features) <= set(ISA_FEATURES)
    assert cpu.supports("bf16") == ("BF16" in cpu.capabilities)


def test_export_arguments_are_checked(checkpoints: dict, tmp_path: Path) -> None:
    with pytest.raises(ModelExportError, match="INT8 export needs a dataset YAML"):
        export_openvino(checkpoints["detect"], IMGSZ, "int8")
    with pytest.raises(ModelExportError, match="only INT8 takes one"):
        export_openvino(checkpoints["detect"], IMGSZ, "fp32", data=tmp_path / "data.yaml")
    with pytest.raises(ModelExportError, match="precision must be one of"):
        export_openvino(checkpoints["detect"], IMGSZ, "int4")  # type: ignore[arg-type]
    (tmp_path / "notes").mkdir()
    with pytest.raises(ModelExportError, match="is not an OpenVINO export: not replaced"):
        export_openvino(checkpoints["detect"], IMGSZ, out=tmp_path / "notes")


def test_missing_bin_is_refused(export_copy: Path) -> None:
    next(export_copy.glob("*.bin")).unlink()
    with pytest.raises(ModelExportError, match=r"\.bin is missing"):
        read_openvino_info(export_copy)
    with pytest.raises(ModelExportError, match=r"\.bin is missing"):
        compile_openvino(export_copy)  # checked before OpenVINO reads anything


def test_oversized_files_are_refused_unread(export_copy: Path) -> None:
    meta = export_copy / "metadata.yaml"
    original = meta.read_bytes()
    meta.write_bytes(original + b"#" * MAX_METADATA_BYTES)
    with pytest.raises(ModelExportError, match=r"metadata\.yaml: .* over the"):
        read_openvino_info(export_copy)
    meta.write_bytes(original)
    with open(next(export_copy.glob("*.bin")), "r+b") as f:
        f.truncate(MAX_BIN_BYTES + 1)  # sparse: takes no disk
    with pytest.raises(ModelExportError, match=r"\.bin: .* over the"):
        read_openvino_info(export_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "classify"}, "task must be detect or segment, got 'classify'"),
        ({"task": None}, "task must be detect or segment"),
        ({"names": ["gloved_hand", "bare_hand"]}, "names must map class ids to names"),
        ({"names": {"a": "gloved_hand"}}, "names must map class ids to names"),
        ({"names": {}}, "names must map class ids to names"),
        ({"imgsz": "big"}, r"imgsz must be \[height, width\]"),
        ({"args": {"quantize": 3}}, "unknown quantize '3'"),
    ],
)
def test_bad_metadata_is_refused(export_copy: Path, change: dict, message: str) -> None:
    meta = export_copy / "metadata.yaml"
    meta.write_text(yaml.safe_dump({**yaml.safe_load(meta.read_text()), **change}))
    with pytest.raises(ModelExportError, match=message):
        read_openvino_info(export_copy)


def test_metadata_is_plain_yaml(export_copy: Path) -> None:
    (export_copy / "metadata.yaml").write_text("task: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ModelExportError, match="not valid YAML"):
        read_openvino_info(export_copy)
    (export_copy / "metadata.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ModelExportError, match="expected a mapping, got list"):
        read_openvino_info(export_copy)


def test_graph_must_be_one_openvino_ir(export_copy: Path, tmp_path: Path) -> None:
    xml = next(export_copy.glob("*.xml"))
    original = xml.read_text()
    bomb = '<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">]><net><layers>&a;</layers></net>'
    for text, message in [
        (bomb, "an XML DTD"),
        ("<html><body/></html>", r"not an OpenVINO IR \(root <html>\)"),
        ("<net><layers>", "not well-formed XML"),
    ]:
        xml.write_text(text)
        with pytest.raises(ModelExportError, match=message):
            read_openvino_info(export_copy)
    xml.write_text(original)
    shutil.copy(xml, export_copy / "other.xml")
    with pytest.raises(ModelExportError, match=r"expected one \.xml model in the folder, found 2"):
        read_openvino_info(export_copy)
    with pytest.raises(ModelExportError, match="not an OpenVINO export folder"):
        read_openvino_info(tmp_path / "absent_openvino_model")


def test_calibration_takes_images_evenly_from_every_train_source(tmp_path: Path) -> None:
    first = make_polygon_dataset(tmp_path / "a", n_train=8, n_val=2)
    second = make_polygon_dataset(tmp_path / "b", n_train=4, n_val=2, seed=1)
    data = tmp_path / "both.yaml"
    data.write_text(
        yaml.safe_dump(
            {
                "path": str(tmp_path),
                "train": ["a/train/images", "b/train/images"],
                "val": "a/valid/images",
                "names": BANDSAW_NAMES,
            }
        )
    )
    resolved = yaml.safe_load(_calibration_yaml(data, 6, tmp_path).read_text())
    picked = Path(resolved["train"]).read_text().split()
    assert len(picked) == 6 and len(set(picked)) == 6
    assert sum(str(first.parent) in p for p in picked) == 4 and sum(str(second.parent) in p for p in picked) == 2
    assert resolved["val"] == str(first.parent / "valid" / "images")  # the val split stays for evaluation


@pytest.mark.slow
def test_int8_export_calibrates_and_runs(checkpoints: dict, tmp_path: Path) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=8, n_val=2, size=IMGSZ)
    folder = export_openvino(checkpoints["detect"], IMGSZ, "int8", data=data, calibration_images=4)
    assert folder == checkpoints["detect"].parent / "detect_int8_openvino_model"
    assert read_openvino_info(folder).precision == "int8"
    assert 'type="FakeQuantize"' in next(folder.glob("*.xml")).read_text()  # NNCF quantised the graph
    assert np.isfinite(openvino_parity(checkpoints["detect"], folder))  # runs, same output shapes as PyTorch
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["args"]["data"] == "data.yaml"  # not a temp path


@pytest.mark.slow
def test_exports_name_their_datasets_without_this_machines_paths(tmp_path: Path) -> None:
    """The shipped checkpoint was trained on `.runtime/data/gloves-all.yaml` of one machine; Ultralytics' exporter
    writes that absolute path into every export's metadata, which a shipped export would carry."""
    folder = export_openvino(DEFAULT_WEIGHTS, 160, out=tmp_path / "m_openvino_model")
    onnx_file = export_onnx(DEFAULT_WEIGHTS, 160, out=tmp_path / "m.onnx")
    described = [yaml.safe_load((folder / "metadata.yaml").read_text())["description"],
                 {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}["description"]]  # fmt: skip
    assert described == ["Ultralytics YOLO11n model trained on gloves-all.yaml"] * 2


def test_cli_exports_openvino_and_the_engine_runs_it(trained_models: dict, tmp_path: Path, capsys) -> None:
    from app.cli import main as cli_main
    from app.engine import DetectionEngine
    from app.records import RecordStore

    weights, data = trained_models["detect"]
    folder = tmp_path / "tiny_openvino_model"
    assert cli_main(["export", "--weights", str(weights), "--format", "openvino", "--imgsz", "96",
                     "--out", str(folder)]) == 0  # fmt: skip
    assert "max |PyTorch - OpenVINO f32|" in capsys.readouterr().out
    engine = DetectionEngine(folder)
    assert engine.task == "detect" and engine.fixed_imgsz == (96, 96) and len(engine.sha256) == 64
    image = next((data.parent / "valid" / "images").glob("*.jpg"))
    out = tmp_path / "out"
    assert cli_main(["detect", "--weights", str(folder), "--source", str(image), "--save-dir", str(out),
                     "--conf", "0.002", "--imgsz", "640"]) == 0  # fmt: skip
    (run,) = RecordStore(out / "records.sqlite").runs()
    assert (run.model, run.model_sha256, run.imgsz) == (str(folder), engine.sha256, 96)  # the size it ran at


@pytest.mark.parametrize(
    "stored",
    [{"imgsz": float("inf"), "conf": 0.3, "iou": 0.5}, {"imgsz": 10**9, "conf": 0.3, "iou": 0.5},
     {"imgsz": 96, "conf": "high", "iou": 0.5}, ["not", "a", "mapping"], "0.3"],
)  # fmt: skip
def test_bad_stored_defaults_fall_back_without_failing(export_copy: Path, stored: object) -> None:
    """A malformed `defaults` entry in an export is not trusted: the model runs at its size and the usual thresholds."""
    from app.engine import DEFAULT_CONF, DEFAULT_IOU, DetectionEngine, ModelDefaults

    meta = export_copy / "metadata.yaml"
    meta.write_text(yaml.safe_dump({**yaml.safe_load(meta.read_text()), "defaults": stored}))
    assert DetectionEngine(export_copy).defaults == ModelDefaults(IMGSZ, DEFAULT_CONF, DEFAULT_IOU, calibrated=False)


def test_export_check_scores_the_checkpoint_on_the_exports_canvas(
    checkpoints: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The FP16 / INT8 check scores the source checkpoint as the static export runs (`square`), so that a canvas
    difference is not read as a precision loss; the difference is recorded in the export."""
    from types import SimpleNamespace

    from app import cli

    calls = []

    def scored(weights, data, **kwargs):
        calls.append((Path(weights), kwargs.get("canvas", "frame")))
        return SimpleNamespace(map50=0.5 if Path(weights).suffix == ".pt" else 0.495, map50_95=0.3)

    monkeypatch.setattr(cli, "run_evaluation", scored)
    folder = tmp_path / "half_openvino_model"
    assert cli.main(["export", "--weights", str(checkpoints["detect"]), "--format", "openvino", "--half",
                     "--imgsz", str(IMGSZ), "--out", str(folder), "--check-data", "a.yaml", "b.yaml"]) == 0  # fmt: skip
    assert calls == [(checkpoints["detect"], "square"), (folder, "frame")] * 2  # Ultralytics runs a static one square
    check = read_openvino_info(folder).check
    assert check is not None and check.map50_loss == pytest.approx(0.005) and check.data == ("a.yaml", "b.yaml")
    assert "largest mAP50 loss 0.005" in capsys.readouterr().out
