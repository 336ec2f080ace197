"""Training on top of Ultralytics' trainer: checks first, then `YOLO(model).train(...)`, then a summary.

Everything that can be wrong with the arguments or the data is found before the first batch, so a bad run
fails in seconds with a message instead of after an hour of training.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ultralytics import YOLO
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.utils import RANK

from .augment import TRAINERS
from .data import DatasetReport, check_dataset, load_dataset_yaml, write_resolved_yaml
from .errors import DatasetError, TrainingError
from .files import atomic_path
from .runtime import RUNS_DIR

TASKS = ("detect", "segment")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|\d+(,\d+)*)$")
RESUME_FILE = "resume.pt"  # beside last.pt in a run stopped by `stop_after`: what continues it, anywhere


@dataclass
class TrainOptions:
    """What `train.py` takes; the fields follow Ultralytics' train arguments of the same names.

    Attributes:
        data: Dataset YAML (Ultralytics or Roboflow export). When resuming, None keeps the checkpoint's; name it
            to continue on another machine (the checkpoint points at this YAML resolved where the run began).
        model: Model YAML (`models/yolo11n-bra.yaml`) to train from scratch, or a `.pt` to fine-tune or resume.
        batch: Images per batch; -1 or a fraction in (0, 1) lets Ultralytics size it to GPU memory.
        device: `cpu`, `0`, `0,1` (multi-GPU DDP) or None for the first GPU if any, else the CPU.
        resume: Continue the interrupted run whose `last.pt` (or `resume.pt`) is `model`.
        stop_after: Seconds (set-up included) after which the run ends at an epoch's end, before one that would
            overrun; it keeps its place in the schedule, and `weights/resume.pt` (last.pt without the optimizer's
            momentum, half the size) continues it with `resume` here or on another machine. For a machine lent by
            the hour, where a fixed `epochs` schedule spans several leases (Ultralytics' `time` instead fits the
            schedule to one sitting and ends the run for good).
        export_to: Copy the best checkpoint (optimizer state stripped) here, e.g. `models/weights/NAME.pt`.
        dedupe: Train on one image per source photo (Roboflow exports hold each photo several times).
        overrides: Further Ultralytics train arguments (augmentation, `plots`, ...), passed through as they are.
    """

    data: Path | None
    model: str
    epochs: int = 100
    imgsz: int = 640
    batch: float = 16
    device: str | None = None
    workers: int = 8
    name: str | None = None
    resume: bool = False
    fraction: float = 1.0
    seed: int = 0
    patience: int = 100
    export_to: Path | None = None
    project: Path = RUNS_DIR
    dedupe: bool = False
    stop_after: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """Where a finished run lies and how its best checkpoint scored on the validation split."""

    save_dir: Path
    best: Path
    metrics: dict[str, float]
    exported: Path | None = None

    def summary(self) -> str:
        lines = [f"Run saved to {self.save_dir}", f"Best checkpoint: {self.best}"]
        if self.exported:
            lines.append(f"Exported to: {self.exported}")
        lines += [f"  {name:<28} {value:.4f}" for name, value in self.metrics.items()]
        return "\n".join(lines)


def check_options(opts: TrainOptions) -> None:
    """Reject options Ultralytics would only fail on later (or silently reinterpret).

    Raises:
        TrainingError: Naming the option and what it accepts.
    """
    model = Path(opts.model)
    if model.suffix not in (".yaml", ".yml", ".pt"):
        raise TrainingError(f"--model must be a model YAML or a .pt checkpoint, got {opts.model}")
    if model.suffix == ".pt" and not model.is_file():
        raise TrainingError(f"--model checkpoint not found: {opts.model}")
    if opts.resume and model.suffix != ".pt":
        raise TrainingError("--resume needs --model pointing at the interrupted run's weights/last.pt (or resume.pt)")
    if opts.data is None and not opts.resume:
        raise TrainingError("--data is needed (a dataset YAML) unless resuming")
    if opts.stop_after is not None and opts.stop_after <= 0:
        raise TrainingError(f"--stop-after must be a number of seconds > 0, got {opts.stop_after}")
    if opts.stop_after is not None and opts.overrides.get("save") is False:
        raise TrainingError("--stop-after needs every epoch saved (resume.pt is the epoch's last.pt): drop save=False")
    if opts.epochs < 1:
        raise TrainingError(f"--epochs must be >= 1, got {opts.epochs}")
    if opts.imgsz < 32:
        raise TrainingError(f"--imgsz must be >= 32, got {opts.imgsz}")
    if not (opts.batch >= 1 and opts.batch == int(opts.batch)) and not (0 < opts.batch < 1) and opts.batch != -1:
        raise TrainingError(f"--batch must be a whole number >= 1, -1 (auto) or a fraction in (0, 1), got {opts.batch}")
    if not 0 < opts.fraction <= 1:
        raise TrainingError(f"--fraction must be in (0, 1], got {opts.fraction}")
    if opts.workers < 0 or opts.patience < 1:
        raise TrainingError("--workers must be >= 0 and --patience >= 1")
    if opts.export_to is not None and Path(opts.export_to).suffix != ".pt":
        raise TrainingError(f"--export-to must name a .pt file, got {opts.export_to}")
    check_device(opts.device)


def check_device(device: str | None) -> None:
    """Accept `cpu`, `mps` or CUDA indices that exist on this machine."""
    if device is None:
        return
    device = device.replace(" ", "").lower()
    if not _DEVICE_PATTERN.match(device):
        raise TrainingError(f"--device must be 'cpu', 'mps', a GPU index like '0' or a list like '0,1', got {device!r}")
    if device in ("cpu", "mps"):
        return
    wanted = [int(i) for i in device.split(",")]
    available = torch.cuda.device_count()
    if not available:
        raise TrainingError(f"--device {device} asks for a GPU, but PyTorch sees none here; use --device cpu")
    if max(wanted) >= available:
        raise TrainingError(f"--device {device}: only {available} GPU(s) visible (indices 0..{available - 1})")


def load_model(model: str) -> YOLO:
    """Build a model from YAML or load a checkpoint, and insist on a task we train (detect or segment)."""
    try:
        yolo = YOLO(model)
    except Exception as e:  # Ultralytics raises many types for unreadable YAMLs and checkpoints
        raise TrainingError(f"cannot load model {model}: {e}") from e
    if yolo.task not in TASKS:
        raise TrainingError(f"{model} is a {yolo.task} model; only detect and segment models are supported")
    return yolo


def prepare(opts: TrainOptions) -> tuple[YOLO, DatasetReport | None]:
    """Check options, model and data; return the model and the dataset report (None when resuming with the
    checkpoint's own data).

    Raises:
        TrainingError: On bad options, an unloadable model or dataset errors (the report is in the message).
    """
    check_options(opts)
    yolo = load_model(opts.model)
    if opts.resume and (getattr(yolo, "ckpt", None) or {}).get("epoch", -1) < 0:
        raise TrainingError(
            f"{opts.model} is marked finished (Ultralytics does so when a run ends, also one stopped by "
            "--stop-after): resume a stopped run from its weights/resume.pt"
        )
    if opts.resume and opts.data is None:  # the checkpoint carries its data and settings
        return yolo, None
    try:
        report = check_dataset(load_dataset_yaml(opts.data), task=yolo.task)
    except DatasetError as e:
        raise TrainingError(str(e)) from e
    if not report.ok:
        raise TrainingError(f"dataset check failed:\n{report.summary()}")
    return yolo, report


def train(opts: TrainOptions, yolo: YOLO, report: DatasetReport | None) -> TrainResult:
    """Train a model returned by `prepare`, copy its best checkpoint if asked, and return the result."""
    if opts.stop_after is not None:
        yolo.add_callback("on_fit_epoch_end", stop_in_time(opts.stop_after))
    # A resume file left in the run folder by an earlier stop is stale once this run has saved an epoch of its own
    # (not before: it may be the file this run resumed from, and last.pt is marked finished); one finishing now
    # must not look resumable, one stopping again writes its own after this
    yolo.add_callback("on_model_save", lambda trainer: (trainer.wdir / RESUME_FILE).unlink(missing_ok=True))
    if opts.resume:
        moved = {"data": str(write_resolved_yaml(report.spec, dedupe_train=opts.dedupe))} if report else {}
        # By path: Ultralytics takes `resume=True` only from a checkpoint with its optimizer state (resume.pt has none)
        yolo.train(resume=str(opts.model), trainer=TRAINERS[yolo.task], **moved)
    else:
        name = opts.name or f"{Path(opts.model).stem}-{report.spec.yaml_file.stem}"
        yolo.train(
            trainer=TRAINERS[yolo.task],
            data=str(write_resolved_yaml(report.spec, dedupe_train=opts.dedupe)),
            epochs=opts.epochs,
            imgsz=opts.imgsz,
            batch=int(opts.batch) if opts.batch >= 1 or opts.batch == -1 else opts.batch,
            device=opts.device,
            workers=opts.workers,
            project=str(Path(opts.project) / yolo.task),
            name=name,
            fraction=opts.fraction,
            seed=opts.seed,
            patience=opts.patience,
            **opts.overrides,
        )
    trainer = yolo.trainer
    best = Path(trainer.best)
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
    exported = export_checkpoint(best, Path(opts.export_to)) if opts.export_to else None
    return TrainResult(save_dir=Path(trainer.save_dir), best=best, metrics=metrics, exported=exported)


def stop_in_time(seconds: float) -> Callable[[BaseTrainer], None]:
    """An `on_fit_epoch_end` callback that ends the run where another epoch (at the mean pace so far) would end past
    `seconds` after the callback was made, and saves `weights/resume.pt`: the trainer's final step marks last.pt
    finished, which would end the schedule there."""
    start = time.monotonic()
    stopped = False

    def check(trainer: BaseTrainer) -> None:
        nonlocal stopped
        if RANK not in {-1, 0}:  # multi-GPU: the main process decides, and Ultralytics broadcasts its `stop`
            return
        elapsed = time.monotonic() - start
        epochs = trainer.epoch - trainer.start_epoch + 1
        if stopped or trainer.stop or elapsed + elapsed / epochs <= seconds:
            return  # also the final validation's call, after the run ended
        stopped = trainer.stop = True
        ckpt = torch.load(trainer.last, map_location="cpu", weights_only=False)  # this epoch's, saved just before
        ckpt["optimizer"] = None  # SGD momentum rebuilds in a few dozen steps; the file halves
        with atomic_path(trainer.wdir / RESUME_FILE) as tmp:
            torch.save(ckpt, tmp)

    return check


def export_checkpoint(best: Path, target: Path) -> Path:
    """Copy a (stripped) checkpoint atomically, so a reader never sees half a file."""
    if not best.is_file():
        raise TrainingError(f"no best checkpoint at {best} to export")
    with atomic_path(target) as tmp:
        shutil.copyfile(best, tmp)
    return target
