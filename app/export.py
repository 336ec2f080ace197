"""ONNX and OpenVINO exports of trained checkpoints through Ultralytics' exporter, their checks, and parity
against PyTorch.

An OpenVINO export is a folder, `<stem>_openvino_model/`: the graph `<stem>.xml`, its weights `<stem>.bin` and
Ultralytics' `metadata.yaml`. OpenVINO's CPU plugin computes float layers in BF16 by default on CPUs with AMX or
AVX512-BF16, even for an FP32 export, so everything here compiles with an explicit inference precision and can
report the one the plugin actually chose (`compiled_precision`).
"""

from __future__ import annotations

import ast
import copy
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from ultralytics import YOLO
from ultralytics.nn.modules import Detect

from .data import list_images, load_dataset_yaml, unique_photos, write_resolved_yaml
from .errors import DatasetError, ModelExportError
from .files import read_yaml_mapping

if TYPE_CHECKING:
    import openvino as ov
    from ultralytics.engine.predictor import BasePredictor

Precision = Literal["fp32", "fp16", "int8"]
"""What an OpenVINO export stores: FP32 weights; FP16 weights (half the file, computed in the inference precision
like FP32 ones); or INT8 weights and activations, quantised by NNCF with the detection head kept in float."""

Hint = Literal["f32", "bf16", "f16"]
"""OpenVINO's INFERENCE_PRECISION_HINT: the type float layers compute in (the plugin falls back to f32 where the
CPU lacks the type)."""

MAX_METADATA_BYTES = 2**20  # Ultralytics writes ~0.5 kB
MAX_XML_BYTES = 16 * 2**20  # the graph: ~0.5 MB for BRA-YOLO11n
MAX_BIN_BYTES = 200 * 2**20  # the weights; also the limit on checkpoints (engine.MAX_CHECKPOINT_BYTES)
CALIBRATION_IMAGES = 300  # NNCF's own default calibration subset
ISA_FEATURES = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16")
"""The CPU instructions that make OpenVINO's INT8 (VNNI, AMX-INT8) and BF16 / FP16 (AVX512-BF16, AMX) fast."""

_QUANTIZE = {"fp32": None, "fp16": 16, "int8": 8}  # Ultralytics' `quantize` export argument per precision


@dataclass(frozen=True)
class ExportInfo:
    """What an export declares: its task, class names, input size (None where dynamic) and stored precision."""

    task: str
    names: dict[int, str]
    input_hw: tuple[int, int] | None
    precision: Precision = "fp32"


@dataclass(frozen=True)
class CpuPrecisions:
    """What OpenVINO's CPU plugin can compute in on this machine, and what it uses when not told."""

    device: str  # the CPU's name, as OpenVINO reports it
    default: str  # INFERENCE_PRECISION_HINT when none is set: f32, or bf16 on CPUs with AMX / AVX512-BF16
    capabilities: tuple[str, ...]  # OpenVINO's OPTIMIZATION_CAPABILITIES: FP32, BF16, FP16, INT8, ...
    features: tuple[str, ...]  # those of ISA_FEATURES that the CPU reports (Linux; empty elsewhere)

    def supports(self, hint: Hint) -> bool:
        """Whether float layers can really compute in `hint` here (else the plugin quietly uses f32)."""
        return {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}[hint] in self.capabilities


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


