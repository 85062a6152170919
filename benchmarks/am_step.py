"""One alignment step of the CIFAR-10 AM: where its time goes, and whether other kernels help.

    python benchmarks/am_step.py                        # 1 thread, batch 256, 20 steps
    python benchmarks/am_step.py --threads 2 --steps 10

The AM (`two_blocks`: two ResNet BasicBlocks 128->256 on z of 128x4x4, so its convolutions
see 2x2 maps) is fitted by minimising ||g_hat - g*||^2, a double backward through every
convolution. Issue 12 asks alignment to cost half the floor's; the floor fits the same AMs
with the same code, so only cheaper arithmetic could get there. This script times the
project's step (`alignment_loss`, backward, Adam) with the AM's convolutions computed three
ways, all the same maths: PyTorch's own convolution (oneDNN on CPU, the reference), unfold
+ matmul (im2col), and one dense matrix per convolution (on a 2x2 map a 3x3 convolution is a
small linear map, so one GEMM does exactly the useful multiply-adds). It prints seconds per
step and the ratio to the reference, how far each one's parameter gradients are from the
reference's at the same parameters, the top operators of the reference step (torch.profiler), and
peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fslsage_ray.algorithms.gradients import alignment_loss  # noqa: E402
from fslsage_ray.models.resnet_aux import build_resnet18_aux  # noqa: E402

CUT_SHAPE = (128, 4, 4)  # the split ResNet-18's cut on 32x32 images


class Im2colConv(nn.Conv2d):
    """The same convolution as unfold + one batched matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        out = self.weight.flatten(1) @ cols
        oh = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        out = out.view(n, self.out_channels, oh, ow)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class DenseConv(nn.Conv2d):
    """The same convolution as one GEMM with its whole linear map on this (small) input size.

    taps[o, i] names the kernel tap linking output position o to input position i, or an
    extra zero tap where none does; the dense matrix is gathered from the weights each call,
    so gradients reach the weights as usual.
    """

    def _taps(self, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        taps = torch.full((oh * ow, h * w), kh * kw, dtype=torch.long)
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        p, q = i * sh - ph + a, j * sw - pw + b
                        if 0 <= p < h and 0 <= q < w:
                            taps[i * ow + j, p * w + q] = a * kw + b
        return taps, oh, ow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        taps, oh, ow = self._taps(h, w)
        kernel = self.weight.flatten(2)  # out, in, taps
        kernel = torch.cat([kernel, kernel.new_zeros(*kernel.shape[:2], 1)], dim=2)
        dense = kernel[:, :, taps].permute(0, 2, 1, 3).reshape(-1, c * h * w)
        out = (x.reshape(n, -1) @ dense.t()).view(n, self.out_channels, oh, ow)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def with_convs(model: nn.Module, kind: type[nn.Conv2d]) -> nn.Module:
    """A copy of `model` whose Conv2d modules compute as `kind` (same weights, same names)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                new = kind(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    bias=child.bias is not None,
                )
                new.load_state_dict(child.state_dict())
                setattr(parent, name, new)
    return model


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(batch, *CUT_SHAPE, generator=g).relu()  # post-ReLU, like real smashed data
    y = torch.randint(0, 10, (batch,), generator=g)
    g_star = torch.randn(batch, *CUT_SHAPE, generator=g) * 1e-3
    return z, y, g_star


def run_steps(model: nn.Module, steps: int, batch: int) -> tuple[float, nn.Module]:
    """(seconds per step after 2 warm-up steps, the fitted model)."""
    z, y, g_star = _inputs(batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = alignment_loss(model, z, y, g_star)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, model


def gradient_difference(model: nn.Module, reference: nn.Module, batch: int) -> float:
    """Largest relative difference of the alignment loss's parameter gradients, both models at
    the same parameters: the same maths up to float rounding (a fitted model would also show
    Adam turning rounding noise in near-zero gradients into whole steps)."""
    z, y, g_star = _inputs(batch)
    grads = []
    for m in (model, reference):
        params = [p for _, p in m.named_parameters()]
        grads.append(torch.autograd.grad(alignment_loss(m, z, y, g_star), params))
    return max(
        float((a - b).abs().max() / (b.abs().max() + 1e-12)) for a, b in zip(*grads, strict=True)
    )


def profile_top(model: nn.Module, batch: int, rows: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_steps(model, 3, batch)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
        for e in events[:rows]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=6, help="profiler rows to show")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "am_step.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build_resnet18_aux("two_blocks", 10, CUT_SHAPE).train()
    kinds = {"pytorch": nn.Conv2d, "im2col": Im2colConv, "dense": DenseConv}
    rows = []
    for name, kind in kinds.items():
        difference = gradient_difference(with_convs(base, kind), base, args.batch)
        seconds, _ = run_steps(with_convs(base, kind), args.steps, args.batch)
        rows.append({"convolution": name, "s_per_step": seconds, "grad_diff": difference})
    for row in rows:
        row["ratio"] = row["s_per_step"] / rows[0]["s_per_step"]
        print(
            f"{row['convolution']:8} {row['s_per_step']:.3f} s/step  x{row['ratio']:.2f}  "
            f"gradients differ from pytorch's by {row['grad_diff']:.1e} (relative)"
        )
    top = profile_top(with_convs(base, nn.Conv2d), args.batch, args.top)
    print("pytorch step, self CPU time: " + ", ".join(f"{t['op']} {t['share']:.0%}" for t in top))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak:.0f} MiB, {args.threads} thread(s), batch {args.batch}, "
        f"{platform.machine()}"
    )
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "threads": args.threads,
                "batch": args.batch,
                "steps": args.steps,
                "rows": rows,
                "profile": top,
                "peak_rss_mib": peak,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
