"""Procedural CMP-like facade pairs, so the demo and the tests need no download.

`render_facade` draws a random building front as a label map in the facades palette
(`translate_kit.data.palette`) and renders a "photo" from it: per-class materials with a random
per-facade tint, plaster or brick texture, glass with frames and reflections, cast shadows under
cornices, sills and balconies, a lighting gradient and a slight blur. The photo is a learnable but
not trivial function of the labels, like the real set (labels -> photo is BtoA).
`write_synth_facades` writes such pairs in the pix2pix layout of the real set: `root/{split}/N.jpg`,
N from 1, photo (A) on the left and label map (B) on the right.

Every random draw comes from a local `torch.Generator` seeded from the seed, so a seed always gives
the same pair (for a given torch version) and the global RNG is never touched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from translate_kit.data.palette import FACADES_PALETTE
from translate_kit.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = ["render_facade", "split_counts", "write_synth_facades"]

MIN_SIZE = 32
DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))

# Class ids (1..12), as in FACADES_CLASSES.
_BACKGROUND, _FACADE, _WINDOW, _DOOR, _CORNICE, _SILL = 1, 2, 3, 4, 5, 6
_BALCONY, _BLIND, _DECO, _MOLDING, _PILLAR, _SHOP = 7, 8, 9, 10, 11, 12
# Classes that stick out of the wall and cast a shadow below them.
_PROTRUDING = (_CORNICE, _SILL, _BALCONY, _MOLDING, _DECO)

_WALL_COLOURS = (
    (222, 205, 170),  # beige
    (236, 228, 210),  # off-white
    (200, 192, 182),  # warm grey
    (172, 176, 180),  # cool grey
    (214, 178, 118),  # ochre
    (186, 104, 82),  # brick red
    (226, 188, 176),  # pink
    (198, 210, 186),  # pale green
)
_SHUTTER_COLOURS = ((62, 92, 64), (112, 80, 52), (150, 150, 146), (222, 220, 212), (140, 58, 46))
_DOOR_COLOURS = ((92, 62, 40), (48, 66, 52), (60, 42, 30), (40, 40, 44))
_SIGN_COLOURS = ((190, 30, 30), (30, 70, 160), (230, 200, 40), (240, 240, 240), (30, 120, 60))

_M64 = (1 << 64) - 1
_Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), clipped to the canvas
_Colour = tuple[float, ...]  # RGB, 0..255


def _splitmix64(x: int) -> int:
    # torch seeds its CPU generator with the low 32 bits only, so nearby or 2**32-apart seeds are
    # scrambled first to keep different seeds from giving the same facade.
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class _Random:
    """Scalar draws from a pre-drawn pool (one torch call per 512 draws) plus noise tensors."""

    def __init__(self, seed: int) -> None:
        import torch

        self.generator = torch.Generator().manual_seed(_splitmix64(seed & _M64))
        self._pool: list[float] = []
        self._next = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if self._next == len(self._pool):
            import torch

            self._pool = torch.rand(512, generator=self.generator, dtype=torch.float64).tolist()
            self._next = 0
        self._next += 1
        return low + (high - low) * self._pool[self._next - 1]

    def randint(self, low: int, high: int) -> int:
        """Integer in [low, high], both ends included."""
        return min(high, low + int(self.uniform() * (high - low + 1)))

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def choice(self, options: Sequence):
        return options[self.randint(0, len(options) - 1)]

    def colour(self, base: Sequence[float], jitter: float, gain: tuple[float, float] = (1.0, 1.0)) -> _Colour:
        """`base` scaled by a gain drawn from `gain`, plus per-channel jitter, clipped to 0..255."""
        g = self.uniform(*gain)
        return tuple(min(255.0, max(0.0, g * c + self.uniform(-jitter, jitter))) for c in base)

    def noise(self, *shape: int) -> torch.Tensor:
        import torch

        return torch.rand(shape, generator=self.generator)


class _Canvas:
    """A label map and a photo painted together, one rectangle at a time."""

    def __init__(self, size: int, sky_top: _Colour, sky_low: _Colour) -> None:
        import torch

        self.size = size
        self.torch = torch
        # Planes 0-2: photo RGB; 3-5: label map RGB; 6: 1 on bare wall; 7: 1 where something
        # protrudes and casts a shadow. One slice assignment paints them all: at 256 px the
        # per-rectangle overhead of torch calls, not pixel work, is what costs.
        self.planes = torch.zeros(8, size, size)
        self.photo = self.planes[:3]
        self.planes[3:6] = torch.tensor(FACADES_PALETTE[_BACKGROUND - 1])[:, None, None]
        top, low = torch.tensor(sky_top)[:, None, None], torch.tensor(sky_low)[:, None, None]
        self.photo[:] = top + (low - top) * torch.linspace(0, 1, size)[:, None]
        self._vectors: dict[tuple[int | None, _Colour], torch.Tensor] = {}

    def box(self, y0: float, y1: float, x0: float, x1: float) -> _Box | None:
        """Round and clip a rectangle to the canvas; None when nothing of it is left."""
        s = self.size
        a, b, c, d = max(0, round(y0)), min(s, round(y1)), max(0, round(x0)), min(s, round(x1))
        return (a, b, c, d) if a < b and c < d else None

    def fill(self, box: _Box | None, colour: _Colour, cls: int | None = None) -> _Box | None:
        """Paint `box` in `colour`; with `cls`, label it too (`cls=None` paints the photo only)."""
        if box is None:
            return None
        vector = self._vectors.get((cls, colour))
        if vector is None:
            values = colour if cls is None else (*colour, *FACADES_PALETTE[cls - 1], cls == _FACADE, cls in _PROTRUDING)
            vector = self._vectors[cls, colour] = self.torch.tensor(values, dtype=self.torch.float32)[:, None, None]
        a, b, c, d = box
        (self.photo if cls is None else self.planes)[:, a:b, c:d] = vector
        return box

    def rect(self, cls: int | None, y0: float, y1: float, x0: float, x1: float, colour: _Colour) -> _Box | None:
        return self.fill(self.box(y0, y1, x0, x1), colour, cls)

    def shade(self, box: _Box | None, top: float, bottom: float) -> None:
        """Multiply the photo inside `box` by a vertical ramp from `top` to `bottom`."""
        if box is not None:
            a, b, c, d = box
            self.photo[:, a:b, c:d] *= self.torch.linspace(top, bottom, b - a)[:, None]

    def rows(self, box: _Box | None, pattern: torch.Tensor) -> None:
        """Multiply the photo inside `box` by a per-row pattern of length `size` (slats, courses)."""
        if box is not None:
            a, b, c, d = box
            self.photo[:, a:b, c:d] *= pattern[a:b, None]


def _new_style(rng: _Random, size: int) -> dict:
    """Materials and drawing sizes of one facade."""
    import torch

    px = size / 256
    ys = torch.arange(size)
    wall = rng.colour(rng.choice(_WALL_COLOURS), 14, (0.78, 1.08))
    trim = rng.colour(wall, 8, (1.04, 1.2)) if rng.chance(0.6) else rng.colour((215, 210, 198), 14, (0.85, 1.08))
    frame = rng.choice(((232, 232, 226), (70, 52, 40), (50, 54, 58), trim))
    bar_px = max(2, round(4 * px))
    return {
        "wall": wall,
        "trim": trim,
        "deco": rng.colour(trim, 10, (0.82, 0.95)),
        "glass": rng.colour((46, 58, 70), 12, (0.7, 1.2)),
        "frame": rng.colour(frame, 10),
        "frame_px": max(1, round(2 * px * rng.uniform(0.6, 1.4))),
        "transom": rng.uniform(0.25, 0.4),
        "shutter": rng.colour(rng.choice(_SHUTTER_COLOURS), 12, (0.85, 1.1)),
        "slats": 1 - 0.25 * (ys % max(2, round(3 * px)) == 0).float(),
        "courses": 1 - 0.2 * (ys % max(2, round(6 * px)) == 0).float(),
        "railing": rng.chance(0.6),
        "bars": (ys % bar_px == 0).float()[None, None, :],
        "balcony": rng.colour((44, 44, 46), 8) if rng.chance(0.6) else rng.colour(trim, 8, (0.9, 1.0)),
        "behind": torch.tensor(rng.colour(wall, 10, (0.45, 0.65)))[:, None, None],
        "door": rng.colour(rng.choice(_DOOR_COLOURS), 12, (0.8, 1.2)),
    }


def _glass_tiles(rng: _Random, style: dict, height: float, width: float) -> list[torch.Tensor]:
    """Three glazing variants of one facade's windows, (3, H, W) each, cut to size per window.

    Glass reflects the sky in its upper panes and shows a darker interior below, with a diagonal
    glint; one variant has a lit or curtained room. Mullion and transom sit at the nominal window
    centre (windows differ from it by at most a pixel of rounding).
    """
    import torch

    t = style["frame_px"]
    h, w = max(1, math.ceil(height) + 2 - 2 * t), max(1, math.ceil(width) + 2 - 2 * t)
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    tiles = []
    for variant in range(3):
        glass = torch.tensor(rng.colour(style["glass"], 12, (0.8, 1.25)))[:, None, None]
        light = torch.linspace(rng.uniform(1.3, 1.9), rng.uniform(0.7, 1.0), h)[:, None]
        glint = ((xs + ys * rng.uniform(0.5, 1.5) - w * rng.uniform(0, 1.5)).abs() < w * 0.12).float()
        tile = glass * (light + rng.uniform(0.2, 0.5) * glint)
        if variant == 2:
            room = torch.tensor(rng.colour((200, 190, 160), 30, (0.6, 1.0)))[:, None, None]
            tile[:, round(h * rng.uniform(0.3, 0.6)) :] = room
        round_w = round(width) - 2 * t
        if round_w >= 4 * t:  # mullion and transom of a casement window
            frame = torch.tensor(style["frame"])[:, None, None]
            m = (round_w - t) // 2
            k = round(h * style["transom"])
            tile[:, :, m : m + t] = frame
            tile[:, k : k + t] = frame
        tiles.append(tile)
    return tiles


def _paint_window(cv: _Canvas, rng: _Random, style: dict, y0: float, y1: float, x0: float, x1: float) -> None:
    box = cv.rect(_WINDOW, y0, y1, x0, x1, style["frame"])
    t = style["frame_px"]
    if box is not None and box[1] - box[0] > 2 * t and box[3] - box[2] > 2 * t:
        a, b, c, d = box[0] + t, box[1] - t, box[2] + t, box[3] - t
        cv.photo[:, a:b, c:d] = rng.choice(style["glass_tiles"])[:, : b - a, : d - c]


def _paint_blind(cv: _Canvas, style: dict, y0: float, y1: float, x0: float, x1: float) -> None:
    cv.rows(cv.rect(_BLIND, y0, y1, x0, x1, style["shutter"]), style["slats"])


def _paint_balcony(cv: _Canvas, style: dict, y0: float, y1: float, x0: float, x1: float) -> None:
    box = cv.rect(_BALCONY, y0, y1, x0, x1, style["balcony"])
    if box is None:
        return
    a, b, c, d = box
    slab = max(1, round((b - a) * 0.2))
    cv.photo[:, b - slab : b, c:d] *= 0.7
    top = a + max(1, round((b - a) * 0.15))
    if style["railing"] and top < b - slab:
        # An iron railing: bars with the shadowed wall showing between them.
        bars = style["bars"][..., c:d]
        region = cv.photo[:, top : b - slab, c:d]
        region.mul_(bars).add_(style["behind"] * (1 - bars))


def _paint_door(cv: _Canvas, style: dict, y0: float, y1: float, x0: float, x1: float) -> None:
    box = cv.rect(_DOOR, y0, y1, x0, x1, style["door"])
    if box is None:
        return
    a, b, c, d = box
    h, w = b - a, d - c
    cv.shade(box, 0.8, 1.1)
    if w > 5 and h > 8:  # two recessed panels
        p = max(1, w // 6)
        cv.photo[:, a + p : a + h // 2 - p // 2, c + p : d - p] *= 0.8
        cv.photo[:, a + h // 2 + p // 2 : b - p, c + p : d - p] *= 0.8


def _paint_shop(cv: _Canvas, rng: _Random, style: dict, y0: float, y1: float, x0: float, x1: float) -> None:
    box = cv.rect(_SHOP, y0, y1, x0, x1, rng.colour(style["glass"], 10, (0.7, 1.1)))
    if box is None:
        return
    a, b, c, d = box
    cv.shade(box, rng.uniform(1.2, 1.6), rng.uniform(0.8, 1.2))
    sign = a + max(1, round((b - a) * rng.uniform(0.15, 0.28)))
    cv.fill((a, sign, c, d), rng.colour(rng.choice(_SIGN_COLOURS), 25))
    cv.fill((sign, min(b, sign + style["frame_px"]), c, d), style["frame"])


def _layout(cv: _Canvas, rng: _Random, style: dict) -> None:
    """Draw the sky, the facade and everything on it, back to front."""
    s = cv.size
    px = s / 256

    # Sky at the top; on the sides a neighbouring building or the black border of a rectified photo.
    top = 0.0 if rng.chance(0.2) else s * rng.uniform(0.03, 0.22)
    left = s * rng.uniform(0.03, 0.22) if rng.chance(0.35) else 0.0
    right = s * rng.uniform(0.03, 0.22) if rng.chance(0.35) else 0.0
    for x0, x1 in ((0, left), (s - right, s)):
        side = (0, 0, 0) if rng.chance(0.5) else rng.colour(rng.choice(_WALL_COLOURS), 20, (0.5, 0.9))
        cv.rect(None, rng.uniform(0, top + s * 0.1), s, x0, x1, side)
    if top > 8 * px and rng.chance(0.5):  # a roof above the facade, labelled background as in CMP
        roof = rng.colour((110, 70, 60), 25, (0.6, 1.1))
        cv.rect(None, top - s * rng.uniform(0.02, 0.06), top, left, s - right, roof)

    fx0, fx1 = left, s - right
    cv.rect(_FACADE, top, s, fx0, fx1, style["wall"])
    width, height = fx1 - fx0, s - top

    # Crown of the building: a molding or cornice band along the top, sometimes on consoles.
    crown = 0.0
    if rng.chance(0.7):
        crown = height * rng.uniform(0.03, 0.07)
        cv.rect(rng.choice((_MOLDING, _MOLDING, _CORNICE)), top, top + crown, fx0, fx1, style["trim"])
        if rng.chance(0.3):
            n = rng.randint(4, 12)
            half = width * 0.01 + px
            for i in range(n):
                x = fx0 + width * (i + 0.5) / n
                cv.rect(_DECO, top + crown, top + crown * 1.6, x - half, x + half, style["deco"])

    # Floors: a ground floor and 1..6 upper floors of equal height, on a grid of window columns.
    ground = height * rng.uniform(0.14, 0.24)
    upper = height - ground - crown
    floors = max(1, min(rng.randint(2, 6), int(upper / (s * 0.09))))
    fh = upper / floors
    margin = width * rng.uniform(0.02, 0.09)
    cols = max(1, min(rng.randint(2, 8), int((width - 2 * margin) / (s * 0.07))))
    pitch = (width - 2 * margin) / cols
    ww = pitch * rng.uniform(0.38, 0.7)
    wh = fh * rng.uniform(0.45, 0.72)
    wy = rng.uniform(0.3, 0.6)  # where the window sits in the floor's spare height
    style["glass_tiles"] = _glass_tiles(rng, style, wh * 1.15, ww)
    floor_top = [top + crown + i * fh for i in range(floors)]
    ground_top = top + crown + upper

    # Pillars (pilasters) between the window columns, over some of the upper floors.
    if rng.chance(0.25):
        pw = pitch * rng.uniform(0.1, 0.22)
        f0 = rng.randint(0, floors - 1)
        f1 = rng.randint(f0, floors - 1)
        for i in range(cols + 1):
            x = fx0 + margin + i * pitch
            cv.rect(_PILLAR, floor_top[f0], floor_top[f1] + fh, x - pw / 2, x + pw / 2, style["trim"])

    # String courses (molding bands) between floors; most likely above the ground floor.
    band = max(1.0, height * rng.uniform(0.015, 0.04))
    p_band = rng.uniform(0.0, 0.5)
    for i in range(1, floors + 1):
        if rng.chance(0.65 if i == floors else p_band):
            y = floor_top[i] if i < floors else ground_top
            cv.rect(_MOLDING, y - band / 2, y + band / 2, fx0, fx1, style["trim"])

    # Window decorations, chosen once per facade (CMP facades are regular).
    has_surround = rng.chance(0.3)
    has_crown = rng.chance(0.35)
    has_deco = rng.chance(0.25)
    has_sill = rng.chance(0.65)
    blinds = rng.choice((None, None, "shutters", "roller"))
    p_balcony = rng.uniform(0.0, 0.5) if rng.chance(0.6) else 0.0
    sill_h = max(1.0, fh * rng.uniform(0.04, 0.07))
    sill_w = ww * rng.uniform(1.05, 1.3)
    crown_h = max(1.0, fh * rng.uniform(0.06, 0.12))
    tall = rng.randint(0, floors - 1) if rng.chance(0.3) else -1  # a piano nobile

    for f in range(floors):
        h = wh * (1.15 if f == tall else 1.0)
        y0 = floor_top[f] + (fh - h) * wy
        y1 = y0 + h
        balcony = rng.chance(p_balcony)
        continuous = balcony and rng.chance(0.35)
        for col in range(cols):
            cx = fx0 + margin + (col + 0.5) * pitch
            x0, x1 = cx - ww / 2, cx + ww / 2
            if has_surround:
                pad = ww * 0.12
                cv.rect(_MOLDING, y0 - pad, y1 + pad * 0.5, x0 - pad, x1 + pad, style["trim"])
            if has_crown:
                cv.rect(_CORNICE, y0 - crown_h * 1.3, y0 - crown_h * 0.3, x0 - ww * 0.15, x1 + ww * 0.15, style["trim"])
            if has_deco:
                dy = y0 - crown_h * (2.4 if has_crown else 1.2)
                cv.rect(_DECO, dy, dy + crown_h, cx - ww * 0.2, cx + ww * 0.2, style["deco"])
            _paint_window(cv, rng, style, y0, y1, x0, x1)
            if blinds == "shutters" and rng.chance(0.8):
                sw = ww * rng.uniform(0.4, 0.5)
                _paint_blind(cv, style, y0, y1, x0 - sw, x0)
                _paint_blind(cv, style, y0, y1, x1, x1 + sw)
            elif blinds == "roller" and rng.chance(0.7):
                _paint_blind(cv, style, y0, y0 + h * rng.uniform(0.15, 0.9), x0, x1)
            if has_sill:
                cv.rect(_SILL, y1, y1 + sill_h, cx - sill_w / 2, cx + sill_w / 2, style["trim"])
            if balcony and not continuous:
                bw = ww * rng.uniform(1.2, 1.7)
                _paint_balcony(cv, style, y1 - h * 0.35, y1 + sill_h, cx - bw / 2, cx + bw / 2)
        if continuous:
            _paint_balcony(cv, style, y1 - h * 0.35, y1 + sill_h, fx0 + margin * 0.5, fx1 - margin * 0.5)

    # Ground floor: shop fronts or plain windows, and a door.
    gh = s - ground_top
    door_col = cols // 2 if rng.chance(0.5) else rng.randint(0, cols - 1)
    has_door = rng.chance(0.85)
    shops = rng.chance(0.55)
    if rng.chance(0.4):  # a rusticated (darker, banded) ground floor, still labelled facade
        rustic = rng.colour(style["wall"], 8, (0.75, 0.92))
        cv.rows(cv.rect(None, ground_top + band / 2, s, fx0, fx1, rustic), style["courses"])
    gw = pitch * rng.uniform(0.7, 0.95)
    gsh = gh * rng.uniform(0.55, 0.85)
    gwh = min(wh, gh * 0.7)  # ground-floor windows fit the glass tiles: no taller than wh
    gy0 = ground_top + (gh - gwh) * 0.45
    for col in range(cols):
        cx = fx0 + margin + (col + 0.5) * pitch
        if has_door and col == door_col:
            dw = pitch * rng.uniform(0.35, 0.6)
            _paint_door(cv, style, s - gh * rng.uniform(0.6, 0.88), s, cx - dw / 2, cx + dw / 2)
        elif shops and rng.chance(0.85):
            _paint_shop(cv, rng, style, s - gsh, s, cx - gw / 2, cx + gw / 2)
        else:
            _paint_window(cv, rng, style, gy0, gy0 + gwh, cx - ww / 2, cx + ww / 2)
            if has_sill:
                cv.rect(_SILL, gy0 + gwh, gy0 + gwh + sill_h, cx - sill_w / 2, cx + sill_w / 2, style["trim"])


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    import torch

    # float -> uint8 directly takes a slow path on CPU; through int16 it is several times faster.
    return x.to(torch.int16).to(torch.uint8)


def _finish_photo(cv: _Canvas, rng: _Random) -> torch.Tensor:
    """Texture, shadows, lighting and blur over the flat painted photo; returns uint8 (3, S, S)."""
    import torch
    import torch.nn.functional as F

    s = cv.size
    wall, relief = cv.planes[6], cv.planes[7]

    # One (S, S) gain map for texture, shadows and light, applied to the photo in a single pass.
    # Plaster stains (low frequency) and grain (high frequency), strongest on the wall.
    cells = max(2, s // 16)
    stains = F.interpolate(rng.noise(1, 1, cells, cells), size=(s, s), mode="bilinear", align_corners=False)[0, 0]
    gain = 1 + rng.uniform(0.04, 0.14) * (stains - 0.5) * (0.4 + 0.6 * wall)
    gain += rng.uniform(0.03, 0.08) * (rng.noise(s, s) - 0.5)
    if rng.chance(0.3):  # brick or ashlar courses on the wall, every other course offset
        course = max(2, round(s / 256 * rng.uniform(4, 9)))
        ys, xs = torch.arange(s), torch.arange(s)
        odd = (ys // course % 2 == 1)[:, None]
        joint = torch.where(odd, (xs + course) % (2 * course) == 0, xs % (2 * course) == 0)
        joint |= (ys % course == 0)[:, None]
        gain -= rng.uniform(0.1, 0.25) * joint * wall

    # Cast shadows just below whatever protrudes (cornices, sills, balconies, moldings, deco).
    d = max(1, round(s / 256 * rng.uniform(1.5, 4)))
    gain[d:] *= 1 - rng.uniform(0.15, 0.4) * relief[:-d] * (1 - relief[d:])

    # Sun or overcast lighting across the whole picture.
    ramp = torch.linspace(-0.5, 0.5, s)
    across = rng.uniform(0.85, 1.1) + rng.uniform(-0.25, 0.25) * ramp
    gain *= across[None, :] + rng.uniform(-0.15, 0.15) * ramp[:, None]
    photo = cv.photo * gain

    # Slight camera blur: a separable Gaussian as a sum of shifted copies, which beats a depthwise
    # conv2d on CPU for so few taps.
    sigma = rng.uniform(0.35, 0.8) * max(1.0, s / 256)
    radius = max(1, round(1.5 * sigma))
    taps = [math.exp(-((i / sigma) ** 2) / 2) for i in range(radius + 1)]
    taps = [t / (2 * sum(taps) - taps[0]) for t in taps]
    for pad, dim in (((radius, radius, 0, 0), 2), ((0, 0, radius, radius), 1)):
        padded = F.pad(photo[None], pad, mode="replicate")[0]
        photo = padded.narrow(dim, radius, s) * taps[0]
        for i in range(1, radius + 1):
            photo += taps[i] * (padded.narrow(dim, radius - i, s) + padded.narrow(dim, radius + i, s))
    return _to_uint8(photo.add_(0.5).clamp_(0, 255))


def render_facade(seed: int, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one synthetic facade: a photo and its label map in the facades palette.

    Args:
        seed: Any integer; the same seed always gives the same pair.
        size: Height and width in pixels (at least 32).

    Returns:
        `(photo, label_map)`, both uint8 tensors of shape (3, size, size). Every pixel of
        `label_map` is exactly one of the 12 `FACADES_PALETTE` colours.

    Raises:
        ValueError: If `size` is below 32.

    Example:
        >>> photo, labels = render_facade(0, size=64)
        >>> photo.shape, labels.dtype
        (torch.Size([3, 64, 64]), torch.uint8)
    """
    if size < MIN_SIZE:
        raise ValueError(f"Expected size >= {MIN_SIZE}, got {size}")
    rng = _Random(seed)
    sky_top = rng.colour((150, 182, 225), 20, (0.85, 1.1))
    cv = _Canvas(size, sky_top, rng.colour((215, 222, 230), 15, (0.9, 1.1)))
    _layout(cv, rng, _new_style(rng, size))
    return _finish_photo(cv, rng), _to_uint8(cv.planes[3:6])


