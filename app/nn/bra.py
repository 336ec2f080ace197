"""Bi-Level Routing Attention (BRA) from BiFormer (Zhu et al., CVPR 2023), for NCHW feature maps.

The map is cut into `n_win x n_win` windows. Each query window ranks all windows by the dot product of their
mean-pooled queries and keys, keeps the `topk` best, gathers those windows' keys and values, and runs ordinary
multi-head attention from its own tokens to the gathered ones. A depthwise convolution on the values (LePE)
adds local positional context, and a linear layer projects the result.

The constructor and the state-dict keys (`qkv.qkv.*`, `wo.*`, `lepe.*`, `router.emb.*`) match the BiFormer
module used in the YOLO tutorials, so weights trained with that code load here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV_DOWNSAMPLE_MODES = ("identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool")
PARAM_ATTENTION_MODES = ("qkvo", "qkv")


class _QKVProjection(nn.Module):
    """One linear layer producing queries, keys and values (kept as a submodule for BiFormer's key names)."""

    def __init__(self, dim: int, qk_dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.qkv(x)


class _TopkRouter(nn.Module):
    """Window-to-window routing: the `topk` most related key windows of every query window."""

    def __init__(self, qk_dim: int, topk: int, scale: float, param_routing: bool, diff_routing: bool) -> None:
        super().__init__()
        self.topk = topk
        self.scale = scale
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()

    def forward(self, q_win: Tensor, k_win: Tensor) -> tuple[Tensor, Tensor]:
        """Return routing weights and indices, both (B, P, k), from window descriptors (B, P, C_qk)."""
        if not self.diff_routing:  # routing is a hard selection: no gradient through it
            q_win, k_win = q_win.detach(), k_win.detach()
        logits = (self.emb(q_win) * self.scale) @ self.emb(k_win).transpose(-2, -1)  # B, P, P
        top_logits, index = torch.topk(logits, k=min(self.topk, logits.shape[-1]), dim=-1)
        return top_logits.softmax(dim=-1), index


class BiLevelRoutingAttention(nn.Module):
    """Bi-Level Routing Attention over an NCHW map; the output has the input's shape.

    Args:
        dim: Channels of the input and output.
        n_win: Windows per side: the map is split into `n_win x n_win` windows (not a window size).
        num_heads: Attention heads; must divide `dim` and `qk_dim`.
        qk_dim: Channels of queries and keys; defaults to `dim`.
        qk_scale: Attention temperature; defaults to `qk_dim ** -0.5` (BiFormer scales by the full qk_dim).
        kv_per_win: Tokens per side kept in each key/value window by the `ada_*` downsampling modes.
        kv_downsample_ratio: Pooling kernel and stride of the `avgpool` / `maxpool` modes.
        kv_downsample_kernel: Accepted for compatibility with BiFormer's signature, which does not use it.
        kv_downsample_mode: How key/value windows are pooled: one of `KV_DOWNSAMPLE_MODES`.
        topk: Key windows each query window attends to (clamped to the number of windows).
        param_attention: `qkvo` (with output projection) or `qkv` (without).
        param_routing: Learn a linear embedding for routing; needs `diff_routing`.
        diff_routing: Let gradients flow through the routing weights; needs `soft_routing`.
        soft_routing: Scale gathered keys/values by their routing weight.
        side_dwconv: Kernel of the LePE depthwise convolution (odd), or 0 for none.
        auto_pad: Pad the map to a multiple of `n_win` and crop back; otherwise the map must divide evenly.

    Example:
        >>> bra = BiLevelRoutingAttention(64, n_win=4, num_heads=4, topk=2)
        >>> bra(torch.randn(2, 64, 30, 40)).shape
        torch.Size([2, 64, 30, 40])
    """

    def __init__(
        self,
        dim: int,
        n_win: int = 7,
        num_heads: int = 8,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        kv_per_win: int = 4,
        kv_downsample_ratio: int = 4,
        kv_downsample_kernel: int | None = None,
        kv_downsample_mode: str = "identity",
        topk: int = 4,
        param_attention: str = "qkvo",
        param_routing: bool = False,
        diff_routing: bool = False,
        soft_routing: bool = False,
        side_dwconv: int = 3,
        auto_pad: bool = True,
    ) -> None:
        super().__init__()
        qk_dim = qk_dim or dim
        _check(dim > 0 and qk_dim > 0, f"dim and qk_dim must be positive, got dim={dim}, qk_dim={qk_dim}")
        _check(n_win >= 1, f"n_win must be >= 1, got {n_win}")
        _check(topk >= 1, f"topk must be >= 1, got {topk}")
        _check(num_heads >= 1, f"num_heads must be >= 1, got {num_heads}")
        _check(
            dim % num_heads == 0 and qk_dim % num_heads == 0,
            f"dim ({dim}) and qk_dim ({qk_dim}) must both be divisible by num_heads ({num_heads})",
        )
        _check(
            kv_downsample_mode in KV_DOWNSAMPLE_MODES,
            f"kv_downsample_mode must be one of {KV_DOWNSAMPLE_MODES}, got {kv_downsample_mode!r}",
        )
        _check(
            param_attention in PARAM_ATTENTION_MODES,
            f"param_attention must be one of {PARAM_ATTENTION_MODES}, got {param_attention!r}",
        )
        _check(not param_routing or diff_routing, "param_routing=True needs diff_routing=True (BiFormer's rule)")
        _check(
            not diff_routing or soft_routing,
            "diff_routing=True needs soft_routing=True: BiFormer defines no 'hard' differentiable routing",
        )
        _check(
            side_dwconv == 0 or (side_dwconv > 0 and side_dwconv % 2 == 1),
            f"side_dwconv must be 0 or a positive odd number, got {side_dwconv}",
        )
        if kv_downsample_mode in ("avgpool", "maxpool"):
            _check(kv_downsample_ratio >= 1, f"kv_downsample_ratio must be >= 1, got {kv_downsample_ratio}")
        if kv_downsample_mode in ("ada_avgpool", "ada_maxpool"):
            _check(kv_per_win >= 1, f"kv_per_win must be >= 1, got {kv_per_win}")

        self.dim = dim
        self.qk_dim = qk_dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.topk = topk
        self.scale = qk_scale or qk_dim**-0.5
        self.soft_routing = soft_routing
        self.kv_downsample_mode = kv_downsample_mode
        self.kv_per_win = kv_per_win
        self.kv_downsample_ratio = kv_downsample_ratio
        self.auto_pad = auto_pad

        self.qkv = _QKVProjection(dim, qk_dim)
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim) if side_dwconv > 0 else None
        self.router = _TopkRouter(qk_dim, topk, self.scale, param_routing, diff_routing)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        if self.dim != C:
            raise ValueError(f"BiLevelRoutingAttention expects {self.dim} channels, got {C}")
        nw, heads = self.n_win, self.num_heads
        pad_b, pad_r = -H % nw, -W % nw
        if (pad_b or pad_r) and not self.auto_pad:
            raise ValueError(f"map {H}x{W} is not divisible by n_win={nw}; use auto_pad=True")

        Hp, Wp = H + pad_b, W + pad_r
        wh, ww = Hp // nw, Wp // nw  # window size
        P, qk = nw * nw, self.qk_dim

        qkv = self.qkv(x.permute(0, 2, 3, 1))  # B, H, W, 2*C_qk + C
        if pad_b or pad_r:
            # Padding after the projection spares it the padded tokens. BiFormer pads the input with zeros, so
            # its padded tokens project to the bias alone: pad with that.
            bias = self.qkv.qkv.bias
            if pad_r:
                qkv = torch.cat([qkv, bias.expand(B, H, pad_r, -1)], dim=2)
            if pad_b:
                qkv = torch.cat([qkv, bias.expand(B, pad_b, Wp, -1)], dim=1)  # B, Hp, Wp, 2*C_qk + C
        lepe = self._lepe(qkv[..., 2 * qk :])  # B, Hp, Wp, C

        def windows(t: Tensor) -> Tensor:
            """B, Hp, Wp, heads*d -> B, heads, P, wh*ww, d: one copy, after which attention needs no other."""
            t = t.view(B, nw, wh, nw, ww, heads, -1).permute(0, 5, 1, 3, 2, 4, 6)
            return t.reshape(B, heads, P, wh * ww, -1)

        q, k, v = windows(qkv[..., :qk]), windows(qkv[..., qk : 2 * qk]), windows(qkv[..., 2 * qk :])

        # Coarse level: route each query window to its top-k key windows on mean-pooled q/k.
        def pooled(t: Tensor) -> Tensor:  # B, heads, P, wh*ww, d -> B, P, heads*d
            return t.mean(dim=3).transpose(1, 2).reshape(B, P, -1)

        r_weight, r_index = self.router(pooled(q), pooled(k))  # B, P, topk
        topk = r_index.shape[-1]

        # Fine level: gather the routed windows' keys/values for every head (indexing copies only what is kept).
        k, v = self._downsample(k, wh, ww), self._downsample(v, wh, ww)  # B, heads, P, T, d
        T = k.shape[3]
        index = (
            torch.arange(B, device=x.device).view(B, 1, 1, 1),
            torch.arange(heads, device=x.device).view(1, heads, 1, 1),
            r_index.unsqueeze(1),  # B, 1, P, topk
        )
        k_sel, v_sel = k[index], v[index]  # B, heads, P, topk, T, d
        if self.soft_routing:
            k_sel = k_sel * r_weight.view(B, 1, P, topk, 1, 1)
            v_sel = v_sel * r_weight.view(B, 1, P, topk, 1, 1)

        # Heads and windows share the batch dimension of a 4-D attention: B, heads*P, tokens, d.
        out = F.scaled_dot_product_attention(
            q.reshape(B, heads * P, wh * ww, -1),
            k_sel.reshape(B, heads * P, topk * T, -1),
            v_sel.reshape(B, heads * P, topk * T, -1),
            scale=self.scale,
        )  # B, heads*P, wh*ww, d_v

        out = out.view(B, heads, nw, nw, wh, ww, -1).permute(0, 2, 4, 3, 5, 1, 6).reshape(B, Hp, Wp, C)
        out = self.wo(out[:, :H, :W] + lepe[:, :H, :W])  # cropped first: the projection is per token
        return out.permute(0, 3, 1, 2).contiguous()  # B, C, H, W

    def _lepe(self, v: Tensor) -> Tensor:
        """Locally-enhanced positional encoding: a depthwise conv over the value map (B, H, W, C)."""
        if self.lepe is None:
            return torch.zeros_like(v)
        return self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _downsample(self, t: Tensor, wh: int, ww: int) -> Tensor:
        """Pool each key or value window (B, heads, P, wh*ww, d) to fewer tokens, per `kv_downsample_mode`."""
        mode = self.kv_downsample_mode
        if mode == "identity":
            return t
        B, heads, P, _, d = t.shape
        win = t.reshape(-1, wh, ww, d).permute(0, 3, 1, 2)  # B*heads*P, d, wh, ww
        if mode in ("avgpool", "maxpool"):
            # Windows smaller than the ratio (tiny maps) pool whole instead of failing.
            kernel = (min(self.kv_downsample_ratio, wh), min(self.kv_downsample_ratio, ww))
            pool = F.avg_pool2d if mode == "avgpool" else F.max_pool2d
            win = pool(win, kernel, kernel)
        else:
            pool = F.adaptive_avg_pool2d if mode == "ada_avgpool" else F.adaptive_max_pool2d
            win = pool(win, self.kv_per_win)
        return win.flatten(2).transpose(1, 2).reshape(B, heads, P, -1, d)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, qk_dim={self.qk_dim}, n_win={self.n_win}, num_heads={self.num_heads}, "
            f"topk={self.topk}, kv_downsample_mode={self.kv_downsample_mode!r}"
        )


def _check(condition: bool, message: str) -> None:
    """Raise a ValueError naming the bad argument (configuration errors surface at construction)."""
    if not condition:
        raise ValueError(f"BiLevelRoutingAttention: {message}")
