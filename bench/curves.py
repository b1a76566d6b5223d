"""Coefficient and cosine curves of CGGM (paper vs stable) as a small SVG, with no plotting library.

    python bench/curves.py [--dataset synthetic] [--set k=v ...] [--out bench/figures/cggm_curves_synthetic.svg]
    python bench/curves.py --setup synthetic_seg --out bench/figures/cggm_curves_synthetic_seg.svg

`--setup` takes a setup of bench/effect.py (its data, model and epochs; seed 0); `--set` adds to it.

B is drawn on a symmetric log scale, y = sign(B)·log10(1 + |B|), so the S = 0 blow-ups (|B| ~ 1e7)
and negative values are visible next to the ordinary range (0…2) instead of being clipped away;
the axis reaches the next power of ten above the run's largest |B|. The third column is ε_m, the
aux heads' batch metric whose step-to-step differences Δ_m make B.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cggm_core.tracking import MemorySink
from cggm_core.trainer import train

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
W, H, PAD = 460, 170, 38


def symlog(v: float) -> float:
    return math.copysign(math.log10(1 + abs(v)), v)


def panel(
    x0: float,
    y0: float,
    title: str,
    series: dict[str, list[tuple[int, float]]],
    lo: float,
    hi: float,
    ticks: list[tuple[float, str]],
) -> str:
    steps = [s for pts in series.values() for s, _ in pts]
    smax = max(steps) if steps else 1
    out = [
        f'<text x="{x0 + PAD}" y="{y0 + 14}" font-size="12" font-family="sans-serif">{title}</text>',
        f'<rect x="{x0 + PAD}" y="{y0 + 20}" width="{W - PAD - 8}" height="{H - 40}" fill="none" stroke="#999"/>',
    ]

    def xy(s: float, v: float) -> tuple[float, float]:
        x = x0 + PAD + (W - PAD - 8) * s / smax
        y = y0 + 20 + (H - 40) * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))
        return x, y

    for v, label in ticks:
        _, y = xy(0, v)
        out.append(f'<line x1="{x0 + PAD}" x2="{x0 + W - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{x0 + PAD - 4}" y="{y + 4:.1f}" font-size="9" text-anchor="end" font-family="sans-serif">{label}</text>'
        )
    for i, (name, pts) in enumerate(series.items()):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(s, v) for s, v in pts))
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[i % 4]}" stroke-width="0.8" opacity="0.8"/>')
        out.append(
            f'<text x="{x0 + W - 60}" y="{y0 + 34 + 12 * i}" font-size="10" fill="{COLORS[i % 4]}" font-family="sans-serif">{name}</text>'
        )
    out.append(
        f'<text x="{x0 + W - 8}" y="{y0 + H - 6}" font-size="9" text-anchor="end" font-family="sans-serif">step {smax}</text>'
    )
    return "\n".join(out)


def sink_coef_values(sink: MemorySink, mods: list[str]) -> list[list[float]]:
    return [[v for _, v in sink.series(f"coef/{m}")] for m in mods]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--setup", help="a setup of bench/effect.py (data, model, epochs), instead of --dataset")
    ap.add_argument("--epochs", type=int, help="default 5, or the setup's")
    ap.add_argument("--out", default="bench/figures/cggm_curves_synthetic.svg")
    args = ap.parse_args()
    torch.set_num_threads(1)
    extra: dict[str, object] = dict(s.split("=", 1) for s in args.sets)
    if args.setup is not None:
        from effect import SETUPS

        base: dict[str, object] = dict(SETUPS[args.setup])
    else:
        base = {"dataset": args.dataset, "epochs": 5}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    blocks = []
    for row, variant in enumerate(("paper", "stable")):
        sink = MemorySink()
        job = {**base, "method": "cggm", "variant": variant, "log_every": 1, "linear_probe": False, **extra}
        train(job, device="cpu", sink=sink)
        mods = sorted({p.key.split("/", 1)[1] for p in sink.points if p.key.startswith("coef/")})
        coef = {f"B {m}": [(s, symlog(v)) for s, v in sink.series(f"coef/{m}")] for m in mods}
        cos = {f"cos {m}": sink.series(f"cos/{m}") for m in mods}
        # B axis: ±the smallest power of ten (≥ 10) above every |B| of the run, decades as ticks.
        top = max((abs(v) for pts in sink_coef_values(sink, mods) for v in pts), default=1.0)
        decade = max(1, math.ceil(math.log10(max(top, 10.0))))
        marks = sorted({1, decade, *range(2, decade, max(1, decade // 4))})
        ticks_b = [(0.0, "0")] + [
            (symlog(sign * 10.0**k), f"{'-' if sign < 0 else ''}1e{k}" if k > 1 else f"{sign * 10:g}")
            for k in marks
            for sign in (-1, 1)
        ]
        lim = symlog(10.0**decade)
        eps = {f"ε {m}": sink.series(f"acc/{m}") for m in mods}
        y0 = row * H
        blocks.append(panel(0, y0, f"CGGM {variant}: B per step (symlog)", coef, -lim, lim, ticks_b))
        blocks.append(
            panel(
                W,
                y0,
                f"CGGM {variant}: cos(g_m, g_Ω) per step",
                cos,
                -1,
                1,
                [(-1, "-1"), (-0.5, "-0.5"), (0, "0"), (0.5, "0.5"), (1, "1")],
            )
        )
        blocks.append(
            panel(
                2 * W,
                y0,
                f"CGGM {variant}: ε_m (aux head's batch metric) per step",
                eps,
                0,
                1,
                [(0, "0"), (0.25, "0.25"), (0.5, "0.5"), (0.75, "0.75"), (1, "1")],
            )
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * W}" height="{2 * H}" viewBox="0 0 {3 * W} {2 * H}">'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(blocks) + "\n</svg>\n"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(svg)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
