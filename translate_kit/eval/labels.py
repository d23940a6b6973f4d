"""Label maps to class indices and back: colour palettes and index images.

Class indices run `0..K-1` in palette order; `Palette.ids[i]` is the dataset's own id of index `i`
(for the facades set, index 0 is CMP id 1 "background", index 11 is CMP id 12 "shop"). Pixels that
belong to no class get `IGNORE_INDEX` (255), the value `ConfusionMatrix` skips by default.

Example:
    >>> FACADES.num_classes, FACADES.names[2], FACADES.ids[2]
    (12, 'window', 3)
    >>> image = torch.tensor(FACADES.colors[2], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    >>> decode_palette(image, FACADES, max_distance=50).tolist()
    [[2, 2], [2, 2]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from translate_kit.data.palette import FACADES_CLASSES, FACADES_PALETTE
from translate_kit.errors import DataError

__all__ = ["FACADES", "IGNORE_INDEX", "Palette", "decode_index_image", "decode_palette", "encode_palette"]

IGNORE_INDEX = 255


@dataclass(frozen=True, slots=True)
class Palette:
    """Named classes, each with one RGB colour.

    Args:
        names: K class names; index `i` of a decoded map is `names[i]`.
        colors: K `(r, g, b)` colours, each channel an int in 0..255, all different.
        ids: optional K dataset ids of the classes (e.g. CMP ids 1..12); `None` means `0..K-1`.

    Example:
        >>> p = Palette(("sky", "road"), ((0, 0, 255), (128, 128, 128)))
        >>> p.num_classes, p.ids
        (2, (0, 1))
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        if not names:
            raise ValueError("Expected at least one class, got an empty palette")
        if len(colors) != len(names):
            raise ValueError(f"Expected one colour per class ({len(names)}), got {len(colors)} colours")
        for name, color in zip(names, colors):
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ValueError(f"Expected an (r, g, b) colour with values 0..255 for '{name}', got {color}")
        if len(set(colors)) != len(colors):
            raise ValueError(f"Expected distinct colours, got {colors}")
        if len(set(names)) != len(names):
            raise ValueError(f"Expected distinct class names, got {names}")
        ids = tuple(range(len(names))) if self.ids is None else tuple(int(i) for i in self.ids)
        if len(ids) != len(names) or len(set(ids)) != len(ids):
            raise ValueError(f"Expected {len(names)} distinct ids, got {self.ids}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "ids", ids)

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def color_table(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The colours as a uint8 `(K, 3)` tensor."""
        return torch.tensor(self.colors, dtype=torch.uint8, device=device)


# The pix2pix facades label maps: 12 CMP classes; index i is CMP id i + 1.
FACADES = Palette(FACADES_CLASSES, FACADES_PALETTE, ids=tuple(range(1, len(FACADES_CLASSES) + 1)))


def _check_ignore_index(ignore_index: int, num_classes: int) -> None:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"Expected ignore_index to be an int, got {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"Expected ignore_index outside the class indices 0..{num_classes - 1}, got {ignore_index}")


def decode_palette(
    image: torch.Tensor,
    palette: Palette,
    max_distance: float | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Snap every pixel of a colour label map to the nearest palette colour.

    Distance is Euclidean in RGB, computed exactly in int32. Ties go to the lower class index. Pixels
    farther than `max_distance` from every colour (JPEG-blurred edges, stray colours) get
    `ignore_index`. Memory is a few int32 planes per pixel (about 40 bytes per pixel at peak, ~40 MB
    for a 1024² image), so no chunking is needed; the loop runs once per class.

    Args:
        image: uint8 `(3, H, W)` or `(B, 3, H, W)` RGB label map(s).
        palette: the classes and their colours.
        max_distance: largest RGB distance still given a class; `None` gives every pixel its nearest
            class (use that to decode a *prediction*, which `ConfusionMatrix` needs in `0..K-1`).
        ignore_index: value for pixels beyond `max_distance`; must not be a class index.

    Returns:
        int64 `(H, W)` or `(B, H, W)` class indices `0..K-1` (index i is `palette.names[i]`,
        dataset id `palette.ids[i]`) or `ignore_index`.

    Example:
        >>> # (3, 1, 2): a facade-blue pixel and a grey one; grey is nearest to "shop" but 159 away
        >>> image = torch.tensor([[[0, 100]], [[48, 100]], [[255, 100]]], dtype=torch.uint8)
        >>> decode_palette(image, FACADES).tolist(), decode_palette(image, FACADES, max_distance=40).tolist()
        ([[1, 11]], [[1, 255]])
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"Expected image to be a torch.Tensor, got {type(image).__name__}")
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"Expected an RGB label map of shape (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        raise TypeError(f"Expected a uint8 label map, got {image.dtype}")
    if not isinstance(palette, Palette):
        raise TypeError(f"Expected a Palette, got {type(palette).__name__}")
    if max_distance is not None and not (
        isinstance(max_distance, (int, float)) and math.isfinite(max_distance) and max_distance >= 0
    ):
        raise ValueError(f"Expected max_distance to be None or a finite number >= 0, got {max_distance!r}")
    _check_ignore_index(ignore_index, palette.num_classes)

    r, g, b = (image.select(-3, c).to(torch.int32) for c in range(3))
    best_d: torch.Tensor | None = None
    best = torch.zeros(r.shape, dtype=torch.int64, device=image.device)
    for index, (cr, cg, cb) in enumerate(palette.colors):
        d = (r - cr).square_().add_((g - cg).square_()).add_((b - cb).square_())
        if best_d is None:
            best_d = d
            continue
        closer = d < best_d  # strict: a tie keeps the lower index
        best.masked_fill_(closer, index)
        torch.minimum(best_d, d, out=best_d)
    assert best_d is not None
    if max_distance is not None:
        best.masked_fill_(best_d > max_distance * max_distance, ignore_index)
    return best


def decode_index_image(
    image: torch.Tensor,
    num_classes: int,
    ignore_values: Sequence[int] = (IGNORE_INDEX,),
    *,
    ignore_index: int = IGNORE_INDEX,
    source: str | None = None,
) -> torch.Tensor:
    """Read an index-image label map (each pixel value is a class index).

    Args:
        image: integer (usually uint8) `(1, H, W)` or `(B, 1, H, W)` map of class indices.
        num_classes: K; values `0..K-1` are classes.
        ignore_values: values that mark "no label" (e.g. 255, or 0 for "unknown"); they become
            `ignore_index`. A value in here wins over being a class index.
        ignore_index: the value ignored pixels get; must not be a class index.
        source: where the image came from (a file name), named in errors.

    Returns:
        int64 `(H, W)` or `(B, H, W)` class indices or `ignore_index`.

    Raises:
        DataError: a pixel value is neither a class index nor ignored; the message names the values.

    Example:
        >>> decode_index_image(torch.tensor([[[0, 2, 255]]], dtype=torch.uint8), num_classes=3).tolist()
        [[0, 2, 255]]
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"Expected image to be a torch.Tensor, got {type(image).__name__}")
    if image.ndim not in (3, 4) or image.shape[-3] != 1:
        raise ValueError(f"Expected an index image of shape (1, H, W) or (B, 1, H, W), got {tuple(image.shape)}")
    if image.is_floating_point() or image.is_complex() or image.dtype == torch.bool:
        raise TypeError(f"Expected an integer index image, got {image.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"Expected num_classes to be a positive int, got {num_classes!r}")
    _check_ignore_index(ignore_index, num_classes)

    labels = image.squeeze(-3).to(torch.int64)
    ignored = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for value in ignore_values:
        ignored |= labels == int(value)
    bad = ~ignored & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = torch.unique(labels[bad]).tolist()
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        where = f" in {source}" if source else ""
        raise DataError(
            f"Label value {values[0]}{where} is not a class: expected 0..{num_classes - 1} "
            f"(num_classes={num_classes}) or an ignored value {tuple(ignore_values)}, got values {shown} "
            f"in {int(bad.sum()):,} pixels. Set num_classes or ignore_values to match the label maps."
        )
    return labels.masked_fill_(ignored, ignore_index)


def encode_palette(
    indices: torch.Tensor,
    palette: Palette,
    *,
    ignore_index: int = IGNORE_INDEX,
    ignore_color: tuple[int, int, int] = (0, 0, 0),
) -> torch.Tensor:
    """Colour a map of class indices with the palette (e.g. a segmenter's prediction for a result page).

    Args:
        indices: integer `(H, W)` or `(B, H, W)` class indices `0..K-1` or `ignore_index`.
        palette: the classes and their colours.
        ignore_index: value drawn in `ignore_color`.
        ignore_color: RGB colour of ignored pixels.

    Returns:
        uint8 `(3, H, W)` or `(B, 3, H, W)` RGB image on the indices' device.

    Example:
        >>> encode_palette(torch.tensor([[0, 255]]), FACADES)[:, 0].tolist()
        [[0, 0], [0, 0], [222, 0]]
    """
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"Expected indices to be a torch.Tensor, got {type(indices).__name__}")
    if indices.ndim not in (2, 3):
        raise ValueError(f"Expected indices of shape (H, W) or (B, H, W), got {tuple(indices.shape)}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(f"Expected integer class indices, got {indices.dtype}")
    k = palette.num_classes
    _check_ignore_index(ignore_index, k)
    if len(ignore_color) != 3 or not all(0 <= int(v) <= 255 for v in ignore_color):
        raise ValueError(f"Expected ignore_color as (r, g, b) with values 0..255, got {ignore_color}")
    idx = indices.to(torch.int64)
    ignored = idx == ignore_index
    bad = ~ignored & ((idx < 0) | (idx >= k))
    if bool(bad.any()):
        values = torch.unique(idx[bad])[:5].tolist()
        raise ValueError(f"Expected class indices in 0..{k - 1} or ignore_index {ignore_index}, got values {values}")
    table = torch.tensor((*palette.colors, tuple(ignore_color)), dtype=torch.uint8, device=indices.device)
    rgb = table[idx.masked_fill(ignored, k)]  # (..., H, W, 3)
    return rgb.movedim(-1, -3).contiguous()
