"""Neural-network layers of the BRA-YOLO11 model family and their registration with Ultralytics."""

from .bra import BiLevelRoutingAttention
from .registry import register_modules

__all__ = ["BiLevelRoutingAttention", "register_modules"]
