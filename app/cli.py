"""`python -m app detect ...`: the headless monitor, a thin layer over the same service the console uses;
`python -m app evaluate ...`: accuracy of checkpoints on the val (or test) split of one or more datasets;
`python -m app calibrate ...`: store a checkpoint's best inference size and confidence in it;
`python -m app export ...`: an ONNX or OpenVINO export that the engine, CLI and console run like a checkpoint;
`python -m app monitor --config FILE`: watch cameras until stopped (records, recordings, alerts);
`python -m app history ...`: the runs recorded, as the console's History lists them, and their workbook.

Exit codes: 0 done; 1 the run failed part-way; 2 bad input (missing file, unreadable image or video, wrong
weights, bad policy, unusable dataset) reported in one line before anything is processed; 3 a damaged input (a
video cut off part-way) whose readable part was processed and saved; 4 (detect) the safety policy found a violation
(the run is saved; also when the input was damaged or the run failed part-way: a violation seen is never hidden).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
from pathlib import Path

from ultralytics.utils.tqdm import TQDM

from .calibration import calibrate as run_calibration
from .data import load_dataset_yaml
from .engine import RUNTIME_HELP, RUNTIMES, DetectionEngine
from .errors import GloveSafetyError, ServiceError, SourceError
from .evaluation import LEVEL, Evaluation, map50_difference
from .evaluation import evaluate as run_evaluation
from .excel import export_workbook
from .export import (
    EXPORT_MAP50_LOSS,
    PARITY_TOLERANCE,
    AccuracyCheck,
    checked_int8,
    export_onnx,
    export_openvino,
    file_sha256,
    onnx_parity,
    openvino_parity,
    record_check,
)
from .files import atomic_write
from .monitor import MonitorConfig, MonitorSet
from .records import is_url, records_location
from .runtime import DEFAULT_WEIGHTS, EXPORTS_DIR, RUNTIME_DIR
from .scenes import build_scene_set
from .schema import RUN_TALLIES, RunRow, flag_text
from .service import DetectionService, RunOptions, measured_notice
from .sources import redact
from .views import runs_label, runs_table

EXIT_VIOLATION = 4  # detect: the run is saved and its policy found a violation, for scripts that watch for one


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Glove / hand safety detection")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="run detection on an image, folder, video, camera or stream")
    d.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="detect / segment .pt or .onnx export")
    d.add_argument("--source", required=True, help="image, folder, video file, camera index or rtsp/http URL")
    d.add_argument("--conf", type=float, default=None, help="confidence threshold, 0..1 (default: the model's)")
    d.add_argument("--iou", type=float, default=None, help="NMS IoU threshold, 0..1 (default: the model's)")
    d.add_argument("--classes", nargs="+", default=None, help="keep only these class names or ids")
    d.add_argument("--imgsz", type=int, default=None, help="inference size in pixels (default: the model's)")
    d.add_argument("--device", default=None, help="cpu, 0, ... (default: GPU if any)")
    d.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    d.add_argument("--track", action="store_true", help="track objects across frames (unique counts)")
    d.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="photos: test-time augmentation (flips, two smaller scales; ~5x slower, more hands found); "
                        "videos and streams never")  # fmt: skip
    d.add_argument("--stride", type=int, default=1, help="process every n-th video frame")
    d.add_argument("--policy", default=None, help="safety policy YAML or a name from app/policies/")
    d.add_argument("--zone", default=None, help="danger zone overriding the policy's: x,y pairs in 0..1, e.g. "
                   "'0.3,0.2 0.7,0.2 0.5,0.9'")  # fmt: skip
    d.add_argument("--excel", type=Path, default=None, help="also write this run's workbook (.xlsx)")
    d.add_argument("--save-dir", type=Path, default=EXPORTS_DIR, help="where run folders are written")
    d.add_argument("--db", default=None, help="records: a SQLite file or postgresql://user@host:port/db (default: "
                   "$GLOVE_RECORDS, else SAVE_DIR/records.sqlite)")  # fmt: skip
    e = sub.add_parser("evaluate", help="mAP, precision and recall of checkpoints on datasets' val (or test) split")
    e.add_argument("--weights", type=Path, nargs="+", required=True, help="checkpoints to compare")
    e.add_argument("--data", type=Path, nargs="+", default=[Path("datasets/gloves-scenes.yaml")],
                   help="dataset YAMLs (select models on gloves-scenes' val first)")  # fmt: skip
    e.add_argument("--split", choices=["val", "test"], default="val", help="which split (test: once, at the end)")
    e.add_argument("--imgsz", type=int, nargs="+", default=None, help="inference sizes (default: each model's own)")
    e.add_argument("--iou", type=float, default=None, help="NMS IoU (default: each model's own)")
    e.add_argument("--scenes", action="store_true",
                   help="an extra, never for selection: the first dataset's val photos pasted into scenes")  # fmt: skip
    e.add_argument("--device", default=None, help="cpu, 0, ... (default: GPU if any)")
    e.add_argument("--augment", action="store_true", help="with test-time augmentation (as photos run by default)")
    e.add_argument("--bootstrap", type=_positive, default=0, metavar="N",
                   help="95%% intervals of mAP50 from N resamples of the images, and of each model's difference from "
                   "the first on the same images (e.g. 1000)")  # fmt: skip
    e.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    c = sub.add_parser("calibrate", help="store the best inference size and confidence in a checkpoint")
    c.add_argument("--weights", type=Path, required=True, help="detect / segment .pt checkpoint (rewritten in place)")
    c.add_argument("--data", type=Path, default=Path("datasets/gloves-scenes.yaml"), help="dataset YAML (its val)")
    c.add_argument("--imgsz", type=int, nargs="+", default=[320, 416, 480, 512, 640], help="candidate sizes")
    c.add_argument("--device", default=None, help="cpu, 0, ... (default: GPU if any)")
    x = sub.add_parser("export", help="export a checkpoint to ONNX or OpenVINO and check it against PyTorch")
    x.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="detect or segment .pt checkpoint")
    x.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    x.add_argument("--imgsz", type=int, default=640, help="input size (static), or the trace size (dynamic)")
    x.add_argument("--dynamic", action="store_true", help="ONNX: any batch and image size at run time")
    precision = x.add_mutually_exclusive_group()
    precision.add_argument("--int8", action="store_true", help="OpenVINO: INT8, calibrated on --data's train images")
    precision.add_argument("--half", action="store_true", help="OpenVINO: FP16 weights")
    x.add_argument("--data", type=Path, default=Path("datasets/gloves-all.yaml"),
                   help="INT8: dataset YAML to calibrate on (its train split)")  # fmt: skip
    x.add_argument("--check-data", type=Path, nargs="+",
                   default=[Path("datasets/gloves.yaml"), Path("datasets/gloves-scenes.yaml")],
                   help="INT8 / FP16: dataset YAMLs to score the export on beside PyTorch (val)")  # fmt: skip
    x.add_argument("--out", type=Path, default=None, help="where to write the export (default: beside the weights)")
    m = sub.add_parser("monitor", help="watch cameras until stopped (Ctrl-C, SIGTERM): records, recordings, alerts")
    m.add_argument("--config", type=Path, required=True, help="monitor config YAML (README: Monitoring cameras)")
    m.add_argument("--duration", type=float, default=None, help="stop after this many seconds (demos, tests)")
    h = sub.add_parser("history", help="the runs recorded (as the console's History lists them), and their workbook")
    h.add_argument("--from", dest="start", default=None, help="first day listed, YYYY-MM-DD (this machine's days)")
    h.add_argument("--until", default=None, help="first day not listed, YYYY-MM-DD")
    h.add_argument("--source", default=None, help="only runs of this source (as stored, or its file name)")
    h.add_argument("--excel", type=Path, default=None, help="also write the listed runs' workbook (.xlsx) here")
    h.add_argument("--save-dir", type=Path, default=EXPORTS_DIR, help="the exports folder holding records.sqlite")
    h.add_argument("--db", default=None, help="records: a SQLite file or postgresql://user@host:port/db (default: "
                   "$GLOVE_RECORDS, else SAVE_DIR/records.sqlite)")  # fmt: skip
    return parser


_RUN_TITLES = {c.name: c.title for c in RunRow.columns()}
HISTORY_COLUMNS = (
    *(_RUN_TITLES[n] for n in ("started_at", "id", "source", "kind", "monitor", "status", "frames")),
    *RUN_TALLIES,
)
"""What `history` prints of the console's History table: the run and its verdict (the settings are in the
workbook), to fit a terminal."""


def history(args: argparse.Namespace) -> int:
    location = records_location(args.db, args.save_dir / "records.sqlite")
    if not is_url(location) and not Path(location).is_file():  # a typed path is not a new, empty history
        raise ServiceError(f"no records at {location}: give --db or --save-dir where runs were recorded")
    service = DetectionService(exports_dir=args.save_dir, db=location, reader=True)
    runs = service.history(args.start, args.until, args.source)
    print(runs_label(runs, bool(args.start or args.until), args.source))
    if runs:
        table = runs_table(runs, service.run_counts(runs))[list(HISTORY_COLUMNS)].fillna("")
        lines = [list(HISTORY_COLUMNS)] + [[str(v) for v in row] for row in table.itertuples(index=False)]
        widths = [max(map(len, column)) for column in zip(*lines, strict=True)]
        print("\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines))
    if args.excel:
        print(f"workbook: {service.workbook(None, args.start, args.until, args.source, out=args.excel)}")
    return 0


def monitor(args: argparse.Namespace) -> int:
    config = MonitorConfig.load(args.config)
    # Events and problems as they happen, one line each (the records and the console hold the details); before the
    # monitors exist, whose MQTT connections report from their own threads as soon as they are made.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("app.monitor", "app.alerts"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    monitors = MonitorSet(config)
    # SIGTERM (a service manager) and Ctrl-C stop it the same way: runs saved, files finished, status `stopped`.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: monitors.interrupt())
    names = ", ".join(f"{m.spec.name} ({redact(str(m.spec.source))})" for m in monitors.monitors)
    # what each model was measured to find, where the operator reads the monitors' lines (loaded: MonitorSet checked)
    models = {m.spec.weights: monitors.service.engine(m.spec.weights, runtime=m.spec.runtime).defaults
              for m in monitors.monitors}  # fmt: skip
    said = "".join(f"  {notice}\n" for w, d in models.items() if (notice := measured_notice(w, d)))
    print(f"watching {names}\n{said}  records: {monitors.service.store.location}\n  run folders: {config.exports}\n"
          f"  recordings: {config.recordings_dir}\nCtrl-C stops", flush=True)  # fmt: skip
    try:
        monitors.start()
        monitors.wait(args.duration)
    finally:
        monitors.stop()
        monitors.service.shutdown()
    for m in monitors.monitors:
        row = m.status_row()
        print(
            f"{row.name}: {row.status}, {row.frames} frame(s), {m.events} event(s) opened, run {row.run_id}"
            + (f" ({row.message})" if row.message else "")
        )
    print(f"saved: records in {monitors.service.store.location}, recordings in {config.recordings_dir}, "
          f"run folders in {config.exports}")  # fmt: skip
    return 0


def export(args: argparse.Namespace) -> int:
    engine = DetectionEngine(args.weights)  # the same checks (and safe loading) as a detection run
    if args.format == "openvino":
        return export_to_openvino(args, engine)
    model = engine.model
    onnx_file = export_onnx(args.weights, imgsz=args.imgsz, dynamic=args.dynamic, out=args.out, model=model)
    shapes = [(1, 3, args.imgsz, args.imgsz)]
    if args.dynamic:
        shapes += [(2, 3, args.imgsz, args.imgsz), (1, 3, args.imgsz + 64, args.imgsz + 32)]  # multiples of 32
    diff = onnx_parity(model, onnx_file, shapes)
    print(f"exported {onnx_file} ({'dynamic' if args.dynamic else f'static {args.imgsz}'}); "
          f"max |PyTorch - ONNX Runtime| over inputs {shapes}: {diff:.2e}")  # fmt: skip
    return 0 if diff <= PARITY_TOLERANCE else 1


def export_to_openvino(args: argparse.Namespace, engine: DetectionEngine) -> int:
    """FP32: raw outputs checked against PyTorch (compiled in f32). INT8 / FP16: scored beside PyTorch instead,
    mAP50 on each `--check-data` val split (the target: INT8 within 0.01 of the source), and the result kept in the
    export's metadata, where the engine's `auto` runtime reads it."""
    model = engine.model
    precision = "int8" if args.int8 else "fp16" if args.half else "fp32"
    folder = export_openvino(args.weights, imgsz=args.imgsz, precision=precision,
                             data=args.data if args.int8 else None, out=args.out)  # fmt: skip
    if precision == "fp32":
        diff = openvino_parity(model, folder)
        print(f"exported {folder} (FP32, static {args.imgsz}); max |PyTorch - OpenVINO f32| {diff:.2e}")
        return 0 if diff <= PARITY_TOLERANCE else 1
    print(f"exported {folder} ({precision.upper()}, static {args.imgsz}); scoring beside PyTorch:")
    worst = 0.0
    for data in args.check_data:
        source = run_evaluation(args.weights, data, imgsz=args.imgsz, model=model, canvas="square")  # as exported
        exported = run_evaluation(folder, data, imgsz=args.imgsz)
        worst = max(worst, source.map50 - exported.map50)
        print(f"  {data}: mAP50 {source.map50:.3f} -> {exported.map50:.3f} ({exported.map50 - source.map50:+.3f}), "
              f"mAP50-95 {source.map50_95:.3f} -> {exported.map50_95:.3f}")  # fmt: skip
    check = AccuracyCheck(engine.sha256, worst, tuple(str(d) for d in args.check_data))
    record_check(folder, check)
    print(f"largest mAP50 loss {worst:.3f} (target <= {EXPORT_MAP50_LOSS}); recorded in {folder / 'metadata.yaml'}")
    return 0 if check.passed else 1


def evaluate(args: argparse.Namespace) -> int:
    sets = list(args.data)
    if args.scenes:
        out = RUNTIME_DIR / "data" / f"{args.data[0].stem}-scenes"
        sets.append(build_scene_set(load_dataset_yaml(args.data[0]), out))
    for data in sets:  # every dataset checked before the first (long) evaluation
        load_dataset_yaml(data)
    # The same checks (and safe loading) as a detection run; the checked models are the ones evaluated, their
    # confusion matrices counted at each model's own default confidence (what an operator sees).
    engines = {weights: DetectionEngine(weights) for weights in args.weights}
    results = []
    for weights, data in itertools.product(args.weights, sets):
        engine, iou = engines[weights], args.iou or engines[weights].defaults.iou
        for imgsz in args.imgsz or [engine.defaults.imgsz]:
            result = run_evaluation(weights, data, imgsz=imgsz, split=args.split, iou=iou, device=args.device,
                                    model=engine.model, matrix_conf=engine.defaults.conf,
                                    agnostic=engine.defaults.agnostic,
                                    augment=args.augment and engine.supports_augment)  # fmt: skip
            print(f"\n{weights} on {data} ({args.split}) at {imgsz} ({result.images} images, plots in "
                  f"{result.plots_dir}):")  # fmt: skip
            print(result.markdown())
            print(f"Confusion matrix {result.matrix_summary()}.")
            results.append(result.with_interval(args.bootstrap) if args.bootstrap else result)
    print("\nAll results (select on the scenes' val split; synthetic scenes are an extra, never for selection):")
    print(summary_table(results))
    if args.bootstrap:
        print(difference_lines(results, args.bootstrap))
    if args.json:
        atomic_write(args.json, json.dumps([r.to_dict() for r in results], indent=2).encode())
    return 0


def summary_table(results: list[Evaluation]) -> str:
    """One Markdown table: a row per model, dataset, split, size and NMS, with per-class mAP50 (and its bootstrap
    interval where one was drawn)."""
    names = sorted({c.name for r in results for c in r.classes})
    intervals = any(r.map50_interval for r in results)
    header = ["weights", "data", "split", "imgsz", "NMS IoU", "NMS across classes", "TTA", "mAP50",
              *([f"mAP50 {LEVEL:.0%} interval"] if intervals else []), "mAP50-95", *(f"{n} AP50" for n in names),
              "best F1", "at conf"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in results:
        per_class = {c.name: c.map50 for c in r.classes}
        interval = [f"{r.map50_interval[0]:.3f}-{r.map50_interval[1]:.3f}" if r.map50_interval else "-"]
        cells = [Path(r.weights).name, Path(r.data).stem, r.split, r.imgsz, f"{r.iou:g}", flag_text(r.agnostic),
                 flag_text(r.augment), f"{r.map50:.3f}", *(interval if intervals else []),
                 f"{r.map50_95:.3f}", *(f"{per_class[n]:.3f}" if n in per_class else "-" for n in names),
                 f"{r.best_f1:.3f}", f"{r.best_f1_conf:.3f}"]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def difference_lines(results: list[Evaluation], resamples: int) -> str:
    """Each other model's mAP50 minus the first model's on the same dataset and split (at the same size where the
    first ran it, else at the first model's first size), with the paired interval."""
    first = results[0].weights
    lines = [f"Differences from {first} ({LEVEL:.0%} paired bootstrap intervals, {resamples} resamples):"]
    for r in results:
        key = (r.data, r.split, r.augment)
        bases = [b for b in results if b.weights == first and (b.data, b.split, b.augment) == key]
        if r.weights == first or not bases:
            continue
        base = next((b for b in bases if b.imgsz == r.imgsz), bases[0])
        diff, lo, hi = map50_difference(base, r, resamples)
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "not told apart by these images"
        lines.append(f"  {r.weights} at {r.imgsz} against {Path(first).name} at {base.imgsz}, {Path(r.data).stem} "
                     f"{r.split}: mAP50 {diff:+.3f} ({lo:+.3f} to {hi:+.3f}): {verdict}")  # fmt: skip
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def calibrate(args: argparse.Namespace) -> int:
    defaults, results, exports = run_calibration(args.weights, args.data, args.imgsz, device=args.device)
    print(summary_table(results))
    chosen = {k: v for k, v in defaults.as_dict().items() if k != "measured"}
    print(f"stored in {args.weights}: {chosen} (best mAP50 on {args.data} val, confidence at best F1); "
          f"{defaults.measured.text()}")  # fmt: skip
    auto = checked_int8(args.weights, file_sha256(args.weights), defaults.imgsz)  # what `auto` runs on this CPU
    for folder in exports:
        picked = ", which `auto` picks on CPUs with VNNI or AMX" if folder == auto else ""
        print(f"and in the checked export made from it, {folder}{picked}")
    return 0


def detect(args: argparse.Namespace) -> int:
    service = DetectionService(exports_dir=args.save_dir, db=args.db)
    options = RunOptions(
        weights=args.weights, conf=args.conf, iou=args.iou, imgsz=args.imgsz, classes=tuple(args.classes or ()),
        track=args.track, policy=args.policy, zone=args.zone, device=args.device, runtime=args.runtime,
        augment_photos=args.augment,
    )  # fmt: skip
    run = service.detect_file(args.source, options, stride=args.stride)
    if notice := measured_notice(run.engine.weights, run.engine.defaults):
        print(notice, file=sys.stderr)  # with the progress: stdout holds the summary alone
    source = run.source
    # progress on stderr: stdout holds the summary alone, for a script or a log to read
    bar = TQDM(total=source.total, desc=f"{source.kind} {Path(str(args.source)).name}", unit="frame", file=sys.stderr)
    failed = False
    try:
        for update in run:
            bar.update(1)
            if update.skipped:
                bar.write(f"skipped {update.skipped.name}: {update.skipped.reason}")
    except KeyboardInterrupt:
        print("stopped by user; everything up to here is saved", file=sys.stderr)
    except (SourceError, OSError) as e:
        print(f"error: run failed part-way: {e}", file=sys.stderr)
        failed = True
    finally:
        bar.close()
    print(run.summary.text())  # also of a failed run: what it saw up to the failure is saved
    if args.excel:
        print(f"  workbook: {export_workbook(service.store, args.excel, run_id=run.summary.run_id)}")
    if run.summary.warnings:
        print(f"error: damaged input: {run.summary.warnings[0]}", file=sys.stderr)
    # a violation outranks a failure or damaged input: a script watching for violations must not miss one
    if run.summary.events:
        return EXIT_VIOLATION
    return 1 if failed else 3 if run.summary.warnings else 0


COMMANDS = {"detect": detect, "evaluate": evaluate, "calibrate": calibrate, "export": export, "monitor": monitor,
            "history": history}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GloveSafetyError as e:  # the user's to fix: one line; anything else is a bug and keeps its traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
