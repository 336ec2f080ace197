"""train.py end to end on generated polygon data: one epoch per task, export, reload in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_polygon_dataset, to_box_labels
from ultralytics import YOLO

from app.augment import TRAINERS
from app.data import load_dataset_yaml, write_resolved_yaml
from app.runtime import ROOT
from app.training import RESUME_FILE, TrainOptions, prepare, train
from train import main

pytestmark = [pytest.mark.training, pytest.mark.slow]  # trains models of its own

MODELS = {"detect": "models/yolo11n-bra.yaml", "segment": "models/yolo11n-seg-bra.yaml"}

# Loads a checkpoint in a fresh process, the documented way: `import app` first (offline settings, safe loading
# with our layers on the allow-list), then plain Ultralytics.
RELOAD_SCRIPT = """
import json, sys
import app
import cv2, numpy as np, torch
from ultralytics import YOLO
yolo = YOLO(sys.argv[1])
img = cv2.imread(sys.argv[2])
r = yolo.predict(img, imgsz=96, conf=1e-9, verbose=False)[0]
with torch.no_grad():
    raw = yolo.model.float().eval()(torch.from_numpy(np.load(sys.argv[3])))
raw = raw[0][0] if isinstance(raw[0], (tuple, list)) else raw[0]
np.save(sys.argv[4], raw.numpy())
print(json.dumps({"task": yolo.task, "names": yolo.names, "boxes": r.boxes.data.tolist(),
                  "masks": None if r.masks is None else int(r.masks.data.sum())}))
"""


@pytest.fixture(params=list(MODELS))
def trained(request: pytest.FixtureRequest, trained_models: dict[str, tuple[Path, Path]]) -> tuple[str, Path, Path]:
    """(task, exported .pt, data.yaml) of the session's one-epoch models, trained through train.py."""
    return request.param, *trained_models[request.param]


def test_training_writes_run_and_exports_stripped_best(trained: tuple[str, Path, Path]) -> None:
    task, exported, _data = trained
    run = exported.parent.parent / "runs" / task / "t"
    assert (run / "weights" / "best.pt").is_file() and (run / "results.csv").is_file()
    ckpt = torch.load(exported, map_location="cpu", weights_only=False)
    assert ckpt["optimizer"] is None  # stripped: a shipped checkpoint carries weights only
    assert ckpt["model"].yaml["head"][-1][2] == {"detect": "Detect", "segment": "Segment"}[task]
    assert ckpt["model"].nc == 6 and list(ckpt["model"].names.values())[4] == "hand"


def test_checkpoint_history_equals_results_csv_and_needs_no_polars(
    trained: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint carries the run's results.csv; our trainer reads it without polars (GPU images lack it)."""
    task, exported, _data = trained
    csv_file = exported.parent.parent / "runs" / task / "t" / "results.csv"
    header, *rows = [line.split(",") for line in csv_file.read_text().strip().splitlines()]
    expected = {key: [float(row[i]) for row in rows] for i, key in enumerate(header)}
    assert "metrics/mAP50(B)" in expected and len(expected["epoch"]) == 1
    assert torch.load(exported, map_location="cpu", weights_only=False)["train_results"] == expected
    monkeypatch.setitem(sys.modules, "polars", None)  # `import polars` now raises ImportError
    trainer = TRAINERS[task].__new__(TRAINERS[task])  # only `csv` is read: no model, no data
    trainer.csv = csv_file
    assert trainer.read_results_csv() == expected
    trainer.csv = csv_file.with_name("missing.csv")
    assert trainer.read_results_csv() == {}


def test_checkpoint_reloads_in_fresh_process_and_predicts_identically(
    trained: tuple[str, Path, Path], tmp_path: Path
) -> None:
    task, exported, data = trained
    image = next((data.parent / "valid" / "images").glob("*.jpg"))
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(exported), str(image), str(tmp_path / "x.npy"), str(tmp_path / "y")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])

    yolo = YOLO(str(exported))
    here = yolo.predict(cv2.imread(str(image)), imgsz=96, conf=1e-9, verbose=False)[0]
    with torch.no_grad():
        raw = yolo.model.float().eval()(x)
    raw = raw[0][0] if isinstance(raw[0], (tuple, list)) else raw[0]

    assert fresh["task"] == task
    assert {int(k): v for k, v in fresh["names"].items()} == yolo.names
    assert len(fresh["boxes"]) == len(here.boxes) > 0
    np.testing.assert_allclose(np.array(fresh["boxes"]), here.boxes.data.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), raw.numpy(), atol=1e-5)
    if task == "segment":
        assert fresh["masks"] == int(here.masks.data.sum())