def split_counts(count: int, splits: Sequence[tuple[str, float]] = DEFAULT_SPLITS) -> dict[str, int]:
    """Share `count` images between splits by their fractions (largest remainder).

    Every split gets at least one image when `count >= len(splits)`.

    Example:
        >>> split_counts(200)
        {'train': 160, 'val': 20, 'test': 20}
        >>> split_counts(3)
        {'train': 1, 'val': 1, 'test': 1}
    """
    total = sum(f for _, f in splits)
    exact = [count * f / total for _, f in splits]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(splits)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    if count >= len(splits):
        for i, n in enumerate(counts):
            if n == 0:
                counts[i] = 1
                counts[counts.index(max(counts))] -= 1
    return {name: n for (name, _), n in zip(splits, counts)}


def _check_args(root: Path, count: int, size: int, splits: Sequence[tuple[str, float]], quality: int) -> None:
    where = f"(writing synthetic facades to {root})"
    if count < 1:
        raise DataError(f"Expected a positive image count, got {count} {where}.")
    if size < MIN_SIZE:
        raise DataError(f"Expected an image size of at least {MIN_SIZE} pixels, got {size} {where}.")
    if not 1 <= quality <= 100:
        raise DataError(f"Expected a JPEG quality between 1 and 100, got {quality} {where}.")
    names = [name for name, _ in splits]
    if not splits or len(set(names)) != len(names) or any(not n or "/" in n or "\\" in n for n in names):
        raise DataError(f"Expected distinct, non-empty split folder names, got {names} {where}.")
    if any(not f > 0 for _, f in splits):
        raise DataError(f"Expected positive split fractions, got {list(splits)} {where}.")


