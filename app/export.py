"""ONNX and OpenVINO exports of trained checkpoints through Ultralytics' exporter, their checks, and parity
against PyTorch.

An OpenVINO export is a folder, `<stem>_openvino_model/`: the graph `<stem>.xml`, its weights `<stem>.bin` and
Ultralytics' `metadata.yaml`. OpenVINO's CPU plugin computes float layers in BF16 by default on CPUs with AMX or
AVX512-BF16, even for an FP32 export, so everything here compiles with an explicit inference precision and can
report the one the plugin actually chose (`compiled_precision`).

The engine's runtimes (`auto`, `onnx`, `openvino` on a `.pt`) run exports made here on first use and kept in a cache
(`cached_export`): `<format>-cache/<checkpoint SHA-256>-<height>x<width>/` under `.runtime/`, each checked against
PyTorch before it is used.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import yaml
from ultralytics import YOLO
from ultralytics.nn.modules import Detect
from ultralytics.utils import LOGGER

from .data import list_images, load_dataset_yaml, unique_photos, write_resolved_yaml
from .errors import DatasetError, ModelExportError
from .files import atomic_write, read_yaml_mapping
from .runtime import RUNTIME_DIR

if TYPE_CHECKING:
    import openvino as ov
    from ultralytics.engine.predictor import BasePredictor

    from .engine import ModelDefaults

Precision = Literal["fp32", "fp16", "int8"]
"""What an OpenVINO export stores: FP32 weights; FP16 weights (half the file, computed in the inference precision
like FP32 ones); or INT8 weights and activations, quantised by NNCF with the detection head kept in float."""

ExportFormat = Literal["onnx", "openvino"]
"""What `cached_export` makes from a checkpoint for the engine's `onnx` and `openvino` runtimes."""

Hint = Literal["f32", "bf16", "f16"]
"""OpenVINO's INFERENCE_PRECISION_HINT: the type float layers compute in (the plugin falls back to f32 where the
CPU lacks the type)."""

MAX_METADATA_BYTES = 2**20  # Ultralytics writes ~0.5 kB
MAX_DEFAULTS_CHARS = 65536  # an ONNX export's `defaults` entry: some 300 characters for two classes, 4,000 for 80
MAX_XML_BYTES = 16 * 2**20  # the graph: ~0.5 MB for BRA-YOLO11n
MAX_BIN_BYTES = 200 * 2**20  # the weights; also the limit on checkpoints (engine.MAX_CHECKPOINT_BYTES)
CALIBRATION_IMAGES = 300  # NNCF's own default calibration subset
ISA_FEATURES = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16")
"""The CPU instructions that make OpenVINO's INT8 (VNNI, AMX-INT8) and BF16 / FP16 (AVX512-BF16, AMX) fast."""
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")
"""Those that make INT8 faster than FP32 (without them it is not: docs/performance-openvino.txt)."""
PARITY_TOLERANCE = 1e-3  # FP32 ONNX Runtime / OpenVINO against PyTorch, raw outputs (pixels and scores)
EXPORT_MAP50_LOSS = 0.01  # an INT8 / FP16 export may lose at most this much mAP50 on any checked val split
CACHE_ROOT = RUNTIME_DIR
"""Where `cached_export` keeps its `<format>-cache/` folders."""
CACHE_ENTRIES = 32
"""Exports kept per format, the most recently used; a folder of photos of many shapes needs one per input canvas."""
_MARKER = "export.json"  # written into a cache entry last: the files it lists and their SHA-256, the parity
_STALE_S = 3600.0  # a hidden (building or discarded) cache folder this old was left by a killed process

_QUANTIZE = {"fp32": None, "fp16": 16, "int8": 8}  # Ultralytics' `quantize` export argument per precision


@dataclass(frozen=True)
class AccuracyCheck:
    """An export scored beside its source checkpoint by `python -m app export` (INT8, FP16), kept in the export's
    `metadata.yaml` under `accuracy_check`: what lets the engine's `auto` runtime choose it."""

    source_sha256: str  # the checkpoint it was exported from and scored against
    map50_loss: float  # the largest mAP50 lost against that checkpoint over `data` (negative: gained)
    data: tuple[str, ...]  # the dataset YAMLs whose val split was scored

    @property
    def passed(self) -> bool:
        return self.map50_loss <= EXPORT_MAP50_LOSS


@dataclass(frozen=True)
class ExportInfo:
    """What an export declares: its task, class names, input size (None where dynamic), stored precision, the
    accuracy check recorded in it, if any, and the calibrated defaults of its checkpoint (the checkpoint's
    `defaults` entry as stored, for the engine to validate; None where it had none)."""

    task: str
    names: dict[int, str]
    input_hw: tuple[int, int] | None
    precision: Precision = "fp32"
    check: AccuracyCheck | None = None
    defaults: dict | None = None


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

    @property
    def fast_int8(self) -> bool:
        """Whether the CPU has the instructions that make INT8 faster than FP32."""
        return any(f in self.features for f in INT8_FEATURES)


