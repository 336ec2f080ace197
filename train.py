"""Train a BRA-YOLO11 (or plain YOLO11) detector or segmenter, fully offline.

    python train.py --data datasets/gloves.yaml --model models/yolo11n-bra.yaml --epochs 50 --imgsz 320
    python train.py --data datasets/bandsaw.yaml --model models/yolo11n-seg-bra.yaml --device 0
    python train.py --resume --model runs/detect/NAME/weights/last.pt
    python train.py ... --stop-after 520    # ends in time, at an epoch's end; weights/resume.pt continues it:
    python train.py --resume --model resume.pt --data datasets/gloves-all.yaml --dedupe   # (on another machine)

Runs are written to runs/<task>/<name>/. The options, the model and every label file are checked before
training starts; problems are printed and the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

import app  # noqa: F401  (offline environment, BRA registration)
from app.errors import GloveSafetyError
from app.runtime import RUNS_DIR
from app.training import TrainOptions, prepare, train

DEFAULT_DATA = Path("datasets/gloves.yaml")


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=None,
        help=f"dataset YAML (default {DEFAULT_DATA}; with --resume, the checkpoint's: name it on another machine)",
    )  # fmt: skip
    p.add_argument("--model", default="models/yolo11n-bra.yaml", help="model YAML (from scratch) or .pt")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=640, help="training image size (pixels)")
    p.add_argument("--batch", type=float, default=16, help="batch size; -1 or 0..1 = auto from GPU memory")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1 for multi-GPU DDP (default: GPU 0 if any)")
    p.add_argument("--workers", type=int, default=8, help="data-loader worker processes")
    p.add_argument("--name", default=None, help="run name under runs/<task>/ (default: MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run whose last.pt (or resume.pt) is --model")
    p.add_argument(
        "--stop-after", type=float, default=None, metavar="SECONDS",
        help="end at the epoch's end before one that would pass this, resumable (weights/resume.pt)",
    )  # fmt: skip
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the train split to use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=100, help="epochs without improvement before stopping")
    p.add_argument("--export-to", type=Path, default=None, help="copy the best checkpoint here (.pt)")
    p.add_argument("--dedupe", action="store_true", help="one image per source photo (Roboflow copies)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any further Ultralytics train argument, e.g. --set scale=0.7 --set close_mosaic=3",
    )
    p.add_argument("--project", type=Path, default=RUNS_DIR, help="folder for runs (default: runs/)")
    a = p.parse_args(argv)
    return TrainOptions(
        data=a.data or (None if a.resume else DEFAULT_DATA),
        model=a.model,
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        device=a.device,
        workers=a.workers,
        name=a.name,
        resume=a.resume,
        fraction=a.fraction,
        seed=a.seed,
        patience=a.patience,
        export_to=a.export_to,
        project=a.project,
        dedupe=a.dedupe,
        stop_after=a.stop_after,
        overrides=parse_overrides(p, a.overrides),
    )


def parse_overrides(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings to a dict, values read as YAML scalars (0.7 -> float, true -> bool)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"--set wants KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        yolo, report = prepare(opts)
    except GloveSafetyError as e:  # the user's to fix: one line; anything else is a bug and keeps its traceback
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    if report is not None:
        print(report.summary())
    result = train(opts, yolo, report)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
