"""Evaluation: per-pixel metrics, the FCN-score confusion matrix, label-map decoding.

Everything streams batch by batch (`PixelMetrics`, `ConfusionMatrix`), so a split is never held in
memory. Only torch is imported here. FID and KID live in `translate_kit.eval.fid` (`FIDInception`,
`load_fid_inception`, `FIDKID`, `fid_kid`), which imports torchvision, and torchmetrics when used.
"""

from translate_kit.eval.labels import (
    FACADES,
    IGNORE_INDEX,
    Palette,
    decode_index_image,
    decode_palette,
    encode_palette,
)
from translate_kit.eval.metrics import (
    PSNR,
    SSIM,
    ClassScore,
    ConfusionMatrix,
    FCNScore,
    PixelMetrics,
    l1,
    mse,
    psnr,
    ssim,
)

__all__ = [
    "FACADES",
    "IGNORE_INDEX",
    "PSNR",
    "SSIM",
    "ClassScore",
    "ConfusionMatrix",
    "FCNScore",
    "Palette",
    "PixelMetrics",
    "decode_index_image",
    "decode_palette",
    "encode_palette",
    "l1",
    "mse",
    "psnr",
    "ssim",
]
