"""`python -m app detect ...`: the headless monitor over the same engine the console uses;
`python -m app evaluate ...`: accuracy of checkpoints on a dataset's val split and on its scene check;
`python -m app export ...`: an ONNX export that the engine, CLI and console run like a checkpoint.

Exit codes: 0 done; 1 the run failed part-way; 2 bad input (missing file, unreadable image or video, wrong
weights, bad policy) reported in one line before anything is processed; 3 a damaged input (a video cut off
part-way) whose readable part was processed and saved.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from ultralytics.utils.tqdm import TQDM

from .data import load_dataset_yaml
from .engine import DetectionEngine, EngineSettings
from .errors import DatasetError, ModelError, ModelExportError, PolicyError, RecordsError, SourceError
from .evaluation import evaluate as run_evaluation
from .excel import export_workbook
from .export import export_onnx, onnx_parity
from .outputs import atomic_write
from .pipeline import DetectionRun
from .policy import SafetyPolicy
from .records import RecordStore
from .runtime import DEFAULT_WEIGHTS, EXPORTS_DIR, RUNTIME_DIR
from .scenes import build_scene_set
from .sources import open_source

PARITY_TOLERANCE = 1e-3  # fp32 ONNX Runtime against PyTorch, raw outputs (pixels and scores)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Glove / hand safety detection")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="run detection on an image, folder, video, camera or stream")
    d.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="detect / segment .pt or .onnx export")
    d.add_argument("--source", required=True, help="image, folder, video file, camera index or rtsp/http URL")
    d.add_argument("--conf", type=float, default=0.25, help="confidence threshold (0..1)")
    d.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (0..1)")
    d.add_argument("--classes", nargs="+", default=None, help="keep only these class names or ids")
    d.add_argument("--imgsz", type=int, default=640, help="inference size in pixels")
    d.add_argument("--device", default=None, help="cpu, 0, ... (default: GPU if any)")
    d.add_argument("--track", action="store_true", help="track objects across frames (unique counts)")
    d.add_argument("--stride", type=int, default=1, help="process every n-th video frame")
    d.add_argument("--policy", default=None, help="safety policy YAML or a name from app/policies/")
    d.add_argument("--excel", type=Path, default=None, help="also write this run's workbook (.xlsx)")
    d.add_argument("--save-dir", type=Path, default=EXPORTS_DIR, help="where run folders are written")
    d.add_argument("--db", type=Path, default=None, help="SQLite records file (default: SAVE_DIR/records.sqlite)")
    e = sub.add_parser("evaluate", help="mAP, precision and recall of checkpoints on a dataset's val split")
    e.add_argument("--weights", type=Path, nargs="+", required=True, help="checkpoints to compare")
    e.add_argument("--data", type=Path, default=Path("datasets/gloves.yaml"), help="dataset YAML")
    e.add_argument("--imgsz", type=int, nargs="+", default=[640], help="inference sizes to evaluate at")
    e.add_argument("--scenes", action="store_true", help="also evaluate on scenes composed from val (app.scenes)")
    e.add_argument("--device", default=None, help="cpu, 0, ... (default: GPU if any)")
    e.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    x = sub.add_parser("export", help="export a checkpoint to ONNX and check it against PyTorch")
    x.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="detect or segment .pt checkpoint")
    x.add_argument("--imgsz", type=int, default=640, help="input size (static), or the trace size (dynamic)")
    x.add_argument("--dynamic", action="store_true", help="any batch and image size at run time")
    x.add_argument("--out", type=Path, default=None, help="where to write the .onnx (default: beside the weights)")
    return parser


def export(args: argparse.Namespace) -> int:
    try:
        model = DetectionEngine(args.weights).model  # the same checks (and safe loading) as a detection run
        onnx_file = export_onnx(args.weights, imgsz=args.imgsz, dynamic=args.dynamic, out=args.out, model=model)
        shapes = [(1, 3, args.imgsz, args.imgsz)]
        if args.dynamic:
            shapes += [(2, 3, args.imgsz, args.imgsz), (1, 3, args.imgsz + 64, args.imgsz + 32)]  # multiples of 32
        diff = onnx_parity(model, onnx_file, shapes)
    except (ModelError, ModelExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {onnx_file} ({'dynamic' if args.dynamic else f'static {args.imgsz}'}); "
          f"max |PyTorch - ONNX Runtime| over inputs {shapes}: {diff:.2e}")  # fmt: skip
    return 0 if diff <= PARITY_TOLERANCE else 1


def evaluate(args: argparse.Namespace) -> int:
    try:
        sets = [args.data]
        if args.scenes:
            out = RUNTIME_DIR / "data" / f"{args.data.stem}-scenes"
            sets.append(build_scene_set(load_dataset_yaml(args.data), out))
        # The same checks (and safe loading) as a detection run; the checked models are the ones evaluated.
        models = {weights: DetectionEngine(weights).model for weights in args.weights}
        results = []
        for weights, data, imgsz in itertools.product(args.weights, sets, args.imgsz):
            result = run_evaluation(weights, data, imgsz=imgsz, device=args.device, model=models[weights])
            print(f"\n{weights} on {data} at {imgsz} ({result.images} images, plots in {result.plots_dir}):")
            print(result.markdown())
            print(f"Confusion matrix {result.matrix_summary()}.")
            results.append(result.to_dict())
    except (ModelError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        atomic_write(args.json, json.dumps(results, indent=2).encode())
    return 0


def detect(args: argparse.Namespace) -> int:
    try:
        engine = DetectionEngine(args.weights)
        settings = EngineSettings(
            conf=args.conf, iou=args.iou, imgsz=args.imgsz, device=args.device, track=args.track,
            classes=engine.class_ids(args.classes) if args.classes else None,
        )  # fmt: skip
        engine.update(**settings.__dict__)
        policy = SafetyPolicy.load(args.policy) if args.policy else None
        source = open_source(args.source, stride=args.stride)
        store = RecordStore(args.db or args.save_dir / "records.sqlite")
        run = DetectionRun(engine, source, policy, store, exports_dir=args.save_dir)
    except (ModelError, PolicyError, SourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    bar = TQDM(total=source.total, desc=f"{source.kind} {Path(str(args.source)).name}", unit="frame")
    try:
        for update in run:
            bar.update(1)
            if update.skipped:
                bar.write(f"skipped {update.skipped.name}: {update.skipped.reason}")
    except KeyboardInterrupt:
        print("stopped by user; everything up to here is saved", file=sys.stderr)
    except (SourceError, OSError) as e:
        print(f"error: run failed part-way: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    print(run.summary.text())
    if args.excel:
        try:
            print(f"  workbook: {export_workbook(store, args.excel, run_id=run.summary.run_id)}")
        except RecordsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if run.summary.warnings:
        print(f"error: damaged input: {run.summary.warnings[0]}", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"evaluate": evaluate, "export": export}.get(args.command, detect)(args)
