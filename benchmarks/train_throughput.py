"""Training throughput of BRA-YOLO11n against plain YOLO11n: images per second of one optimisation step.

    .venv/bin/python benchmarks/train_throughput.py [--imgsz 320] [--batch 16] [--steps 5] [--task detect]

One step is Ultralytics' own loss on a batch (two boxes per image), backward, and an SGD step, on the same
random batch for every model. The models take turns step by step, so a drift in machine speed does not favour
either; the median step time is reported. Data loading and augmentation, the same for all models, are left out:
`train.py` adds them on top (on this 2-core CPU they cost roughly as much as a plain YOLO11n step).
"""

from __future__ import annotations

import argparse
import statistics
import time

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

from app.runtime import ROOT

CONFIGS = {
    "plain": "yolo11n{seg}.yaml",
    "default": str(ROOT / "models" / "yolo11n{seg}-bra.yaml"),  # BRA on P4/P5
    "p345": str(ROOT / "models" / "yolo11n{seg}-bra-p345.yaml"),  # the seed placement
}


def batch_for(task: str, n: int, imgsz: int) -> dict[str, torch.Tensor]:
    """Random images with two boxes each (and their masks for segment models), as Ultralytics' loss reads them."""
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.25, 0.2]]).repeat(n, 1)
    batch = {
        "img": torch.rand(n, 3, imgsz, imgsz, generator=g),
        "cls": torch.tensor([[0.0], [1.0]]).repeat(n, 1),
        "bboxes": boxes,
        "batch_idx": torch.arange(n).repeat_interleave(2).float(),
    }
    if task == "segment":
        masks = torch.zeros(n, imgsz // 4, imgsz // 4)
        masks[:, imgsz // 16 : imgsz // 8, imgsz // 16 : imgsz // 8] = 1
        batch["masks"] = masks
    return batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["detect", "segment"], default="detect")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    model_class = SegmentationModel if args.task == "segment" else DetectionModel
    seg = "-seg" if args.task == "segment" else ""
    models = {name: model_class(cfg.format(seg=seg), nc=2, verbose=False).train() for name, cfg in CONFIGS.items()}
    optims = {name: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for name, m in models.items()}
    for m in models.values():
        m.args = get_cfg()  # Ultralytics' default hyperparameters (loss gains), as its trainer sets them
    batch = batch_for(args.task, args.batch, args.imgsz)

    def step(name: str) -> float:
        t = time.perf_counter()
        optims[name].zero_grad()
        loss, _ = models[name].loss(batch)
        loss.sum().backward()
        optims[name].step()
        return time.perf_counter() - t

    for name in models:  # warm-up
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):
        for name in models:
            times[name].append(step(name))
    plain = statistics.median(times["plain"])
    print(f"{args.task}, batch {args.batch} at {args.imgsz}, {torch.get_num_threads()} threads, median of {args.steps}")
    print("| model | s / step | images / s | x plain step time |")
    print("| --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        s = statistics.median(ts)
        label = "YOLO11n" if name == "plain" else f"BRA-YOLO11n ({name})"
        print(f"| {label} | {s:.2f} | {args.batch / s:.1f} | {s / plain:.2f}x |")


if __name__ == "__main__":
    main()
