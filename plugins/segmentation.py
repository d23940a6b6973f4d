"""Train a semantic segmenter (photo -> class map) with the translate-kit trainer, for the FCN-score.

The data are ordinary paired images whose target is a colour label map (facades: the right half of
each file, in the 12-colour CMP palette). Targets are decoded to class indices by snapping each
pixel to the nearest palette colour; pixels farther than `max_distance` from every colour (JPEG
blur at region edges) are ignored by the loss. `translate()` returns the predicted label map
re-coloured in the palette, so the run's sample page shows photo | predicted labels | true labels.

Because the target is decoded from colours, keep `data.load_size` equal to `data.crop_size` in a
segmentation recipe: resizing a label map blends colours at every edge.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.eval.labels import FACADES, Palette, decode_palette, encode_palette
from translate_kit.method import Method, Parts, StepContext
from translate_kit.registry import register_method

__all__ = ["PALETTES", "Segmentation", "segmentation"]

PALETTES: dict[str, Palette] = {"facades": FACADES}


def labels_from_unit_range(images: torch.Tensor, palette: Palette, max_distance: float) -> torch.Tensor:
    """Class indices `(B, H, W)` (255 = ignore) of colour label maps given in [-1, 1]."""
    uint8 = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return decode_palette(uint8, palette, max_distance=max_distance)


class Segmentation(Method):
    """Cross-entropy training of the recipe's [segmenter] on (photo, colour label map) pairs.

    Args:
        segmenter: maps `(B, 3, H, W)` in [-1, 1] to logits `(B, K, H, W)`.
        palette: the K label colours.
        max_distance: target pixels farther than this (RGB Euclidean) from every colour are ignored.
    """

    sample_mode = "eval"

    def __init__(self, segmenter: nn.Module, palette: Palette, max_distance: float) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"S": segmenter})
        self.palette = palette
        self.max_distance = max_distance

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"S": ["S"]}

    def targets(self, label_images: torch.Tensor) -> torch.Tensor:
        return labels_from_unit_range(label_images, self.palette, self.max_distance)

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

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices `(B, H, W)` for photos `(B, 3, H, W)` in [-1, 1]."""
        return self.nets["S"](x).argmax(1)

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted label map, coloured in the palette, in [-1, 1] (for sample pages)."""
        colours = encode_palette(self.segment(x), self.palette)
        return colours.to(x.device).float().div(127.5).sub(1)


@register_method()
def segmentation(parts: Parts, /, *, palette: str = "facades", max_distance: float = 60.0) -> Segmentation:
    """Train a segmenter on photo -> colour label map pairs (for the FCN-score of `tkit eval`).

    Args:
        parts: builds the recipe's [segmenter] (given by the trainer).
        palette: the label colours: "facades" (the 12 CMP classes).
        max_distance: RGB distance beyond which a target pixel is ignored (edge blur).
    """
    if palette not in PALETTES:
        raise ValueError(f"unknown palette {palette!r}; choose one of {', '.join(sorted(PALETTES))}")
    chosen = PALETTES[palette]
    return Segmentation(parts.segmenter(num_classes=chosen.num_classes), chosen, max_distance)
