"""The 12-colour label palette of the pix2pix facades set (CMP Facade Database classes).

The pix2pix label maps do not use the CMP PNG palette; these are the colours measured on the
606 pix2pix images (DESIGN.md §3, `shared/data/facades/SOURCE.md`). Class ids run 1..12 in the
CMP order, so `FACADES_PALETTE[i - 1]` is the colour of class id `i`. Plain Python data, so the
CLI can import this module without loading torch.

Example:
    >>> FACADES_CLASSES[0], FACADES_PALETTE[0]
    ('background', (0, 0, 222))
    >>> dict(zip(FACADES_CLASSES, FACADES_PALETTE))["window"]
    (0, 128, 255)
"""

from __future__ import annotations

__all__ = ["FACADES_CLASSES", "FACADES_PALETTE"]

# CMP class names in id order: FACADES_CLASSES[i - 1] is class id i.
FACADES_CLASSES: tuple[str, ...] = (
    "background",
    "facade",
    "window",
    "door",
    "cornice",
    "sill",
    "balcony",
    "blind",
    "deco",
    "molding",
    "pillar",
    "shop",
)

# RGB colour of each class in the pix2pix label maps, in the same order as FACADES_CLASSES.
FACADES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 222),
    (0, 48, 255),
    (0, 128, 255),
    (1, 207, 255),
    (32, 255, 224),
    (112, 254, 142),
    (192, 255, 63),
    (254, 240, 3),
    (255, 159, 0),
    (255, 80, 0),
    (253, 1, 2),
    (174, 0, 1),
)