def test_detect_model_trains_on_box_only_export(tmp_path: Path) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    to_box_labels(data)
    argv = ["--data", str(data), "--model", str(ROOT / MODELS["detect"]), "--epochs", "1", "--imgsz", "64",
            "--batch", "2", "--workers", "0", "--device", "cpu", "--project", str(tmp_path / "runs")]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "runs" / "detect" / "yolo11n-bra-data" / "weights" / "best.pt").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--imgsz", "16"], "--imgsz must be >= 32"),
        (["--batch", "2.5"], "--batch must be"),
        (["--fraction", "1.5"], "--fraction must be in (0, 1]"),
        (["--device", "gpu"], "--device must be"),
        (["--export-to", "best.onnx"], "--export-to must name a .pt file"),
        (["--model", "models/missing.pt"], "checkpoint not found"),
        (["--model", "notes.txt"], "must be a model YAML or a .pt"),
        (["--resume"], "--resume needs --model pointing at"),
        (["--data", "datasets/nope.yaml"], "dataset YAML not found"),
    ],
)
def test_bad_arguments_fail_before_training(
    extra: list[str], message: str, tmp_path: Path, polygon_dataset: Path, capsys
) -> None:
    argv = ["--data", str(polygon_dataset), "--model", str(ROOT / MODELS["detect"]), "--epochs", "1",
            "--project", str(tmp_path / "runs"), *extra]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_gpu_device_without_gpu_is_refused(tmp_path: Path, polygon_dataset: Path, capsys) -> None:
    argv = ["--data", str(polygon_dataset), "--device", "0,1", "--project", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert "PyTorch sees none here; use --device cpu" in capsys.readouterr().err


def test_bad_data_fails_before_training(tmp_path: Path, capsys) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=2, n_val=1, size=32)
    (data.parent / "train" / "labels" / "train_0.txt").write_text("9 0.5 0.5 0.1 0.1\n")
    argv = ["--data", str(data), "--model", str(ROOT / MODELS["segment"]), "--project", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "dataset check failed" in err and "class ids outside 0..5" in err and "train_0.txt:1" in err
    assert not (tmp_path / "runs").exists()


def test_segment_model_on_box_data_is_refused(tmp_path: Path, capsys) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=2, n_val=1, size=32)
    to_box_labels(data)
    argv = ["--data", str(data), "--model", str(ROOT / MODELS["segment"]), "--project", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert "task mismatch" in capsys.readouterr().err


def test_non_yolo_checkpoint_is_refused(tmp_path: Path, polygon_dataset: Path, capsys) -> None:
    bogus = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, bogus)
    argv = ["--data", str(polygon_dataset), "--model", str(bogus), "--project", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert f"cannot load model {bogus}" in capsys.readouterr().err


def test_interrupted_run_resumes_to_its_last_epoch(tmp_path: Path) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    opts = TrainOptions(
        data=data, model=str(ROOT / MODELS["detect"]), epochs=2, imgsz=64, batch=2, workers=0, device="cpu",
        project=tmp_path / "runs", name="r", overrides={"plots": False},
    )  # fmt: skip
    yolo, report = prepare(opts)

    def interrupt(trainer) -> None:  # as if the machine went down after the first epoch was saved
        raise KeyboardInterrupt

    yolo.add_callback("on_fit_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(opts, yolo, report)
    last = tmp_path / "runs" / "detect" / "r" / "weights" / "last.pt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0

    assert main(["--resume", "--model", str(last)]) == 0
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None  # finished and stripped
    rows = (last.parent.parent / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + epochs 1 and 2, in the same run folder


def test_run_stopped_in_time_resumes_on_another_machine(tmp_path: Path, capsys) -> None:
    """A schedule spanning leases: --stop-after ends each part at an epoch's end, its resume.pt carried to a machine
    without the run folder or the resolved data YAML continues the same schedule, and the run that finishes it
    leaves nothing that looks resumable."""
    data = make_polygon_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    run = tmp_path / "runs" / "detect" / "s"
    resume_file = run / "weights" / RESUME_FILE
    common = ["--imgsz", "64", "--batch", "2", "--workers", "0", "--device", "cpu", "--set", "plots=False"]
    argv = ["--data", str(data), "--model", str(ROOT / MODELS["detect"]), "--epochs", "3", "--name", "s"]
    assert main([*argv, *common, "--project", str(tmp_path / "runs"), "--stop-after", "1e-3"]) == 0

    last = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert last["epoch"] == -1  # Ultralytics marks the stopped run's last.pt finished ...
    assert main(["--resume", "--model", str(run / "weights" / "last.pt")]) == 2  # said before any set-up
    err = capsys.readouterr().err
    assert "is marked finished" in err and "resume a stopped run from its weights/resume.pt" in err
    carried = tmp_path / "lease" / "resume.pt"
    carried.parent.mkdir()
    resume_file.rename(carried)
    resume = torch.load(carried, map_location="cpu", weights_only=False)
    assert resume["epoch"] == 0 and resume["optimizer"] is None and resume["ema"] is not None  # ... resume.pt is not
    assert len((run / "results.csv").read_text().strip().splitlines()) == 2  # header + epoch 1 of 3

    shutil.rmtree(run)  # the next machine has neither the run folder nor the YAML resolved on the first
    write_resolved_yaml(load_dataset_yaml(data)).unlink()
    assert main(["--resume", "--model", str(carried), "--data", str(data), "--stop-after", "1e-3"]) == 0
    assert torch.load(resume_file, map_location="cpu", weights_only=False)["epoch"] == 1  # stopped again, in place

    assert main(["--resume", "--model", str(resume_file)]) == 0  # here, with the data it resolved: to the end
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert [int(float(r.split(",")[0])) for r in rows[1:]] == [2, 3]  # the same schedule, from where it stopped
    assert torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)["epoch"] == -1
    assert not resume_file.exists()  # finished: nothing left that looks resumable
