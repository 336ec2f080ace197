"""ONNX export of trained checkpoints through Ultralytics' exporter, and a parity check against PyTorch."""

from __future__ import annotations

import ast
import copy
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ultralytics import YOLO
from ultralytics.nn.modules import Detect

from .errors import ModelExportError


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported file declares: its task, class names and input size (None where dynamic)."""

    task: str
    names: dict[int, str]
    input_hw: tuple[int, int] | None


def export_onnx(
    weights: str | Path, imgsz: int = 640, dynamic: bool = False, out: Path | None = None, model: YOLO | None = None
) -> Path:
    """Export a detect or segment checkpoint to ONNX (simplified, opset chosen by Ultralytics) and return its path.

    Static exports run at `imgsz` only; dynamic ones take any batch and any size (multiple of 32). `model`, if
    given, is `weights` already loaded (the exporter works on a copy of it).
    """
    weights = Path(weights)
    try:
        model = model or YOLO(str(weights))
        exported = Path(model.export(format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=True))
    except Exception as e:  # the exporter raises many types (tracing, ONNX checker, missing packages)
        raise ModelExportError(f"{weights.name}: ONNX export failed: {type(e).__name__}: {e}") from e
    if out is not None and exported.resolve() != Path(out).resolve():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
        exported = Path(out)
    return exported


def read_onnx_info(path: str | Path) -> OnnxInfo:
    """Read the metadata Ultralytics writes into an export (protobuf only: nothing is executed).

    Raises:
        ModelExportError: The file is not an ONNX model with Ultralytics' metadata.
    """
    import onnx  # imported here: the engine imports this module, and only .onnx models need onnx (~0.4 s)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelExportError(f"{Path(path).name}: not an ONNX model ({type(e).__name__})") from e
    meta = {p.key: p.value for p in model.metadata_props}
    if "task" not in meta or "names" not in meta:
        raise ModelExportError(f"{Path(path).name}: an ONNX model without Ultralytics' task / names metadata")
    names = _parse_names(meta["names"])
    dims = model.graph.input[0].type.tensor_type.shape.dim
    h, w = (d.dim_value if d.HasField("dim_value") else None for d in dims[2:4])
    return OnnxInfo(meta["task"], names, (h, w) if h and w else None)


def onnx_parity(
    weights: str | Path | YOLO, onnx_file: str | Path, shapes: Sequence[tuple[int, int, int, int]]
) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime raw outputs over random inputs of `shapes`.

    `weights` is a checkpoint path or a loaded `YOLO`; a loaded one is left as it was (a copy is switched to
    export mode).
    """
    import onnxruntime as ort  # imported here: only export checks and ONNX inference need it

    yolo = weights if isinstance(weights, YOLO) else YOLO(str(weights))
    model = copy.deepcopy(yolo.model).float().eval()
    for m in model.modules():
        if isinstance(m, Detect):  # Ultralytics' export switch: outputs exactly as exported (Segment: + protos)
            m.export, m.format = True, "onnx"
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = _flatten(model(x))
        got = session.run(None, {name: x.numpy()})
        if len(expected) != len(got):
            raise ModelExportError(f"ONNX gives {len(got)} outputs, PyTorch {len(expected)}")
        for ref, out in zip(expected, got, strict=True):
            if ref.shape != out.shape:
                raise ModelExportError(f"output shape {out.shape} differs from PyTorch's {ref.shape} at input {shape}")
            worst = max(worst, float(np.abs(ref - out).max()))
    return worst


def _flatten(outputs: torch.Tensor | tuple) -> list[np.ndarray]:
    """The export-mode outputs in order: predictions, then (segment models) mask prototypes."""
    return [outputs.numpy()] if isinstance(outputs, torch.Tensor) else [o.numpy() for o in outputs]


def _parse_names(text: str) -> dict[int, str]:
    """Ultralytics stores names as a Python dict literal; parse it without eval."""
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ModelExportError(f"unreadable class names in ONNX metadata: {text[:80]!r}") from e
    return {int(k): str(v) for k, v in dict(names).items()}
