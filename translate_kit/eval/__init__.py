"""Evaluation: per-pixel metrics, the FCN-score confusion matrix, label-map decoding.

Everything streams batch by batch (`PixelMetrics`, `ConfusionMatrix`), so a split is never held in
memory. Only torch is imported here. FID and KID live in `translate_kit.eval.fid` (`FIDInception`,
`load_fid_inception`, `FIDKID`, `fid_kid`), which imports torchvision, and torchmetrics when used.
The diversity of a multimodal model's samples lives in `translate_kit.eval.diversity` (`Diversity`)
with LPIPS in `translate_kit.eval.lpips` (`LPIPS`, `load_lpips`, on torchvision's AlexNet or VGG16);
`translate_kit.eval.weights` finds and checks the published weight files both metrics read.
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
