"""Train a semantic segmenter (photo -> class map) with the translate-kit trainer, for the FCN-score.

The data are ordinary paired images whose target is a label map, in one of two formats:

- `labels = "palette"`: a colour label map (facades: the right half of each file, in the 12-colour
  CMP palette). Each pixel snaps to the nearest palette colour; pixels farther than `max_distance`
  from every colour (JPEG blur at region edges) are ignored by the loss.
- `labels = "index"`: a one-channel image whose pixel values are class indices 0..num_classes-1
  (255 = no label), as Cityscapes' `*_trainIds.png` are; set `data.out_channels = 1`.

`translate()` returns the predicted label map coloured in the palette (for index labels, a generated
one), so the run's sample page shows photo | predicted labels | true labels.

Keep `data.load_size` equal to `data.crop_size` in a segmentation recipe: resizing a label map
blends colours (or indices) at every edge. Either may be one integer (square) or [height, width]:
the default `prepare_batch` crops (height, width) windows, and evaluation resizes to that size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import (
    FACADES,
    Method,
    Palette,
    Parts,
    StepContext,
    decode_index_image,
    decode_palette,
    encode_palette,
    from_unit_range,
    register_method,
    to_unit_range,
)

__all__ = ["PALETTES", "Segmentation", "generated_palette", "segmentation"]

PALETTES: dict[str, Palette] = {"facades": FACADES}


def generated_palette(num_classes: int) -> Palette:
    """Distinct colours for index labels, evenly spaced in hue (for pages only)."""
    import colorsys

    colors = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb(i / num_classes, 0.85 if i % 2 else 1.0, 1.0 if i % 3 else 0.7)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return Palette(tuple(f"class_{i}" for i in range(num_classes)), tuple(colors))


class Segmentation(Method):
    """Cross-entropy training of the recipe's [segmenter] on (photo, colour label map) pairs; a
    `PixelClassifier`, so `tkit eval --segmenter` can score with it.

    Args:
        segmenter: maps `(B, 3, H, W)` in [-1, 1] to logits `(B, K, H, W)`.
        palette: the K classes and their colours.
        max_distance: colour labels farther than this (RGB Euclidean) from every colour are ignored.
        label_format: "palette" (colour label maps) or "index" (class-index images).
    """

    sample_mode = "eval"
    static_step = True  # the same kernels every step: one CUDA graph on a GPU (train.cuda_graphs)
    roles = {"S": "translate"}

    def __init__(self, segmenter: nn.Module, palette: Palette, max_distance: float, label_format: str) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"S": segmenter})
        self.palette = palette
        self.max_distance = max_distance
        self.label_format = label_format

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"S": ["S"]}

    def decode_labels(self, label_images: torch.Tensor) -> torch.Tensor:
        """Class indices `(B, H, W)` (255 = no label) of uint8 label images `(B, C, H, W)`."""
        if self.label_format == "index":
            return decode_index_image(label_images[:, :1], self.palette.num_classes)
        return decode_palette(label_images, self.palette, max_distance=self.max_distance)

    def targets(self, label_images: torch.Tensor) -> torch.Tensor:
        """`decode` for label images given in [-1, 1], as the trainer hands them over."""
        return self.decode_labels(from_unit_range(label_images))

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        target = self.targets(batch["B"])
        valid = target != 255
        with ctx.autocast():
            logits = self.nets["S"](batch["A"])
        # Sum over the labelled pixels, divided by their count: a crop whose target is all edge
        # blur (every pixel ignored) gives 0, not the NaN of cross_entropy's mean over nothing.
        loss = F.cross_entropy(logits.float(), target, ignore_index=255, reduction="sum") / valid.sum().clamp(min=1)
        ctx.update("S", loss)
        with torch.no_grad():
            correct = (logits.argmax(1) == target) & valid
            accuracy = correct.sum() / valid.sum().clamp(min=1)
        return {"loss_CE": loss.detach(), "pixel_accuracy": accuracy.detach()}

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices `(B, H, W)` for photos `(B, 3, H, W)` in [-1, 1]."""
        return self.nets["S"](x).argmax(1)

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted label map, coloured in the palette, in [-1, 1] (for sample pages)."""
        return to_unit_range(encode_palette(self.classify(x), self.palette).to(x.device))


@register_method(tables={"segmenter": "segmenter"})
def segmentation(
    parts: Parts,
    /,
    *,
    labels: Literal["palette", "index"] = "palette",
    palette: str = "facades",
    max_distance: float = 60.0,
    num_classes: int = 0,
) -> Segmentation:
    """Train a segmenter on photo -> label map pairs (for the FCN-score of `tkit eval`).

    Args:
        parts: builds the recipe's [segmenter] (given by the trainer).
        labels: "palette" for colour label maps, "index" for class-index images.
        palette: the label colours when labels = "palette": "facades" (the 12 CMP classes).
        max_distance: RGB distance beyond which a colour label pixel is ignored (edge blur).
        num_classes: the number of classes when labels = "index".
    """
    if labels == "index":
        if num_classes < 1:
            raise ValueError("labels = 'index' needs num_classes >= 1 in [method]")
        chosen = generated_palette(num_classes)
    else:
        if palette not in PALETTES:
            raise ValueError(f"unknown palette {palette!r}; choose one of {', '.join(sorted(PALETTES))}")
        chosen = PALETTES[palette]
    return Segmentation(parts.segmenter(num_classes=chosen.num_classes), chosen, max_distance, labels)
