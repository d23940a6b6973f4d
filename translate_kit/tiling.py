"""Tiles of a large image: where they start and how their outputs blend.

`Translator` translates an image larger than its `tile` option tile by tile: `tile_starts` places
the tiles along each axis, `axis_windows` gives each the weights its output is blended with (in
each overlap one tile fades out as the next fades in, the weights summing to 1), and
`pad_centred` pads an image centred to the sizes the network takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["axis_windows", "pad_centred", "tile_starts"]


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Offsets of tiles of size `tile` every `step` pixels, the last one flush with the end.

    Example:
        >>> tile_starts(300, 128, 96)
        [0, 96, 172]
        >>> tile_starts(128, 128, 96)
        [0]
    """
    return list(range(0, length - tile, step)) + [length - tile]


def _fade_in(overlap: int) -> torch.Tensor:
    """Weights over an overlap of `overlap` pixels for the tile that starts there: 0 over the first
    quarter, a raised-cosine rise over the middle half, 1 over the last quarter. It and its mirror
    image (the fade-out of the tile before) sum to exactly 1."""
    margin = overlap // 4
    ramp = overlap - 2 * margin
    t = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
    rise = torch.sin(t * math.pi / 2) ** 2
    return torch.cat([torch.zeros(margin), rise, torch.ones(margin)])


def axis_windows(starts: Sequence[int], size: int) -> list[torch.Tensor]:
    """1-D blending weights of tiles of `size` pixels at `starts` (sorted) along one axis.

    In each overlap the outgoing tile fades out and the incoming one fades in (see `_fade_in`),
    the two weights summing to 1; sides at the image border keep weight 1. A tile's outer quarter
    of every overlap, where its output suffers most from the context beyond the tile, gets no
    weight at all, so a network whose receptive field reaches less than a quarter of the overlap
    gives exactly the untiled result.

    Example:
        >>> [[round(v, 3) for v in w.tolist()] for w in axis_windows([0, 4], 8)]
        [[1.0, 1.0, 1.0, 1.0, 1.0, 0.854, 0.146, 0.0], [0.0, 0.146, 0.854, 1.0, 1.0, 1.0, 1.0, 1.0]]
    """
    windows = []
    for i, start in enumerate(starts):
        weight = torch.ones(size)
        lead = starts[i - 1] + size - start if i > 0 else 0
        trail = start + size - starts[i + 1] if i + 1 < len(starts) else 0
        if lead > 0:
            weight[:lead] = _fade_in(lead)
        if trail > 0:
            weight[size - trail :] = torch.minimum(weight[size - trail :], _fade_in(trail).flip(0))
        windows.append(weight)
    return windows


def _centred_pads(length: int, target: int) -> tuple[int, int]:
    extra = target - length
    return extra // 2, extra - extra // 2


def pad_centred(x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad `(B, C, H, W)` centred to `(height, width)`; return it and the (top, left) offset."""
    top, bottom = _centred_pads(x.shape[-2], height)
    left, right = _centred_pads(x.shape[-1], width)
    if not (top or bottom or left or right):
        return x, (0, 0)
    # Reflection needs each pad to be smaller than the side it mirrors.
    fits = max(top, bottom) < x.shape[-2] and max(left, right) < x.shape[-1]
    padded = F.pad(x, (left, right, top, bottom), mode="reflect" if fits else "replicate")
    return padded, (top, left)
