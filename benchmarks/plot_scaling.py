"""Plot of the scaling study: time per round and memory against the number of clients.

Kept apart from scaling.py so a saved result can be re-drawn without rerunning it:

    python benchmarks/plot_scaling.py benchmarks/results/scaling.json [out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GIB = 2**30


def plot(result: dict[str, Any], path: Path) -> None:
    """Two panels on log-x: median s/round per backend; peak memory per backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = sorted(result["results"], key=lambda r: r["clients"])
    m = [r["clients"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))

    ax_t.plot(m, [r["inproc_round_s"] for r in rows], "o-", label="in-process (reference)")
    ax_t.plot(m, [r["ray_round_s"] for r in rows], "s-", label="Ray (default actors)")
    for r in rows:
        ax_t.annotate(
            f"{r['overhead_ms_per_client_round']:+.1f} ms/client",
            (r["clients"], r["ray_round_s"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    ax_t.set(xscale="log", xlabel="clients (same total data)", ylabel="median s per round")
    ax_t.set_ylim(bottom=0)
    ax_t.set_title("time per round (rounds 1..R-1)")

    basis = rows[0].get("ray_memory_basis", "USS") if rows else "USS"
    series = (
        ("ray_peak_total", f"Ray session, sum of {basis.split()[0]}", "s-"),
        ("ray_peak_rss", "Ray session, sum of RSS", "^--"),
        ("ray_peak_store", "object store", "v:"),
        ("inproc_peak_rss", "in-process, RSS", "o-"),
        ("inproc_peak_uss", "in-process, USS", "o:"),
    )
    for key, label, style in series:
        values = [r.get(key) for r in rows]
        if all(v is not None for v in values):
            ax_m.plot(m, [v / GIB for v in values], style, label=label)
    ax_m.axhline(16, color="grey", lw=0.8, ls="--", label="target 16 GiB (1,000 clients)")
    ax_m.set(xscale="log", xlabel="clients (same total data)", ylabel="peak GiB")
    ax_m.set_ylim(bottom=0)
    ax_m.set_title("memory")

    for ax in (ax_t, ax_m):
        ax.set_xticks(m, [str(c) for c in m])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.get('command', '')}  ({result.get('date', '')})", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else source.with_suffix(".png")
    plot(json.loads(source.read_text()), out)
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