def write_synth_facades(
    root: Path,
    *,
    count: int = 200,
    size: int = 256,
    splits: Sequence[tuple[str, float]] = DEFAULT_SPLITS,
    seed: int = 0,
    quality: int = 95,
    overwrite: bool = False,
    on_image: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Write synthetic facade pairs in the pix2pix layout of the real facades set.

    Each file `root/{split}/{n}.jpg` (n = 1, 2, ...) is a (2·size)×size JPEG with the photo (A) on
    the left and the label map (B) on the right, so labels -> photo is BtoA, as for the real set.
    Images are numbered 0..count-1 across splits in order; image k is `render_facade(s_k, size)`
    with `s_k` derived from `seed` and `k`, so a seed always writes the same files.

    Args:
        root: Dataset folder; split folders are created inside it.
        count: Number of pairs over all splits.
        size: Height of each image in pixels (each half is size×size); at least 32.
        splits: `(folder name, fraction)` pairs; fractions are normalised. Every split gets at
            least one image when `count >= len(splits)`.
        seed: Seed of the whole set.
        quality: JPEG quality, 1..100.
        overwrite: Allow split folders that already hold files; numbered `*.jpg` files in them
            are deleted first so the folder holds exactly the new set. Other files are kept.
        on_image: Called once after each image is written (e.g. to advance a progress bar).

    Returns:
        The number of images written per split, e.g. `{"train": 160, "val": 20, "test": 20}`.

    Raises:
        DataError: If an argument is out of range, or a split folder is not empty and
            `overwrite` is false.
    """
    import torch
    from torchvision.io import encode_jpeg, write_file

    root = Path(root)
    _check_args(root, count, size, splits, quality)
    counts = split_counts(count, splits)
    folders = [root / name for name in counts]
    clash = [f for f in (root, *folders) if f.exists() and not f.is_dir()]
    if clash:
        raise DataError(
            f"Cannot write synthetic facades: {clash[0]} is a file, not a folder. "
            "Move it or choose another root folder."
        )
    busy = [f for f in folders if f.is_dir() and any(f.iterdir())]
    if busy and not overwrite:
        raise DataError(
            f"Refusing to write synthetic facades into non-empty folder(s): {', '.join(map(str, busy))}. "
            "Choose another root folder, empty these folders, or pass overwrite=True (--overwrite) "
            "to replace the numbered .jpg files in them."
        )
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.jpg"):
                if old.stem.isdigit() and old.is_file():
                    old.unlink()
    except OSError as error:
        raise DataError(f"Cannot prepare {root} for synthetic facades: {error}. Choose another root folder.") from None

    base = _splitmix64(seed & _M64)
    k = 0
    with _one_thread():
        for name, n in counts.items():
            for i in range(1, n + 1):
                photo, labels = render_facade((base + k) & _M64, size)
                pair = torch.cat((photo, labels), dim=2)
                write_file(str(root / name / f"{i}.jpg"), encode_jpeg(pair, quality=quality))
                k += 1
                if on_image is not None:
                    on_image()
    return counts


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous setting.

    Rendering is hundreds of small ops; on a busy machine, intra-op threads waiting for each other
    made it 5-10x slower (measured: 95 vs 14 pairs/s at 256 px on 2 loaded cores).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
