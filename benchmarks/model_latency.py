"""Latency, parameters and GFLOPs of BRA-YOLO11n against plain YOLO11n, detect and segment, PyTorch and ONNX Runtime;
or, with --weights, one trained checkpoint in PyTorch, ONNX Runtime and OpenVINO (FP32, BF16 / FP16, INT8).

    .venv/bin/python benchmarks/model_latency.py [--sizes 640 320] [--repeat 20] [--variants default p345]
    .venv/bin/python benchmarks/model_latency.py --weights models/weights/gloves-bra-n.pt --sizes 640 \
        [--data datasets/gloves-all.yaml] [--calibration-images 300] [--threads 1]

Each model is built from its YAML (untrained: latency does not depend on the weights) with the same number of
classes, fused as for inference, and timed on a batch-1 input: the network forward only, without pre- or
post-processing. Models of one task and size are timed in alternation, round after round, so a drift in machine
speed does not favour either; the median is reported. ONNX Runtime times a static export of the same model.

With --weights, every runtime runs the same checkpoint, in alternation, and is reported against PyTorch with
the precision its float layers actually computed in: OpenVINO is compiled with an explicit precision hint (f32;
then bf16 and f16 where the CPU has them), since its CPU default is BF16 on CPUs with AMX. INT8 (an NNCF export
calibrated on --data's train images) runs its remaining float layers in f32. The CPU's OpenVINO capabilities
and INT8 / BF16 instructions are printed first.

GFLOPs come from torch.utils.flop_counter, which counts every matrix product and convolution, with a formula
registered here for the CPU kernel of scaled_dot_product_attention, which it otherwise skips.
Target: the default BRA model within 1.3x the plain one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

from app.export import (
    CALIBRATION_IMAGES,
    ISA_FEATURES,
    compile_openvino,
    compiled_precision,
    export_onnx,
    export_openvino,
    openvino_cpu,
)
from app.runtime import ROOT

NC = 2  # the glove models' classes
LABELS = {"default": "P4/P5, default", "p345": "P3/P4/P5, seed"}
VARIANTS = {"default": "yolo11n-bra.yaml", "p345": "yolo11n-bra-p345.yaml"}


def config(task: str, variant: str) -> str:
    """The model YAML: plain YOLO11n from Ultralytics' package, or one of ours."""
    seg = task == "segment"
    if variant == "plain":
        return "yolo11n-seg.yaml" if seg else "yolo11n.yaml"
    return str(ROOT / "models" / VARIANTS[variant].replace("-bra", "-seg-bra" if seg else "-bra"))


def build(task: str, variant: str) -> torch.nn.Module:
    """A fused, eval-mode model with NC classes."""
    model_class = SegmentationModel if task == "segment" else DetectionModel
    return model_class(config(task, variant), nc=NC, verbose=False).fuse(verbose=False).eval()


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Torch counts fused attention on GPUs only; on the CPU kernel: (q @ k^T) and (attn @ v), 2 FLOPs per MAC."""
    b, h, queries, e = query_shape
    return 2 * b * h * queries * key_shape[-2] * (e + value_shape[-1])


def flops_all(model: torch.nn.Module, imgsz: int) -> float:
    """GFLOPs of one forward, every matrix product included (2 FLOPs per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, imgsz, imgsz))
    return counter.get_total_flops() / 1e9


def onnx_session(model: torch.nn.Module, cfg: str, imgsz: int, folder: Path) -> ort.InferenceSession:
    """A static ONNX export of the model through Ultralytics' exporter, opened in ONNX Runtime."""
    pt = folder / f"{Path(cfg).stem}-{imgsz}.pt"
    yolo = YOLO(cfg)  # carries the task; its model is replaced by the one being timed
    yolo.model = model
    yolo.save(pt)
    return ort_session(keeping_threads(YOLO(str(pt)).export)(format="onnx", imgsz=imgsz, simplify=True, verbose=False))


