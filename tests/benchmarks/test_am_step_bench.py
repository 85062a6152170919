"""benchmarks/am_step.py at a tiny size: the three convolutions are the same maths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from am_step import DenseConv, Im2colConv, main  # noqa: E402


def test_im2col_and_dense_convolutions_match_pytorch_with_their_gradients() -> None:
    torch.manual_seed(0)
    for stride, size in ((1, 2), (2, 4), (1, 3)):
        conv = torch.nn.Conv2d(5, 7, 3, stride=stride, padding=1, bias=True)
        x = torch.randn(4, 5, size, size, requires_grad=True)
        expected = conv(x)
        (gx,) = torch.autograd.grad(expected.square().sum(), x)
        for kind in (Im2colConv, DenseConv):
            other = kind(5, 7, 3, stride=stride, padding=1, bias=True)
            other.load_state_dict(conv.state_dict())
            out = other(x)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
            (ox,) = torch.autograd.grad(out.square().sum(), x)
            torch.testing.assert_close(ox, gx, rtol=1e-4, atol=1e-4)


def test_the_benchmark_times_all_three_and_profiles(tmp_path: Path, capsys) -> None:
    out = tmp_path / "am.json"
    assert main(["--batch", "8", "--steps", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["convolution"] for r in rows] == ["pytorch", "im2col", "dense"]
    assert all(r["s_per_step"] > 0 and r["grad_diff"] < 1e-3 for r in rows)
    assert "self CPU time" in capsys.readouterr().out
