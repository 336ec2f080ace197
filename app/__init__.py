"""Glove / hand safety detection: BRA-YOLO11 models, training, inference and the operator console.

Importing `app` keeps Ultralytics offline and project-local (see `app.runtime`) and registers our layers so that
`YOLO("models/yolo11n-bra.yaml")` builds.
"""

from . import runtime

runtime.configure()  # before anything imports Ultralytics: it reads its environment once, at import

from .nn import register_modules  # noqa: E402

register_modules()

__version__ = "0.1.0"
