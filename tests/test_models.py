"""The model YAMLs build through Ultralytics after `import app`, place BRA as designed and run at odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from app.nn import BiLevelRoutingAttention
from app.nn.registry import insert_channel_args
from app.runtime import ROOT

MODELS = {"detect": ROOT / "models/yolo11n-bra.yaml", "segment": ROOT / "models/yolo11n-seg-bra.yaml"}


def _bra_layers(model: torch.nn.Module) -> list[BiLevelRoutingAttention]:
    return [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention)]


@pytest.fixture(scope="module", params=list(MODELS))
def built(request: pytest.FixtureRequest) -> tuple[str, YOLO]:
    return request.param, YOLO(str(MODELS[request.param]))


def test_yaml_builds_with_bra_after_the_p4_and_p5_concats(built: tuple[str, YOLO]) -> None:
    task, yolo = built
    assert yolo.task == task
    layers = yolo.model.model
    bra = [(i, m.dim) for i, m in enumerate(layers) if isinstance(m, BiLevelRoutingAttention)]
    assert bra == [(19, 192), (23, 384)]  # n scale: P4 concat 64+128, P5 concat 128+256 channels; none on P3
    for i, _ in bra:
        assert type(layers[i - 1]).__name__ == "Concat"


@pytest.mark.parametrize("hw", [(320, 320), (480, 640)])
def test_forward_at_input_sizes(built: tuple[str, YOLO], hw: tuple[int, int]) -> None:
    task, yolo = built
    model = yolo.model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *hw))
    preds = out[0]  # eval output is (inference, raw); segment's inference part is (preds, protos)
    if task == "segment":
        preds, protos = preds
        assert protos.shape == (1, 32, hw[0] // 4, hw[1] // 4)
    anchors = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    extra = 32 if task == "segment" else 0  # mask coefficients
    assert preds.shape == (1, 4 + 6 + extra, anchors)
    assert torch.isfinite(preds).all()


def test_predict_on_200x200_image(built: tuple[str, YOLO]) -> None:
    _task, yolo = built
    result = yolo.predict(np.full((200, 200, 3), 127, np.uint8), imgsz=200, verbose=False)[0]
    assert result.orig_shape == (200, 200)
    assert result.boxes is not None


@pytest.mark.parametrize("scale", ["s", "m", "l", "x"])
@pytest.mark.parametrize(("placement", "layers"), [("", 2), ("-p345", 3)])
def test_every_scale_builds(scale: str, placement: str, layers: int) -> None:
    model = DetectionModel(str(ROOT / f"models/yolo11{scale}-bra{placement}.yaml"), verbose=False)
    dims = [m.dim for m in _bra_layers(model)]
    assert len(dims) == layers and all(d % 8 == 0 for d in dims)


def test_yaml_args_after_dim_reach_the_constructor() -> None:
    cfg = {
        "nc": 2,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "BiLevelRoutingAttention", [2, 4, None, None, 4, 4,
                                                                                        None, "identity", 3]]],
        "head": [[[1], 1, "Detect", ["nc"]]],
    }  # fmt: skip
    model = DetectionModel(cfg, verbose=False)
    (bra,) = _bra_layers(model)
    assert (bra.dim, bra.n_win, bra.num_heads, bra.topk) == (16, 2, 4, 3)
    assert cfg["backbone"][1][3][0] == 2  # the user's dict is left as written


def test_bra_row_must_read_the_previous_layer() -> None:
    d = {"backbone": [[-1, 1, "Conv", [16, 3, 2]], [0, 1, "BiLevelRoutingAttention", []]], "head": []}
    with pytest.raises(ValueError, match="layer 1: BiLevelRoutingAttention must take the previous layer's output"):
        insert_channel_args(d)


@pytest.mark.parametrize("yaml_name", ["yolo11n-bra.yaml", "yolo11n-seg-bra.yaml"])
def test_seed_placement_has_bra_after_every_output_concat_and_the_same_outputs(yaml_name: str) -> None:
    yolo = YOLO(str(ROOT / "models" / yaml_name))
    seed = YOLO(str(ROOT / "models" / yaml_name.replace("-bra", "-bra-p345")))
    layers = seed.model.model
    bra = [(i, m.dim) for i, m in enumerate(layers) if isinstance(m, BiLevelRoutingAttention)]
    assert bra == [(16, 256), (20, 192), (24, 384)]  # P3 concat 128+128 channels, then P4 and P5 as the default
    assert all(type(layers[i - 1]).__name__ == "Concat" for i, _ in bra)
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        ours, theirs = yolo.model.eval()(x)[0], seed.model.eval()(x)[0]
    ours, theirs = (ours[0], theirs[0]) if yolo.task == "segment" else (ours, theirs)
    assert ours.shape == theirs.shape
