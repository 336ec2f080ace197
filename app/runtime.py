"""Process-wide settings that keep the project offline and its state inside the project folder.

Ultralytics reads its environment when it is first imported, so `configure()` runs from `app/__init__.py`
before anything imports Ultralytics. Values a user has already exported are respected.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The project root: `app/`, `models/`, `datasets/`, `exports/` live here."""

RUNTIME_DIR = ROOT / ".runtime"
"""Writable state that is not source: Ultralytics settings and fonts, matplotlib cache, Gradio uploads."""

RUNS_DIR = ROOT / "runs"
"""Training and validation runs, as Ultralytics lays them out (`runs/<task>/<name>/`)."""

EXPORTS_DIR = ROOT / "exports"
"""Results, records and workbooks written for users."""

WEIGHTS_DIR = ROOT / "models" / "weights"
"""Shipped and trained checkpoints offered by the CLI and the console."""

SHARED_DATA = ROOT.parent / "shared" / "data"
"""The real data shared beside the checkout (../shared/data/README.md): read where it lies, never copied in."""

DESK_CLIP = SHARED_DATA / "videos" / "hand_desk.mp4"
"""The real clip the benchmarks and tests measure: one bare hand over a desk, 12.6 s, 720x720, no gloves."""

DEFAULT_WEIGHTS = WEIGHTS_DIR / "gloves-n.pt"
"""The default detector: the shipped model that scores best on real scenes (`gloves-scenes/valid`; models/README.md)."""

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # Ultralytics: no online checks, no hub, no analytics
    "YOLO_AUTOINSTALL": "False",  # never pip-install a "missing" requirement at run time
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    # Checkpoints are pickles, and a pickle can run code: load them with torch's weights_only unpickler and an
    # allow-list of model classes (Ultralytics' own, plus ours, registered in app.nn.registry).
    "ULTRALYTICS_SAFE_LOAD": "1",
}


def configure() -> None:
    """Set the offline environment and project-local config folders, and give Ultralytics a local font.

    Ultralytics downloads Arial.ttf / Arial.Unicode.ttf into its config folder when it plots labels or checks a
    dataset; matplotlib ships DejaVu Sans, which covers Latin, Greek and Cyrillic, so it stands in for both.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # OpenVINO's converter and NNCF send usage statistics to Google Analytics unless a consent file in ~/intel says
    # no (creating a client id there on first use); both fall back to a no-op when `openvino_telemetry` cannot be
    # imported, and openvino imports it with itself: blocked here, before anything imports openvino.
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(RUNTIME_DIR / "ultralytics"))
    os.environ.setdefault("MPLCONFIGDIR", str(RUNTIME_DIR / "matplotlib"))
    os.environ.setdefault("GRADIO_TEMP_DIR", str(RUNTIME_DIR / "gradio"))
    _install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")


def _install_fonts(font_dir: Path) -> None:
    """Copy matplotlib's DejaVu Sans to the names Ultralytics looks for, once."""
    wanted = [font_dir / "Arial.ttf", font_dir / "Arial.Unicode.ttf"]
    if all(f.exists() for f in wanted):
        return
    import matplotlib  # only on the first run in a fresh checkout

    from .files import atomic_path  # no Ultralytics behind it: safe before `configure` is done

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    font_dir.mkdir(parents=True, exist_ok=True)
    for target in wanted:
        if not target.exists():
            with atomic_path(target) as tmp:  # a concurrent process never sees half a font
                shutil.copyfile(source, tmp)
