"""BiLevelRoutingAttention: equal to the literal reference, shape handling, gradients, configuration errors."""

from __future__ import annotations

import pytest
import torch
from reference_bra import ReferenceBRA

from app.nn import BiLevelRoutingAttention

CONFIGS = [
    pytest.param({"dim": 64, "n_win": 7, "num_heads": 8}, id="defaults"),
    pytest.param({"dim": 64, "n_win": 4, "num_heads": 4, "topk": 3, "qk_dim": 32}, id="qk_dim"),
    pytest.param({"dim": 32, "n_win": 4, "num_heads": 2, "topk": 2, "soft_routing": True}, id="soft"),
    pytest.param(
        {"dim": 32, "n_win": 4, "num_heads": 2, "soft_routing": True, "diff_routing": True, "param_routing": True},
        id="param-diff-soft",
    ),
    pytest.param(
        {"dim": 32, "n_win": 2, "num_heads": 4, "kv_downsample_mode": "avgpool", "kv_downsample_ratio": 2}, id="avgpool"
    ),
    pytest.param(
        {"dim": 32, "n_win": 2, "num_heads": 4, "kv_downsample_mode": "maxpool", "kv_downsample_ratio": 3}, id="maxpool"
    ),
    pytest.param(
        {"dim": 32, "n_win": 2, "num_heads": 4, "kv_downsample_mode": "ada_avgpool", "kv_per_win": 2, "topk": 3},
        id="ada_avgpool",
    ),
    pytest.param(
        {"dim": 32, "n_win": 3, "num_heads": 4, "kv_downsample_mode": "ada_maxpool", "kv_per_win": 3}, id="ada_maxpool"
    ),
    pytest.param(
        {"dim": 32, "n_win": 3, "num_heads": 4, "param_attention": "qkv", "side_dwconv": 0, "qk_scale": 0.3},
        id="qkv-no-lepe-scale",
    ),
    pytest.param({"dim": 48, "n_win": 3, "num_heads": 3, "side_dwconv": 5, "topk": 9}, id="lepe5-all-windows"),
]


def _pair(cfg: dict) -> tuple[ReferenceBRA, BiLevelRoutingAttention]:
    torch.manual_seed(0)
    ref = ReferenceBRA(**cfg)
    ours = BiLevelRoutingAttention(**cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)  # the reference's keys are ours, one for one
    return ref, ours


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("shape", [(2, 24, 24), (1, 19, 30)], ids=["even", "padded"])
def test_matches_reference_forward_and_backward(cfg: dict, shape: tuple[int, int, int]) -> None:
    ref, ours = _pair(cfg)
    b, h, w = shape
    x_ref = torch.randn(b, cfg["dim"], h, w, generator=torch.Generator().manual_seed(1), requires_grad=True)
    x_ours = x_ref.detach().clone().requires_grad_(True)
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    assert y_ours.shape == x_ours.shape
    assert (y_ref - y_ours).abs().max().item() <= 1e-5

    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y_ours.backward(grad)
    assert (x_ours.grad - x_ref.grad).abs().max().item() <= 1e-5
    ours_params = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        # Parameter gradients sum over every token: compare on the scale of the gradient itself.
        scale = p.grad.abs().max().clamp(min=1.0)
        assert ((ours_params[name].grad - p.grad).abs().max() / scale).item() <= 1e-5, name


def test_state_dict_keys_follow_biformer() -> None:
    bra = BiLevelRoutingAttention(32, num_heads=4, soft_routing=True, diff_routing=True, param_routing=True)
    assert set(bra.state_dict()) == {
        "qkv.qkv.weight", "qkv.qkv.bias", "wo.weight", "wo.bias", "lepe.weight", "lepe.bias",
        "router.emb.weight", "router.emb.bias",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("hw", "n_win"), [((1, 1), 7), ((3, 5), 7), ((7, 7), 7), ((13, 40), 7), ((80, 80), 7), ((31, 17), 4)]
)
def test_any_map_size_keeps_shape(hw: tuple[int, int], n_win: int) -> None:
    bra = BiLevelRoutingAttention(32, n_win=n_win, num_heads=4).eval()
    x = torch.randn(2, 32, *hw)
    assert bra(x).shape == x.shape


@pytest.mark.parametrize("mode", ["avgpool", "maxpool", "ada_avgpool", "ada_maxpool"])
def test_downsampling_modes_work_on_maps_smaller_than_the_window_grid(mode: str) -> None:
    bra = BiLevelRoutingAttention(16, n_win=7, num_heads=2, kv_downsample_mode=mode)
    x = torch.randn(1, 16, 5, 9)
    assert torch.isfinite(bra(x)).all()


def test_topk_beyond_window_count_attends_to_all_windows() -> None:
    torch.manual_seed(0)
    all_windows = BiLevelRoutingAttention(16, n_win=2, num_heads=2, topk=4).eval()
    too_many = BiLevelRoutingAttention(16, n_win=2, num_heads=2, topk=100).eval()
    too_many.load_state_dict(all_windows.state_dict())
    x = torch.randn(1, 16, 10, 10)
    torch.testing.assert_close(too_many(x), all_windows(x))


def test_routing_selects_windows_so_output_differs_from_full_attention() -> None:
    torch.manual_seed(0)
    routed = BiLevelRoutingAttention(16, n_win=4, num_heads=2, topk=2).eval()
    full = BiLevelRoutingAttention(16, n_win=4, num_heads=2, topk=16).eval()
    full.load_state_dict(routed.state_dict())
    x = torch.randn(1, 16, 16, 16)
    assert (routed(x) - full(x)).abs().max() > 1e-3


def test_gradients_reach_every_parameter_and_the_input() -> None:
    bra = BiLevelRoutingAttention(32, n_win=3, num_heads=4, soft_routing=True, diff_routing=True, param_routing=True)
    x = torch.randn(2, 32, 12, 15, requires_grad=True)
    bra(x).square().mean().backward()
    for name, p in bra.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_no_auto_pad_requires_divisible_maps() -> None:
    bra = BiLevelRoutingAttention(16, n_win=4, num_heads=2, auto_pad=False)
    assert bra(torch.randn(1, 16, 8, 12)).shape == (1, 16, 8, 12)
    with pytest.raises(ValueError, match="not divisible by n_win=4"):
        bra(torch.randn(1, 16, 9, 12))


def test_wrong_channel_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expects 16 channels, got 8"):
        BiLevelRoutingAttention(16, num_heads=2)(torch.randn(1, 8, 7, 7))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 30, "num_heads": 8}, "divisible by num_heads"),
        ({"dim": 32, "num_heads": 8, "qk_dim": 20}, "divisible by num_heads"),
        ({"dim": 32, "kv_downsample_mode": "fracpool"}, "kv_downsample_mode must be one of"),
        ({"dim": 32, "param_attention": "qkvo2"}, "param_attention must be one of"),
        ({"dim": 32, "param_routing": True}, "param_routing=True needs diff_routing=True"),
        ({"dim": 32, "diff_routing": True}, "diff_routing=True needs soft_routing=True"),
        ({"dim": 32, "n_win": 0}, "n_win must be >= 1"),
        ({"dim": 32, "topk": 0}, "topk must be >= 1"),
        ({"dim": 32, "side_dwconv": 4}, "side_dwconv must be 0 or a positive odd number"),
        ({"dim": 32, "kv_downsample_mode": "avgpool", "kv_downsample_ratio": 0}, "kv_downsample_ratio"),
    ],
)
def test_invalid_configurations_raise_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BiLevelRoutingAttention(**kwargs)
