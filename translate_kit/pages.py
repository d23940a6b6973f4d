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

__all__ = ["SampleRow", "save_png", "smoothed", "to_uint8", "write_run_page"]


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
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { border: 1px solid #eee; }
"""


def smoothed(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average with TensorBoard's bias correction, so the first values are not
    pulled towards 0: `weight` 0 returns the values, nearer 1 smooths more.

    Example:
        >>> [round(v, 3) for v in smoothed([1.0, 3.0, 3.0], 0.5)]
        [1.0, 2.333, 2.714]
    """
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def _tick_labels(values: Sequence[float]) -> list[str]:
    """The values with as few significant digits (3 or more) as keep them apart.

    Example:
        >>> _tick_labels([0.1696, 0.1698, 0.17])
        ['0.1696', '0.1698', '0.17']
    """
    for digits in range(3, 10):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(set(values)):
            return labels
    return labels


def _svg_chart(records: Sequence[Mapping[str, float]], key: str, width: int = 290, height: int = 180) -> str:
    """One scalar over the steps, with its own axes: the step at the bottom, the value at the left
    (three ticks each), the key and its latest value as the title; the raw values pale, their
    smoothed line (`smoothed`) dark. "" with fewer than two values."""
    values = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
    if len(values) < 2:
        return ""
    left, right, top, bottom = 52, 10, 24, 30  # margins for the tick labels and the title
    x0, x1 = values[0][0], values[-1][0]
    lo, hi = min(v for _, v in values), max(v for _, v in values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5

    def x(step: float) -> float:
        return left + (step - x0) / ((x1 - x0) or 1) * (width - left - right)

    def y(value: float) -> float:
        return height - bottom - (value - lo) / (hi - lo) * (height - top - bottom)

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="11">',
        f'<text x="{left}" y="14" font-weight="600">{html.escape(key.removeprefix("loss_"))}</text>',
        f'<text x="{width - right}" y="14" text-anchor="end" fill="#666">last {values[-1][1]:.4g}</text>',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" '
        'stroke="#ccc"/>',
    ]
    ticks = (lo, (lo + hi) / 2, hi)
    for value, label in zip(ticks, _tick_labels(ticks)):
        parts.append(f'<text x="{left - 4}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#666">{label}</text>')
    for step in sorted({x0, round((x0 + x1) / 2), x1}):  # whole steps, each where it belongs
        parts.append(f'<text x="{x(step):.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="#666">'
                     f"{step:,.0f}</text>")
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 2}" text-anchor="middle" fill="#666">'
                 "step</text>")
    raw = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in values)
    smooth = " ".join(f"{x(s):.1f},{y(v):.1f}" for (s, _), v in zip(values, smoothed([v for _, v in values])))
    parts.append(f'<polyline class="raw" fill="none" stroke="#9ecae1" stroke-width="1" points="{raw}"/>')
    parts.append(f'<polyline class="smooth" fill="none" stroke="#08519c" stroke-width="1.8" points="{smooth}"/></svg>')
    return "".join(parts)


def _charts(records: Sequence[Mapping[str, float]], keys: Sequence[str]) -> str:
    """A small chart per key, each on its own scale (losses differ by orders of magnitude)."""
    charts = [chart for chart in (_svg_chart(records, key) for key in keys) if chart]
    return f"<div class='charts'>{''.join(charts)}</div>" if charts else ""


def write_run_page(
    run_dir: Path,
    *,
    title: str,
    summary: Mapping[str, str],
    rows: Sequence[SampleRow],
    recipe_text: str,
    history: Sequence[Mapping[str, float]] = (),
    validation: Sequence[Mapping[str, float]] = (),
) -> Path:
    """Write `run_dir/index.html`: input | output | target per sample, output history, loss and
    validation curves.

    Args:
        history: logged records (`step` and the scalars); keys starting with `loss` are drawn.
        validation: validation records (`step` and the scores); every other key is drawn.
    """
    run_dir = Path(run_dir)
    records = [r for r in history if "step" in r]
    loss_keys = sorted({k for r in records for k in r if k.startswith("loss")})
    scores = [r for r in validation if "step" in r]
    score_keys = sorted({k for r in scores for k in r if k not in ("step", "epoch")})
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
        out.append("<h2>Losses</h2>" + _charts(records, loss_keys))
    if scores:
        out.append(f"<h2>Validation</h2>{_charts(scores, score_keys)}")
    out.append(f"<h2>Recipe</h2><pre>{html.escape(recipe_text)}</pre></body></html>")
    page = run_dir / "index.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text("\n".join(out), encoding="utf-8")
    tmp.replace(page)
    return page
