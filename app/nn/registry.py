"""Make our layers usable in Ultralytics model YAMLs without editing the installed package.

Ultralytics' `parse_model` looks a YAML row's module name up in the namespace of `ultralytics.nn.tasks` and
passes the row's args verbatim to modules it does not know. Our attention layers keep the channel count, so a
row only names the arguments after `dim` (`[-1, 1, BiLevelRoutingAttention, [7, 8]]`), as in the BiFormer YOLO
tutorials. `parse_model` resolves a string argument from its own scope (that is how `nc` reaches `Detect`), and
its local `c2` holds the previous layer's output channels, so each such row gets `"c2"` prepended as `dim`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from ultralytics.nn import tasks

from .bra import BiLevelRoutingAttention, _QKVProjection, _TopkRouter

CHANNEL_PRESERVING_MODULES: tuple[type, ...] = (BiLevelRoutingAttention,)
"""Layers whose first constructor argument is the input channel count, which they also output."""

SAFE_CHECKPOINT_CLASSES: tuple[type, ...] = (BiLevelRoutingAttention, _QKVProjection, _TopkRouter)
"""Our classes a checkpoint may contain: the safe (weights_only) unpickler accepts these and nothing else of ours."""

_PREVIOUS_CHANNELS = "c2"  # parse_model's running "channels out of the previous layer"


def register_modules() -> None:
    """Expose our layers to Ultralytics YAML parsing and to safe checkpoint loading; safe to call more than once."""
    torch.serialization.add_safe_globals(list(SAFE_CHECKPOINT_CLASSES))
    for module in CHANNEL_PRESERVING_MODULES:
        setattr(tasks, module.__name__, module)
    if not getattr(tasks.parse_model, "_app_channel_args", False):
        tasks.parse_model = _with_channel_args(tasks.parse_model)


def _with_channel_args(parse_model: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse_model)
    def wrapper(d: dict, ch: int, verbose: bool = True) -> Any:
        return parse_model(insert_channel_args(d), ch, verbose)

    wrapper._app_channel_args = True
    return wrapper


def insert_channel_args(d: dict) -> dict:
    """Return a copy of a model dict whose rows for our layers start their args with the input channels.

    Raises:
        ValueError: If such a row reads from a layer other than the previous one (`from` must be -1).
    """
    names = {m.__name__ for m in CHANNEL_PRESERVING_MODULES}
    d = copy.deepcopy(d)
    for i, row in enumerate([*(d.get("backbone") or []), *(d.get("head") or [])]):
        f, _, module, args = row
        if module not in names:
            continue
        if f != -1:
            raise ValueError(f"layer {i}: {module} must take the previous layer's output (from = -1), got {f}")
        row[3] = [_PREVIOUS_CHANNELS, *(args or [])]  # rows are shared with d, so this edits the copy
    return d