def export_onnx(
    weights: str | Path,
    imgsz: int | tuple[int, int] = 640,
    dynamic: bool = False,
    out: Path | None = None,
    model: YOLO | None = None,
) -> Path:
    """Export a detect or segment checkpoint to ONNX (simplified, opset chosen by Ultralytics) and return its path.

    Static exports run at `imgsz` (a square, or height and width) only; dynamic ones take any batch and any size
    (multiple of 32). `model`, if given, is `weights` already loaded (the exporter works on a copy of it).
    """
    import onnx  # imported here, as in read_onnx_info

    weights = Path(weights)
    size = list(imgsz) if isinstance(imgsz, tuple) else imgsz
    try:
        model = model or YOLO(str(weights))
        _with_portable_metadata(model)
        exported = Path(model.export(format="onnx", imgsz=size, dynamic=dynamic, simplify=True))
    except Exception as e:  # the exporter raises many types (tracing, ONNX checker, missing packages)
        raise ModelExportError(f"{weights.name}: ONNX export failed: {type(e).__name__}: {e}") from e
    defaults = checkpoint_defaults(model, weights)
    if defaults is not None:  # beside Ultralytics' metadata, which has no place for them
        graph = onnx.load(str(exported))
        graph.metadata_props.add(key="defaults", value=json.dumps(defaults))
        onnx.save(graph, str(exported))
    if out is not None and exported.resolve() != Path(out).resolve():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
        exported = Path(out)
    return exported


def export_openvino(
    weights: str | Path,
    imgsz: int | tuple[int, int] = 640,
    precision: Precision = "fp32",
    data: str | Path | None = None,
    out: str | Path | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
) -> Path:
    """Export a detect or segment checkpoint to an OpenVINO folder (static input of `imgsz`, a square or height and
    width; batch 1) and return its path.

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
    out = Path(out) if out is not None else openvino_export_path(weights, precision)
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
            model = YOLO(str(source))
            _with_portable_metadata(model)
            exported = model.export(
                format="openvino",
                imgsz=list(imgsz) if isinstance(imgsz, tuple) else imgsz,
                quantize=_QUANTIZE[precision],
                **calibration,
            )
        except Exception as e:  # the exporter raises many types (tracing, conversion, NNCF)
            raise ModelExportError(
                f"{weights.name}: OpenVINO {precision} export failed: {type(e).__name__}: {e}"
            ) from e
        defaults = checkpoint_defaults(model, weights)
        if defaults is not None:
            _update_metadata(Path(exported), {"defaults": defaults})
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    return out


def _with_portable_metadata(model: YOLO) -> None:
    """Have `model`'s exports name their dataset YAMLs by file name only (an Ultralytics exporter callback)."""
    if _portable_metadata not in model.callbacks["on_export_start"]:
        model.add_callback("on_export_start", _portable_metadata)


def _portable_metadata(exporter: Any) -> None:
    """Ultralytics' export metadata names the training and calibration YAMLs by their absolute paths on the machine
    that resolved them (`.runtime/data/...`, a temporary folder): a shipped export would carry those paths."""
    meta = exporter.metadata
    trained_on = exporter.model.args.get("data") if isinstance(getattr(exporter.model, "args", None), dict) else None
    if trained_on:
        meta["description"] = str(meta["description"]).replace(str(trained_on), Path(str(trained_on)).name)
    args = meta.get("args") or {}
    if args.get("data"):
        args["data"] = Path(str(args["data"])).name


def checkpoint_defaults(model: YOLO, weights: Path) -> dict | None:
    """A loaded checkpoint's calibrated defaults (`python -m app calibrate`), checked and reduced to their known keys,
    which its exports carry in their metadata so that they run as the checkpoint does (what was measured named as
    the checkpoint's); None where it has none."""
    from .engine import ModelDefaults  # here: the engine imports this module

    ckpt = getattr(model, "ckpt", None)
    stored = ModelDefaults.of(ckpt.get("defaults") if isinstance(ckpt, dict) else None, None)
    return exported_defaults(stored, weights) if stored.calibrated else None


def exported_defaults(defaults: ModelDefaults, weights: Path) -> dict:
    """A checkpoint's defaults as its exports store them: what was measured is named as the checkpoint's."""
    stored = defaults.as_dict()
    if "measured" in stored:
        stored["measured"]["exported_from"] = weights.name
        if len(json.dumps(stored)) > MAX_DEFAULTS_CHARS:  # thousands of classes measured: the settings still travel
            del stored["measured"]
    return stored