def export_openvino(
    weights: str | Path,
    imgsz: int = 640,
    precision: Precision = "fp32",
    data: str | Path | None = None,
    out: str | Path | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
) -> Path:
    """Export a detect or segment checkpoint to an OpenVINO folder (static input, batch 1) and return its path.

    `int8` is calibrated on `calibration_images` images of the dataset YAML `data`'s train split, spread evenly over
    its sources and photos (its val split stays unseen, for evaluation); only `int8` takes `data`. The folder is
    `out`, else `<stem>_openvino_model` (`<stem>_fp16_...`, `<stem>_int8_...`) beside the weights; an earlier
    export there is replaced, and nothing else is written beside the weights.

    Raises:
        ModelExportError: Bad arguments, `out` is something other than an export, or the exporter failed.
        DatasetError: `data` is unusable or has no train images.
    """
    weights = Path(weights)
    if precision not in _QUANTIZE:
        raise ModelExportError(f"OpenVINO precision must be one of {', '.join(_QUANTIZE)}, got {precision!r}")
    if (precision == "int8") != (data is not None):
        raise ModelExportError("an INT8 export needs a dataset YAML to calibrate on, and only INT8 takes one")
    tag = "" if precision == "fp32" else f"_{precision}"
    out = Path(out) if out is not None else weights.parent / f"{weights.stem}{tag}_openvino_model"
    if out.exists() and not (out / "metadata.yaml").is_file():
        raise ModelExportError(f"{out} exists and is not an OpenVINO export: not replaced")
    with tempfile.TemporaryDirectory() as tmp:
        # Ultralytics writes `<stem>_openvino_model/` beside the checkpoint for FP32 and FP16 alike, so export a
        # copy in a folder of our own: an FP16 export must not overwrite an FP32 one there.
        source = Path(tmp) / weights.name
        shutil.copyfile(weights, source)
        # Ultralytics calibrates on `data`'s `split`: its val split unless told otherwise
        calibration = (
            {"data": str(_calibration_yaml(data, calibration_images, Path(tmp))), "split": "train"}
            if data is not None
            else {}
        )
        try:
            exported = YOLO(str(source)).export(
                format="openvino", imgsz=imgsz, quantize=_QUANTIZE[precision], **calibration
            )
        except Exception as e:  # the exporter raises many types (tracing, conversion, NNCF)
            raise ModelExportError(
                f"{weights.name}: OpenVINO {precision} export failed: {type(e).__name__}: {e}"
            ) from e
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    return out


def _calibration_yaml(data: str | Path, count: int, folder: Path) -> Path:
    """A dataset YAML in `folder` whose train split lists `count` of `data`'s train images, taken evenly over
    every train source (one image per photo: Roboflow's flip / brightness copies would repeat it)."""
    spec = load_dataset_yaml(data)
    images = [
        image for source in spec.splits["train"] if source.exists() for image in unique_photos(list_images(source))
    ]
    if not images:
        raise DatasetError(f"{data}: no train images to calibrate on")
    count = min(count, len(images))
    listing = folder / "calibration.txt"
    listing.write_text("".join(f"{images[i * len(images) // count]}\n" for i in range(count)), encoding="utf-8")
    return write_resolved_yaml(replace(spec, splits={**spec.splits, "train": [listing]}, train_repeat=[1]), folder)


def read_onnx_info(path: str | Path) -> ExportInfo:
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
    return ExportInfo(meta["task"], names, (h, w) if h and w else None)


