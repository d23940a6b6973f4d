"""Result pages: images written as PNG and an `index.html` that shows them beside their losses.

The page is static HTML with relative links, so a run folder can be copied anywhere and opened in a
browser. Loss curves are drawn as inline SVG from the trainer's logged history (kept in the
checkpoints, so a resumed run draws its whole past); no JavaScript library is needed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["SampleRow", "save_png", "to_uint8", "write_run_page"]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A float image `(C, H, W)` in [-1, 1] -> uint8 `(C, H, W)` on the CPU."""
    from translate_kit.data.jitter import from_unit_range

    return from_unit_range(image).cpu()


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write a uint8 or [-1, 1] float `(C, H, W)` image as PNG."""
    from torchvision.io import write_png

    if image.dtype != torch.uint8:
        image = to_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(image.cpu().contiguous(), str(path))


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One sample on the page: image paths relative to the page."""

    name: str
    input: str
    target: str
    outputs: Sequence[tuple[int, str]]  # (epoch, path), oldest first


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-bottom: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 4px; text-align: center; vertical-align: top; }
th { font-weight: 600; } img { image-rendering: pixelated; width: 192px; height: auto; display: block; }
.history img { width: 96px; } .caption { font-size: 0.8em; color: #666; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def _svg_chart(records: Sequence[Mapping[str, float]], keys: Sequence[str], width: int = 640, height: int = 220) -> str:
    steps = [r["step"] for r in records]
    if len(steps) < 2:
        return ""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    parts = [f'<svg width="{width}" height="{height + 30}" xmlns="http://www.w3.org/2000/svg">']
    x0, x1 = min(steps), max(steps)
    for i, key in enumerate(keys):
        values = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        if len(values) < 2:
            continue
        lo, hi = min(v for _, v in values), max(v for _, v in values)
        span = (hi - lo) or 1.0
        points = " ".join(
            f"{(s - x0) / ((x1 - x0) or 1) * (width - 10) + 5:.1f},{height - (v - lo) / span * (height - 10) - 5:.1f}"
            for s, v in values
        )
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(
            f'<text x="{5 + 150 * i}" y="{height + 20}" fill="{colour}" font-size="12">'
            f"{html.escape(key)} ({lo:.3g}..{hi:.3g})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def write_run_page(
    run_dir: Path,
    *,
    title: str,
    summary: Mapping[str, str],
    rows: Sequence[SampleRow],
    recipe_text: str,
    history: Sequence[Mapping[str, float]] = (),
) -> Path:
    """Write `run_dir/index.html`: input | output | target per sample, output history, loss curves.

    Args:
        history: logged records (`step` and the scalars); keys starting with `loss` are drawn.
    """
    run_dir = Path(run_dir)
    records = [r for r in history if "step" in r]
    loss_keys = sorted({k for r in records for k in r if k.startswith("loss")})
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<div class='meta'>" + " &middot; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in summary.items()),
        "</div>",
    ]
    if rows:
        latest = rows[0].outputs[-1][0] if rows[0].outputs else None
        out.append(f"<h2>Samples (epoch {latest})</h2><table><tr><th>name</th><th>input</th><th>output</th><th>target</th></tr>")
        for row in rows:
            output = row.outputs[-1][1] if row.outputs else ""
            out.append(
                f"<tr><td>{html.escape(row.name)}</td><td><img src='{html.escape(row.input)}' alt='input'></td>"
                f"<td><img src='{html.escape(output)}' alt='output'></td>"
                f"<td><img src='{html.escape(row.target)}' alt='target'></td></tr>"
            )
        out.append("</table>")
        out.append("<h2>Output over epochs</h2><table class='history'>")
        for row in rows:
            cells = "".join(
                f"<td><img src='{html.escape(p)}' alt='epoch {e}'><div class='caption'>epoch {e}</div></td>"
                for e, p in row.outputs
            )
            out.append(f"<tr><td>{html.escape(row.name)}</td>{cells}</tr>")
        out.append("</table>")
    if records:
        out.append("<h2>Losses</h2>" + _svg_chart(records, loss_keys))
    out.append(f"<h2>Recipe</h2><pre>{html.escape(recipe_text)}</pre></body></html>")
    page = run_dir / "index.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text("\n".join(out), encoding="utf-8")
    tmp.replace(page)
    return page