def _mapping(value: object) -> dict | None:
    return value if isinstance(value, dict) else None


def openvino_export_path(weights: str | Path, precision: Precision = "fp32") -> Path:
    """Where `export_openvino` puts an export by default: `<stem>_openvino_model` (`<stem>_fp16_openvino_model`,
    `<stem>_int8_openvino_model`) beside the weights."""
    weights = Path(weights)
    tag = "" if precision == "fp32" else f"_{precision}"
    return weights.parent / f"{weights.stem}{tag}_openvino_model"


def record_check(folder: str | Path, check: AccuracyCheck, defaults: dict | None = None) -> None:
    """Keep an accuracy check in an OpenVINO export's `metadata.yaml` (replacing an earlier one), with its
    checkpoint's new `defaults` where given."""
    entries = {"accuracy_check": {"source_sha256": check.source_sha256, "map50_loss": round(check.map50_loss, 4),
                                  "data": list(check.data)}}  # fmt: skip
    _update_metadata(Path(folder), entries | ({"defaults": defaults} if defaults is not None else {}))


def relink_checked_exports(weights: Path, old_sha256: str, new_sha256: str, defaults: ModelDefaults) -> list[Path]:
    """After `calibrate` rewrote a checkpoint's defaults (not a weight changed): the checked INT8 / FP16 exports
    beside it that were made from it take its new defaults and name its new SHA-256 (what lets `auto` choose a
    checked INT8 export); returns those folders. An export of another file (another SHA-256) is left as it is."""
    relinked = []
    for precision in ("int8", "fp16"):
        folder = openvino_export_path(weights, precision)
        try:
            check = read_openvino_info(folder).check if folder.is_dir() else None
        except ModelExportError:
            continue  # unreadable: `auto` does not use it either
        if check is not None and check.source_sha256 == old_sha256:
            record_check(folder, replace(check, source_sha256=new_sha256), exported_defaults(defaults, weights))
            relinked.append(folder)
    return relinked


def _update_metadata(folder: Path, entries: dict) -> None:
    """Set entries of an OpenVINO export's `metadata.yaml` in one write, replacing earlier ones."""
    path = folder / "metadata.yaml"
    meta = read_yaml_mapping(path, ModelExportError, f"{folder.name}/metadata.yaml")
    meta.update(entries)
    atomic_write(path, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).encode())


def checked_int8(weights: str | Path, sha256: str, imgsz: int) -> Path | None:
    """The INT8 export beside a checkpoint (`openvino_export_path`) if it was made from this very checkpoint (its
    SHA-256), takes `imgsz` and passed its accuracy check; else None (also where it is unreadable: it is optional).
    """
    folder = openvino_export_path(weights, "int8")
    if not folder.is_dir():
        return None
    try:
        info = read_openvino_info(folder)
    except ModelExportError:
        return None
    check = info.check
    usable = info.precision == "int8" and info.input_hw == (imgsz, imgsz)
    return folder if usable and check is not None and check.source_sha256 == sha256 and check.passed else None


def cached_export(weights: str | Path, sha256: str, fmt: ExportFormat, canvas: tuple[int, int]) -> Path:
    """The FP32 `fmt` export of a checkpoint for a static input `canvas` (height, width), made on first use and kept
    in `CACHE_ROOT/<fmt>-cache/<sha256>-<height>x<width>/`; returns the export (a `.onnx` file or an OpenVINO folder).

    An export is used only when its raw outputs match PyTorch's within `PARITY_TOLERANCE` (OpenVINO compiled in f32).
    It is built in a hidden folder beside the entry and renamed into place whole, so concurrent processes never see
    half of one (the first to finish wins; the others use its result), and an entry whose files no longer match their
    recorded SHA-256 (damaged, half-deleted) is built again. A changed checkpoint has a new SHA-256, so a new entry;
    the least recently used beyond `CACHE_ENTRIES` are deleted.

    Raises:
        ModelExportError: The export failed or does not match PyTorch.
    """
    weights = Path(weights)
    root = CACHE_ROOT / f"{fmt}-cache"
    entry = root / f"{sha256}-{canvas[0]}x{canvas[1]}"
    found = _cache_hit(entry, fmt)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".building-", dir=root) as tmp:
        source = Path(tmp) / "model.pt"  # the exporters write beside their source: never beside the user's weights
        shutil.copyfile(weights, source)
        building = Path(tmp) / entry.name
        model = _cache_model(building, fmt)
        with quiet_ultralytics():  # a console or monitor compiling its model is not news: only problems are
            if fmt == "openvino":
                export_openvino(source, canvas, out=model)
                diff = openvino_parity(source, model)
            else:
                export_onnx(source, canvas, out=model)
                diff = onnx_parity(source, model, [(1, 3, *canvas)])
        if diff > PARITY_TOLERANCE:
            raise ModelExportError(
                f"{weights.name}: its {fmt} export for {canvas[0]}x{canvas[1]} differs from PyTorch by {diff:.1e} "
                f"(limit {PARITY_TOLERANCE:g}); not used"
            )
        files = {str(p.relative_to(building)): file_sha256(p) for p in sorted(building.rglob("*")) if p.is_file()}
        (building / _MARKER).write_text(json.dumps({"files": files, "parity": diff}), encoding="utf-8")
        _publish(building, entry, fmt)
    _evict(root)
    return _cache_model(entry, fmt)


