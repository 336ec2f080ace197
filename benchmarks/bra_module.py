"""BiLevelRoutingAttention against the literal reference formulation, at the neck shapes of the n and s models.

    .venv/bin/python benchmarks/bra_module.py [--repeat 5] [--batch 1 8] [--scales n s]

For each shape: median latency of forward and of forward+backward, peak memory, and the largest output difference
(fp32), ours vs `tests/reference_bra.py`, with their ratios. The forward is also set against its arithmetic floor:
the layer's matrix products alone (projections of the real tokens, attention over ready-gathered keys) through the
same PyTorch kernels, with no layout change, routing, gather or LePE. reference / floor bounds the speed-up any
rewrite that computes the same output the same way can reach. Peak memory is the growth of resident memory during
one forward+backward, in a fresh subprocess per implementation and shape (PyTorch's CPU allocator keeps no peak
counter); Linux only. Targets (issue #5): >= 3x faster, <= 0.5x peak memory, <= 1e-4 apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import app  # noqa: F401
from app.nn import BiLevelRoutingAttention

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_bra import ReferenceBRA

SHAPES = {  # the three BRA inputs of the seed neck at 640 px: P3, P4, P5 (channels after each Concat)
    "n": [(256, 80, 80), (192, 40, 40), (384, 20, 20)],
    "s": [(512, 80, 80), (384, 40, 40), (768, 20, 20)],
}


def build(impl: str, dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    ref = ReferenceBRA(dim)
    if impl == "reference":
        return ref
    ours = BiLevelRoutingAttention(dim)
    ours.load_state_dict(ref.state_dict())
    return ours


def matmul_floor(batch: int, dim: int, h: int, w: int, n_win: int = 7, heads: int = 8, topk: int = 4):
    """A forward of the layer's matrix products only, on ready-laid-out random tensors (BiFormer defaults)."""
    hp, wp = -(-h // n_win) * n_win, -(-w // n_win) * n_win  # attention runs on whole, padded windows
    # The projections need only the real tokens: a padded (zero) token projects to the bias alone.
    tokens, windows, per_win = batch * h * w, batch * n_win * n_win, (hp // n_win) * (wp // n_win)
    qkv, wo = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
    x = torch.randn(tokens, dim)
    q = torch.randn(windows, heads, per_win, dim // heads)
    kv = torch.randn(windows, heads, topk * per_win, dim // heads)
    scale = dim**-0.5

    def forward() -> torch.Tensor:
        qkv(x)
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv, scale=scale)
        return wo(x)

    return forward


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def peak_mb(impl: str, batch: int, dim: int, h: int, w: int) -> float:
    """Peak resident-memory growth of one forward+backward, in a fresh process.

    Linux keeps a process's high-water mark (VmHWM); writing 5 to /proc/self/clear_refs resets it to the current
    size, so the mark read afterwards is the peak of exactly this step.
    """
    code = (
        "import sys, torch; sys.argv = sys.argv[:1]; "
        "from benchmarks.bra_module import build, _status_kb; "
        f"m = build({impl!r}, {dim}); x = torch.randn({batch}, {dim}, {h}, {w}, requires_grad=True); "
        "open('/proc/self/clear_refs', 'w').write('5'); base = _status_kb('VmRSS'); m(x).sum().backward(); "
        "print(_status_kb('VmHWM') - base)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def _status_kb(field: str) -> int:
    """A memory field of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--scales", nargs="+", default=["n", "s"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeat} runs")
    header = ["scale", "input", "fwd ms ref/ours", "x", "floor ms", "ref/floor", "fwd+bwd ms ref/ours", "x",
              "peak MB ref/ours", "x", "max diff"]  # fmt: skip
    print(" | ".join(header))
    rows = []
    for scale in args.scales:
        for batch in args.batch:
            for dim, h, w in SHAPES[scale]:
                ref, ours = build("reference", dim), build("ours", dim)
                x = torch.randn(batch, dim, h, w)
                with torch.no_grad():
                    diff = (ref(x) - ours(x)).abs().max().item()
                    fwd = [median_ms(lambda m=m, x=x: m(x), args.repeat) for m in (ref, ours)]
                    floor = median_ms(matmul_floor(batch, dim, h, w), args.repeat)
                xg = x.clone().requires_grad_(True)
                both = [median_ms(lambda m=m, xg=xg: m(xg).sum().backward(), args.repeat) for m in (ref, ours)]
                peak = [peak_mb(impl, batch, dim, h, w) for impl in ("reference", "ours")]
                row = {
                    "scale": scale, "input": f"{batch}x{dim}x{h}x{w}", "fwd": fwd, "floor": floor, "fwd_bwd": both,
                    "peak": peak, "diff": diff,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{scale} | {row['input']} | {fwd[0]:.1f}/{fwd[1]:.1f} | {fwd[0] / fwd[1]:.2f} | "
                    f"{floor:.1f} | {fwd[0] / floor:.2f} | "
                    f"{both[0]:.1f}/{both[1]:.1f} | {both[0] / both[1]:.2f} | {peak[0]:.0f}/{peak[1]:.0f} | "
                    f"{peak[1] / max(peak[0], 1e-9):.2f} | {diff:.1e}",
                    flush=True,
                )
    speed = min(r["fwd"][0] / r["fwd"][1] for r in rows)
    memory = max(r["peak"][1] / max(r["peak"][0], 1e-9) for r in rows)
    diff = max(r["diff"] for r in rows)
    print(f"worst forward speed-up {speed:.2f}x (target >= 3), worst peak-memory ratio {memory:.2f} (target <= 0.5), "
          f"largest difference {diff:.1e} (target <= 1e-4)")  # fmt: skip
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