def ort_session(onnx_file: str | Path, threads: int = 0) -> ort.InferenceSession:
    """An ONNX Runtime CPU session whose threads do not spin between runs, on `threads` threads (0: one per core)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Without this each session's threads spin for a while after a run, taking the cores from the next model timed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])


def keeping_threads(export: Callable[..., Any]) -> Callable[..., Any]:
    """`export`, restoring torch's thread count after it: Ultralytics' device selection sets cores - 1, which
    would slow every later PyTorch timing."""

    def run(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        try:
            return export(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def time_rounds(runners: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median milliseconds per call of each runner, called in alternation `repeat` times after a warm-up."""
    for run in runners.values():
        run(), run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def compare_models(args: argparse.Namespace, folder: Path) -> None:
    """The default table: plain YOLO11n against the BRA placements, untrained, per task and size."""
    print("| task | imgsz | model | params (M) | GFLOPs | PyTorch ms | x plain | ONNX Runtime ms | x plain |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task in args.tasks:
        for imgsz in args.sizes:
            names = ["plain", *args.variants]
            models = {n: build(task, n) for n in names}
            x = torch.rand(1, 3, imgsz, imgsz)

            with torch.no_grad():
                pt_ms = time_rounds({n: partial(m, x) for n, m in models.items()}, args.repeat)
            ort_ms = {}
            if not args.no_onnx:
                sessions = {n: onnx_session(m, config(task, n), imgsz, folder) for n, m in models.items()}
                runs = {n: partial(s.run, None, {s.get_inputs()[0].name: x.numpy()}) for n, s in sessions.items()}
                ort_ms = time_rounds(runs, args.repeat)
            for n, m in models.items():
                label = "YOLO11n" if n == "plain" else f"BRA-YOLO11n ({LABELS[n]})"
                params = sum(p.numel() for p in m.parameters()) / 1e6
                ort_cells = f"{ort_ms[n]:.1f} | {ort_ms[n] / ort_ms['plain']:.2f}x" if ort_ms else "- | -"
                print(f"| {task} | {imgsz} | {label} | {params:.2f} | {flops_all(m, imgsz):.2f} | "
                      f"{pt_ms[n]:.1f} | {pt_ms[n] / pt_ms['plain']:.2f}x | {ort_cells} |")  # fmt: skip


def compare_runtimes(args: argparse.Namespace, folder: Path) -> None:
    """One checkpoint in every runtime, timed in alternation; precision = what float layers computed in."""
    import openvino as ov

    cpu = openvino_cpu()
    print(f"openvino {ov.__version__}; CPU {cpu.device}: OpenVINO capabilities {', '.join(cpu.capabilities)}; "
          f"INT8 / BF16 / FP16 instructions: {', '.join(cpu.features) or 'none'} (of {', '.join(ISA_FEATURES)}); "
          f"OpenVINO's default float precision here: {cpu.default}")  # fmt: skip
    weights = Path(args.weights)
    model = YOLO(str(weights)).model.fuse(verbose=False).eval()
    print("| imgsz | runtime | precision | ms | x PyTorch |")
    print("| ---: | --- | --- | ---: | ---: |")
    for imgsz in args.sizes:
        x = torch.rand(1, 3, imgsz, imgsz)
        runners: dict[str, Callable[[], object]] = {"PyTorch": partial(model, x)}
        precisions = {"PyTorch": "f32"}
        skipped = {}
        onnx_file = keeping_threads(export_onnx)(weights, imgsz, out=folder / f"{weights.stem}-{imgsz}.onnx")
        session = ort_session(onnx_file, args.threads)
        runners["ONNX Runtime"] = partial(session.run, None, {session.get_inputs()[0].name: x.numpy()})
        precisions["ONNX Runtime"] = "f32"
        fp32 = keeping_threads(export_openvino)(weights, imgsz, out=folder / f"fp32-{imgsz}_openvino_model")
        for hint in ("f32", "bf16", "f16"):
            label = f"OpenVINO FP32 export, {hint} hint"
            if not cpu.supports(hint):
                skipped[label] = f"not run: no {hint} in OpenVINO's capabilities on this CPU"
                continue
            compiled = compile_openvino(fp32, hint, args.threads)
            runners[label] = partial(compiled, x.numpy())
            precisions[label] = compiled_precision(compiled)
        if args.data:
            int8 = keeping_threads(export_openvino)(
                weights, imgsz, "int8", data=args.data, out=folder / f"int8-{imgsz}_openvino_model",
                calibration_images=args.calibration_images,
            )  # fmt: skip
            compiled = compile_openvino(int8, "f32", args.threads)
            runners["OpenVINO INT8 export, f32 hint"] = partial(compiled, x.numpy())
            precisions["OpenVINO INT8 export, f32 hint"] = f"int8 (other layers {compiled_precision(compiled)})"
        else:
            skipped["OpenVINO INT8 export"] = "not run: no --data to calibrate on"
        with torch.no_grad():
            ms = time_rounds(runners, args.repeat)
        for label, t in ms.items():
            print(f"| {imgsz} | {label} | {precisions[label]} | {t:.1f} | {t / ms['PyTorch']:.2f}x |")
        for label, reason in skipped.items():
            print(f"| {imgsz} | {label} | {reason} | - | - |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--tasks", nargs="+", default=["detect", "segment"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-onnx", action="store_true", help="PyTorch only")
    parser.add_argument("--weights", help="time this checkpoint in every runtime instead of comparing models")
    parser.add_argument("--data", help="with --weights: dataset YAML whose train images calibrate the INT8 export")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES)
    parser.add_argument(
        "--threads", type=int, default=0, help="with --weights: threads for every runtime (default: each its own)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime {ort.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        (compare_runtimes if args.weights else compare_models)(args, Path(tmp))


if __name__ == "__main__":
    main()
