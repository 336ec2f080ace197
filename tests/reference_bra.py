"""A plain, literal Bi-Level Routing Attention, written step by step as BiFormer formulates it.

This is the yardstick for `app.nn.BiLevelRoutingAttention`: same submodule names (so one state dict fits both),
channels-last inside, the window grid of `n_win x n_win`, routing on window means, an expand-and-gather of the
routed key/value windows, explicit softmax attention per head, LePE on the values, output projection. It keeps
the BiFormer module's quirks on purpose: the attention scale is `qk_dim ** -0.5` (not per head) and padded
tokens take part in routing and attention. The YOLO tutorials wrap it with NCHW <-> NHWC permutes, as `forward`
does here. Used only by the tests; slow by design.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TopkRouting(nn.Module):
    def __init__(self, qk_dim, topk=4, qk_scale=None, param_routing=False, diff_routing=False):
        super().__init__()
        self.topk = topk
        self.scale = qk_scale or qk_dim**-0.5
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()
        self.routing_act = nn.Softmax(dim=-1)

    def forward(self, query, key):
        if not self.diff_routing:
            query, key = query.detach(), key.detach()
        query_hat, key_hat = self.emb(query), self.emb(key)
        attn_logit = (query_hat * self.scale) @ key_hat.transpose(-2, -1)  # (n, p^2, p^2)
        topk_attn_logit, topk_index = torch.topk(attn_logit, k=self.topk, dim=-1)  # (n, p^2, k)
        r_weight = self.routing_act(topk_attn_logit)
        return r_weight, topk_index


class KVGather(nn.Module):
    def __init__(self, mul_weight="none"):
        super().__init__()
        assert mul_weight in ["none", "soft", "hard"]
        self.mul_weight = mul_weight

    def forward(self, r_idx, r_weight, kv):
        # r_idx, r_weight: (n, p^2, topk); kv: (n, p^2, w^2, c_kq + c_v)
        n, p2, w2, c_kv = kv.size()
        topk = r_idx.size(-1)
        topk_kv = torch.gather(
            kv.view(n, 1, p2, w2, c_kv).expand(-1, p2, -1, -1, -1),
            dim=2,
            index=r_idx.view(n, p2, topk, 1, 1).expand(-1, -1, -1, w2, c_kv),
        )  # (n, p^2, topk, w^2, c_kv)
        if self.mul_weight == "soft":
            topk_kv = r_weight.view(n, p2, topk, 1, 1) * topk_kv
        elif self.mul_weight == "hard":
            raise NotImplementedError("differentiable hard routing is not implemented")
        return topk_kv


class QKVLinear(nn.Module):
    def __init__(self, dim, qk_dim, bias=True):
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)

    def forward(self, x):
        q, kv = self.qkv(x).split([self.qk_dim, self.qk_dim + self.dim], dim=-1)
        return q, kv


class ReferenceBRA(nn.Module):
    def __init__(
        self,
        dim,
        n_win=7,
        num_heads=8,
        qk_dim=None,
        qk_scale=None,
        kv_per_win=4,
        kv_downsample_ratio=4,
        kv_downsample_kernel=None,
        kv_downsample_mode="identity",
        topk=4,
        param_attention="qkvo",
        param_routing=False,
        diff_routing=False,
        soft_routing=False,
        side_dwconv=3,
        auto_pad=True,
    ):
        super().__init__()
        self.dim = dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.qk_dim = qk_dim or dim
        assert self.qk_dim % num_heads == 0 and self.dim % num_heads == 0
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = (
            nn.Conv2d(dim, dim, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2, groups=dim)
            if side_dwconv > 0
            else lambda x: torch.zeros_like(x)
        )
        self.topk = topk
        assert not (param_routing and not diff_routing)
        self.router = TopkRouting(
            qk_dim=self.qk_dim, qk_scale=self.scale, topk=topk, diff_routing=diff_routing, param_routing=param_routing
        )
        mul_weight = "soft" if soft_routing else "hard" if diff_routing else "none"
        self.kv_gather = KVGather(mul_weight=mul_weight)
        self.qkv = QKVLinear(self.dim, self.qk_dim)
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        if kv_downsample_mode == "ada_avgpool":
            self.kv_down = nn.AdaptiveAvgPool2d(kv_per_win)
        elif kv_downsample_mode == "ada_maxpool":
            self.kv_down = nn.AdaptiveMaxPool2d(kv_per_win)
        elif kv_downsample_mode == "maxpool":
            self.kv_down = nn.MaxPool2d(kv_downsample_ratio) if kv_downsample_ratio > 1 else nn.Identity()
        elif kv_downsample_mode == "avgpool":
            self.kv_down = nn.AvgPool2d(kv_downsample_ratio) if kv_downsample_ratio > 1 else nn.Identity()
        elif kv_downsample_mode == "identity":
            self.kv_down = nn.Identity()
        else:
            raise ValueError(kv_downsample_mode)
        self.attn_act = nn.Softmax(dim=-1)
        self.auto_pad = auto_pad

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)  # tutorials: "n c h w -> n h w c"
        N, H_in, W_in, C = x.size()
        pad_r = (self.n_win - W_in % self.n_win) % self.n_win
        pad_b = (self.n_win - H_in % self.n_win) % self.n_win
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, H, W, _ = x.size()
        j = i = self.n_win
        h, w = H // j, W // i

        # "n (j h) (i w) c -> n (j i) h w c"
        x = x.reshape(N, j, h, i, w, C).permute(0, 1, 3, 2, 4, 5).reshape(N, j * i, h, w, C)
        q, kv = self.qkv(x)
        q_pix = q.reshape(N, j * i, h * w, self.qk_dim)  # "n p2 h w c -> n p2 (h w) c"
        c_kv = kv.shape[-1]
        kv_pix = self.kv_down(kv.reshape(N * j * i, h, w, c_kv).permute(0, 3, 1, 2))  # "-> (n p2) c h w"
        kv_pix = kv_pix.reshape(N, j * i, c_kv, -1).transpose(2, 3)  # "(n j i) c h w -> n (j i) (h w) c"

        q_win, k_win = q.mean([2, 3]), kv[..., 0 : self.qk_dim].mean([2, 3])

        v_img = kv[..., self.qk_dim :].reshape(N, j, i, h, w, C).permute(0, 5, 1, 3, 2, 4).reshape(N, C, H, W)
        lepe = self.lepe(v_img.contiguous())  # "n (j i) h w c -> n c (j h) (i w)"
        lepe = lepe.permute(0, 2, 3, 1)  # "n c (j h) (i w) -> n (j h) (i w) c"

        r_weight, r_idx = self.router(q_win, k_win)
        kv_pix_sel = self.kv_gather(r_idx=r_idx, r_weight=r_weight, kv=kv_pix)
        k_pix_sel, v_pix_sel = kv_pix_sel.split([self.qk_dim, self.dim], dim=-1)
        m = self.num_heads
        topk, w2 = k_pix_sel.shape[2], k_pix_sel.shape[3]
        # "n p2 k w2 (m c) -> (n p2) m c (k w2)"
        k_pix_sel = k_pix_sel.reshape(N * j * i, topk * w2, m, -1).permute(0, 2, 3, 1)
        # "n p2 k w2 (m c) -> (n p2) m (k w2) c"
        v_pix_sel = v_pix_sel.reshape(N * j * i, topk * w2, m, -1).permute(0, 2, 1, 3)
        # "n p2 w2 (m c) -> (n p2) m w2 c"
        q_pix = q_pix.reshape(N * j * i, h * w, m, -1).permute(0, 2, 1, 3)

        attn_weight = self.attn_act((q_pix * self.scale) @ k_pix_sel)
        out = attn_weight @ v_pix_sel  # (n p2) m (h w) c
        # "(n j i) m (h w) c -> n (j h) (i w) (m c)"
        out = out.reshape(N, j, i, m, h, w, -1).permute(0, 1, 4, 2, 5, 3, 6).reshape(N, H, W, C)
        out = self.wo(out + lepe)
        out = out[:, :H_in, :W_in, :]
        return out.permute(0, 3, 1, 2)  # tutorials: "n h w c -> n c h w"