@contextlib.contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """Ultralytics logs a dozen lines per export and two per loaded export, and torch's tracer warns that it is
    deprecated: a console or monitor compiling its model is not news, so keep warnings and errors only."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            yield
    finally:
        LOGGER.setLevel(level)


def _cache_model(entry: Path, fmt: ExportFormat) -> Path:
    """The export inside a cache entry."""
    return entry / ("model_openvino_model" if fmt == "openvino" else "model.onnx")


def _cache_hit(entry: Path, fmt: ExportFormat) -> Path | None:
    """The export of a sound cache entry (every file as recorded, the export's own checks passed), marked as just
    used; None where there is none or it is damaged."""
    try:
        recorded = json.loads((entry / _MARKER).read_text(encoding="utf-8"))["files"]
        present = {str(p.relative_to(entry)) for p in entry.rglob("*") if p.is_file() and p.name != _MARKER}
        if set(recorded) != present or any(file_sha256(entry / name) != recorded[name] for name in present):
            return None
        model = _cache_model(entry, fmt)
        (read_openvino_info if fmt == "openvino" else read_onnx_info)(model)
        os.utime(entry / _MARKER)  # last use: eviction keeps what is used
    except (OSError, ValueError, KeyError, TypeError, ModelExportError):
        return None
    return model


def _publish(building: Path, entry: Path, fmt: ExportFormat) -> None:
    """Rename a finished entry into place. Where another process was first with a sound one, it is kept (ours is
    dropped with its temporary folder); a damaged one is moved aside first."""
    for _ in range(3):
        try:
            building.rename(entry)  # atomic; refused while `entry` exists and is not empty
            return
        except OSError:
            if _cache_hit(entry, fmt) is not None:
                return
            _discard(entry)
    raise ModelExportError(f"cannot write the export cache entry {entry}")


def _discard(path: Path) -> None:
    """Delete a cache folder: first renamed to a hidden name, so no reader finds half of it."""
    hidden = path.with_name(f".discard-{os.getpid()}-{time.monotonic_ns()}")
    try:
        path.rename(hidden)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(hidden, ignore_errors=True)


def _evict(root: Path) -> None:
    """Keep the `CACHE_ENTRIES` most recently used entries, and remove hidden folders left by killed processes."""
    entries, now = [], time.time()
    for path in root.iterdir():
        try:
            if path.name.startswith("."):
                if now - path.stat().st_mtime > _STALE_S:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            marker = path / _MARKER
            entries.append((marker.stat().st_mtime if marker.exists() else 0.0, path))
        except FileNotFoundError:  # removed meanwhile by another process
            continue
    for _, path in sorted(entries, reverse=True)[CACHE_ENTRIES:]:
        _discard(path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    stored = meta.get("defaults", "")
    try:
        defaults = json.loads(stored) if 0 < len(stored) <= MAX_DEFAULTS_CHARS else None
    except (ValueError, RecursionError):
        defaults = None  # unreadable or oversized: the engine falls back as for a model without them
    return ExportInfo(meta["task"], names, (h, w) if h and w else None, defaults=_mapping(defaults))


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


def predictor_precision(model: YOLO) -> str:
    """The precision an OpenVINO model run by Ultralytics computes in, read from the plugin once it has predicted
    (and so compiled): `f32` where `openvino_precision_callback("f32")` pinned it."""
    return compiled_precision(model.predictor.model.backend.ov_compiled_model)


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
    return ExportInfo(task, names, None if args.get("dynamic") else (imgsz[0], imgsz[1]), precision or "fp32",
                      _read_check(meta.get("accuracy_check")), _mapping(meta.get("defaults")))  # fmt: skip


def _read_check(stored: object) -> AccuracyCheck | None:
    """A recorded accuracy check, or None where there is none or it is malformed (not trusted, not an error)."""
    if not isinstance(stored, dict):
        return None
    sha, loss, data = stored.get("source_sha256"), stored.get("map50_loss"), stored.get("data")
    if not (isinstance(sha, str) and len(sha) == 64 and type(loss) in (int, float) and isinstance(data, list)):
        return None
    return AccuracyCheck(sha, float(loss), tuple(map(str, data)))


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