def read_openvino_info(folder: str | Path) -> ExportInfo:
    """Check an OpenVINO export folder without compiling or running anything, and read what it declares.

    The folder must hold one `<name>.xml` (an OpenVINO IR: root `<net>`, no DTD) and its `<name>.bin`, each under
    its size cap, and Ultralytics' `metadata.yaml` (at most 1 MB, plain YAML) with a detect or segment task, class
    names as a mapping of ids to names, and the input size.

    Raises:
        ModelExportError: Anything missing, oversized or malformed, said in one line.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelExportError(f"{folder.name}: not an OpenVINO export folder")
    info = _read_metadata(folder / "metadata.yaml")
    xmls = sorted(folder.glob("*.xml"))
    if len(xmls) != 1:
        raise ModelExportError(f"{folder.name}: expected one .xml model in the folder, found {len(xmls)}")
    _check_size(xmls[0], MAX_XML_BYTES)
    _check_size(xmls[0].with_suffix(".bin"), MAX_BIN_BYTES)
    _check_ir(xmls[0])
    return info


def compile_openvino(folder: str | Path, hint: Hint | None = "f32", threads: int = 0) -> ov.CompiledModel:
    """Check an OpenVINO export (`read_openvino_info`) and compile it for the CPU, for latency (one stream, as
    Ultralytics does), with float layers in `hint` precision; None leaves the plugin's default (`openvino_cpu`).
    `threads` > 0 caps the threads it runs on (default: one per physical core).

    Raises:
        ModelExportError: The folder fails its checks, or OpenVINO cannot read or compile the model.
    """
    import openvino as ov  # imported here: only OpenVINO exports need it (~0.3 s)

    read_openvino_info(folder)
    xml = next(Path(folder).glob("*.xml"))
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(xml), str(xml.with_suffix(".bin"))), "CPU", config)
    except RuntimeError as e:  # OpenVINO's one exception type for unreadable graphs and failed compiles
        raise ModelExportError(f"{Path(folder).name}: OpenVINO cannot compile it: {str(e).splitlines()[0]}") from e


def compiled_precision(compiled: ov.CompiledModel) -> str:
    """The precision a compiled model's float layers really compute in: `f32`, `bf16` or `f16`."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def openvino_cpu() -> CpuPrecisions:
    """The CPU plugin's default float precision, OpenVINO's optimisation capabilities and the CPU's INT8 / BF16 /
    FP16 instructions (from /proc/cpuinfo, on Linux)."""
    import openvino as ov

    core = ov.Core()
    cpuinfo = Path("/proc/cpuinfo")
    flags = next((line.split(":", 1)[1].split() for line in _lines(cpuinfo) if line.startswith("flags")), [])
    return CpuPrecisions(
        device=core.get_property("CPU", "FULL_DEVICE_NAME"),
        default=core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string(),
        capabilities=tuple(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        features=tuple(f for f in ISA_FEATURES if f in flags),
    )


def openvino_precision_callback(hint: Hint = "f32") -> Callable[[BasePredictor], None]:
    """An Ultralytics `on_predict_start` callback that compiles an OpenVINO model with an explicit inference
    precision, which Ultralytics' backend leaves to the plugin (BF16 on AMX CPUs). Other models are left alone.

    Example:
        >>> model = YOLO("gloves-bra-n_openvino_model", task="detect")
        >>> model.add_callback("on_predict_start", openvino_precision_callback("f32"))
    """
    from ultralytics.nn.backends.openvino import OpenVINOBackend

    def pin(predictor: BasePredictor) -> None:
        backend = getattr(predictor.model, "backend", None)
        if not isinstance(backend, OpenVINOBackend):
            return
        config = backend.compile_model.keywords["config"]
        if config.get("INFERENCE_PRECISION_HINT") == hint:  # compiled so already (the callback runs every call)
            return
        source = Path(predictor.args.model)
        xml = source if source.suffix == ".xml" else next(source.glob("*.xml"))
        # Recompiling through the backend's own `compile_model` keeps its device and latency settings, also for
        # the per-shape recompiles it does itself.
        backend.compile_model = partial(backend.compile_model, config={**config, "INFERENCE_PRECISION_HINT": hint})
        backend.ov_compiled_model = backend.compile_model(str(xml))

    return pin


def onnx_parity(
    weights: str | Path | YOLO, onnx_file: str | Path, shapes: Sequence[tuple[int, int, int, int]]
) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime raw outputs over random inputs of `shapes`.

    `weights` is a checkpoint path or a loaded `YOLO`; a loaded one is left as it was (a copy is switched to
    export mode).
    """
    import onnxruntime as ort  # imported here: only export checks and ONNX inference need it

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _parity(weights, lambda x: session.run(None, {name: x}), shapes, "ONNX")


def openvino_parity(
    weights: str | Path | YOLO,
    folder: str | Path,
    shapes: Sequence[tuple[int, int, int, int]] | None = None,
    hint: Hint = "f32",
) -> float:
    """Largest absolute difference between PyTorch and OpenVINO raw outputs over random inputs of `shapes`
    (default: the export's own input), compiled in `hint` precision: f32 checks the export itself.

    `weights` is a checkpoint path or a loaded `YOLO`, left as it was.
    """
    info = read_openvino_info(folder)
    if shapes is None:
        if info.input_hw is None:
            raise ModelExportError(f"{Path(folder).name}: a dynamic export needs the input shapes to check")
        shapes = [(1, 3, *info.input_hw)]
    compiled = compile_openvino(folder, hint)
    return _parity(weights, lambda x: list(compiled(x).values()), shapes, "OpenVINO")


def _parity(
    weights: str | Path | YOLO,
    run: Callable[[np.ndarray], list[np.ndarray]],
    shapes: Sequence[tuple[int, int, int, int]],
    runtime: str,
) -> float:
    """Largest absolute difference between PyTorch's export-mode outputs and `run`'s, over random inputs."""
    yolo = weights if isinstance(weights, YOLO) else YOLO(str(weights))
    model = copy.deepcopy(yolo.model).float().eval()
    for m in model.modules():
        if isinstance(m, Detect):  # Ultralytics' export switch: outputs exactly as exported (Segment: + protos)
            m.export, m.format = True, "onnx"
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = _flatten(model(x))
        got = run(x.numpy())
        if len(expected) != len(got):
            raise ModelExportError(f"{runtime} gives {len(got)} outputs, PyTorch {len(expected)}")
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


def _read_metadata(path: Path) -> ExportInfo:
    """Ultralytics' metadata.yaml of an export, size-capped, parsed as plain YAML and checked."""
    _check_size(path, MAX_METADATA_BYTES)
    where = f"{path.parent.name}/{path.name}"
    meta = read_yaml_mapping(path, ModelExportError, where)
    task, names, imgsz = meta.get("task"), meta.get("names"), meta.get("imgsz")
    if task not in ("detect", "segment"):
        raise ModelExportError(f"{where}: task must be detect or segment, got {str(task)[:40]!r}")
    if not (
        isinstance(names, dict)
        and names
        and all(type(k) is int and isinstance(v, str) for k, v in names.items())  # type(): bool is an int
    ):
        raise ModelExportError(f"{where}: names must map class ids to names, got {str(names)[:80]!r}")
    if not (isinstance(imgsz, list) and len(imgsz) == 2 and all(type(v) is int and v > 0 for v in imgsz)):
        raise ModelExportError(f"{where}: imgsz must be [height, width], got {str(imgsz)[:40]!r}")
    args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
    precision = {v: k for k, v in _QUANTIZE.items()}.get(args.get("quantize"))
    if precision is None and args.get("quantize") not in (None, 32):
        raise ModelExportError(f"{where}: unknown quantize {str(args.get('quantize'))[:20]!r}")
    return ExportInfo(task, names, None if args.get("dynamic") else (imgsz[0], imgsz[1]), precision or "fp32")


def _check_size(path: Path, limit: int) -> None:
    """Refuse a missing file, or one over `limit` bytes, before reading it."""
    if not path.is_file():
        raise ModelExportError(f"{path.parent.name}/{path.name} is missing")
    size = path.stat().st_size
    if size > limit:
        raise ModelExportError(f"{path.parent.name}/{path.name}: {size:,} bytes is over the {limit:,} byte limit")


def _check_ir(xml: Path) -> None:
    """The graph must be an OpenVINO IR: well-formed XML with a `<net>` root, and no DTD (whose entities could
    expand without bound)."""
    text = xml.read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise ModelExportError(f"{xml.name}: an XML DTD, which OpenVINO never writes; not read")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ModelExportError(f"{xml.name}: not well-formed XML ({e})") from e
    if root.tag != "net" or root.find("layers") is None:
        raise ModelExportError(f"{xml.name}: not an OpenVINO IR (root <{root.tag}>)")


def _lines(path: Path) -> list[str]:
    """A text file's lines, or none where it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
