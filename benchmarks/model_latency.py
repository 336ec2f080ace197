"""Latency, parameters and GFLOPs of BRA-YOLO11n against plain YOLO11n, detect and segment, PyTorch and ONNX Runtime.

    .venv/bin/python benchmarks/model_latency.py [--sizes 640 320] [--repeat 20] [--variants default p345]

Each model is built from its YAML (untrained: latency does not depend on the weights) with the same number of
classes, fused as for inference, and timed on a batch-1 input: the network forward only, without pre- or
post-processing. Models of one task and size are timed in alternation, round after round, so a drift in machine
speed does not favour either; the median is reported. ONNX Runtime times a static export of the same model.

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

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

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
    threads = torch.get_num_threads()
    onnx_file = YOLO(str(pt)).export(format="onnx", imgsz=imgsz, simplify=True, verbose=False)
    torch.set_num_threads(threads)  # Ultralytics' device selection sets cores - 1, which would slow later timings
    options = ort.SessionOptions()
    # Without this each session's threads spin for a while after a run, taking the cores from the next model timed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--tasks", nargs="+", default=["detect", "segment"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-onnx", action="store_true", help="PyTorch only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime {ort.__version__}")
    print("| task | imgsz | model | params (M) | GFLOPs | PyTorch ms | x plain | ONNX Runtime ms | x plain |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for imgsz in args.sizes:
                names = ["plain", *args.variants]
                models = {n: build(task, n) for n in names}
                x = torch.rand(1, 3, imgsz, imgsz)

                with torch.no_grad():
                    pt_ms = time_rounds({n: partial(m, x) for n, m in models.items()}, args.repeat)
                ort_ms = {}
                if not args.no_onnx:
                    sessions = {n: onnx_session(m, config(task, n), imgsz, Path(tmp)) for n, m in models.items()}
                    runs = {n: partial(s.run, None, {s.get_inputs()[0].name: x.numpy()}) for n, s in sessions.items()}
                    ort_ms = time_rounds(runs, args.repeat)
                for n, m in models.items():
                    label = "YOLO11n" if n == "plain" else f"BRA-YOLO11n ({LABELS[n]})"
                    params = sum(p.numel() for p in m.parameters()) / 1e6
                    ort_cells = f"{ort_ms[n]:.1f} | {ort_ms[n] / ort_ms['plain']:.2f}x" if ort_ms else "- | -"
                    print(f"| {task} | {imgsz} | {label} | {params:.2f} | {flops_all(m, imgsz):.2f} | "
                          f"{pt_ms[n]:.1f} | {pt_ms[n] / pt_ms['plain']:.2f}x | {ort_cells} |")  # fmt: skip


if __name__ == "__main__":
    main()
