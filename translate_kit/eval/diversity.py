"""Diversity of a multimodal translator: how far apart its samples for one input are.

The protocol is BicycleGAN's (Zhu et al., "Toward Multimodal Image-to-Image Translation", NeurIPS
2017, https://arxiv.org/abs/1711.11586, sec. 6): draw several samples per test input, take the LPIPS
distance (Zhang et al., CVPR 2018, https://arxiv.org/abs/1801.03924; `translate_kit.eval.lpips`)
between consecutive samples, 19 pairs for 20 samples, and average over pairs and inputs. Beside it,
a figure that needs no weights: the mean absolute difference of the same consecutive pairs, in the
units of images in [-1, 1] (twice the [0, 1] value; 0 for identical samples, 2 at most).

`tkit eval --diversity` (see `translate_kit.eval.evaluate`) adds the FCN-score of each sample set, so
that diversity is not bought with wrong layouts: sample `s` of every input forms one set, scored as
the split's outputs are; the report gives the mean (and spread) over the sets.

Deviation from the paper's setting: BicycleGAN draws an independent z for every sample of every
input. Here sample `s` of every input is drawn with the seed `seed + s`
(`Translator.translate_samples`), so that a figure can be repeated exactly; an input-independent
latent code is then shared by sample `s` of all inputs, which changes nothing in a per-input distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from translate_kit.eval.lpips import LPIPS
from translate_kit.eval.metrics import ConfusionMatrix

__all__ = ["DIVERSITY_SAMPLES", "Diversity", "consecutive_l1", "describe_diversity", "summarize_sample_fcn"]

DIVERSITY_SAMPLES = 20  # samples per input, BicycleGAN's (sec. 6: 19 pairs of 20)


def _to_unit_range(samples: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # uint8 PNG values to [-1, 1], as LPIPS takes them; float samples are taken as already there.
    return samples.to(dtype) / 127.5 - 1 if samples.dtype == torch.uint8 else samples.to(dtype)


def consecutive_l1(samples: torch.Tensor) -> torch.Tensor:
    """`(N - 1,)` mean absolute differences between samples `i` and `i + 1` of `(N, C, H, W)`, in
    [-1, 1] units: uint8 samples are mapped to [-1, 1] first; float ones must already be there.

    Example:
        >>> x = torch.tensor([0, 255, 255], dtype=torch.uint8).view(3, 1, 1, 1)
        >>> consecutive_l1(x).tolist()
        [2.0, 0.0]
    """
    x = _to_unit_range(samples, torch.float64)  # exact sums: the figure does not depend on the device
    return (x[1:] - x[:-1]).abs().flatten(1).mean(1)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


class Diversity:
    """Streaming diversity over a split, one input's samples at a time.

    Args:
        samples: samples per input (at least 2: one pair).
        lpips: an LPIPS network (`translate_kit.eval.lpips.load_lpips`); None leaves LPIPS out.
        batch_size: samples through LPIPS at once.

    Example:
        >>> d = Diversity(3)
        >>> d.update(torch.tensor([0, 255, 255], dtype=torch.uint8).view(3, 1, 1, 1))
        {'l1_diversity': 1.0}
        >>> d.compute()["l1"], d.compute()["pairs_per_input"]
        (1.0, 2)
    """

    def __init__(self, samples: int, *, lpips: LPIPS | None = None, batch_size: int = 8) -> None:
        if samples < 2:
            raise ValueError(f"Expected at least 2 samples per input (one pair), got {samples}")
        self.samples, self.lpips, self.batch_size = samples, lpips, batch_size
        self._l1: list[float] = []
        self._lpips: list[float] = []

    @torch.no_grad()
    def update(self, samples: torch.Tensor) -> dict[str, float]:
        """Add one input's `(N, C, H, W)` samples (uint8, or float in [-1, 1]), in draw order.

        Returns:
            This input's mean over its consecutive pairs: `l1_diversity`, and `lpips_diversity`
            when there is an LPIPS network.
        """
        if samples.ndim != 4 or len(samples) != self.samples:
            raise ValueError(f"Expected ({self.samples}, C, H, W) samples, got {tuple(samples.shape)}")
        row = {"l1_diversity": float(consecutive_l1(samples).mean())}
        self._l1.append(row["l1_diversity"])
        if self.lpips is not None:
            distances = self.lpips.consecutive(_to_unit_range(samples), batch_size=self.batch_size)
            row["lpips_diversity"] = float(distances.cpu().double().mean())  # the CPU: MPS has no float64
            self._lpips.append(row["lpips_diversity"])
        return row

    def compute(self) -> dict[str, Any]:
        """The split's figures: means over inputs of each input's mean over its pairs, and the
        standard deviation over inputs (population formula); keys in docs/metrics.md."""
        l1, l1_std = _mean_std(self._l1)
        out: dict[str, Any] = {"samples": self.samples, "inputs": len(self._l1), "pairs_per_input": self.samples - 1,
                               "l1": l1, "l1_std": l1_std, "l1_units": "[-1, 1]"}
        if self.lpips is not None:
            lpips, lpips_std = _mean_std(self._lpips)
            out |= {"lpips": lpips, "lpips_std": lpips_std, "lpips_net": self.lpips.name,
                    "lpips_weights": dict(self.lpips.weights), "lpips_weights_sha256": dict(self.lpips.weights_sha256)}
        return out


def summarize_sample_fcn(matrices: Sequence[ConfusionMatrix]) -> dict[str, Any]:
    """The FCN-score of each sample set (one confusion matrix per sample index over the split),
    summarised: mean, standard deviation (population) and minimum of the per-pixel accuracy over
    sets, the means of the per-class accuracy and class IoU, and each set's per-pixel accuracy.

    Example:
        >>> a, b = ConfusionMatrix(2), ConfusionMatrix(2)
        >>> a.update(torch.tensor([0, 1]), torch.tensor([0, 1]))  # both right
        >>> b.update(torch.tensor([1, 1]), torch.tensor([0, 1]))  # one of two right
        >>> s = summarize_sample_fcn([a, b])
        >>> s["pixel_accuracy"], s["pixel_accuracy_min"], s["per_sample_pixel_accuracy"]
        (0.75, 0.5, [1.0, 0.5])
    """
    scores = [m.compute() for m in matrices]
    accuracy = [s.pixel_accuracy for s in scores]
    mean, std = _mean_std(accuracy)

    def nanmean(values: Sequence[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return math.fsum(kept) / len(kept) if kept else math.nan

    return {"pixel_accuracy": mean, "pixel_accuracy_std": std, "pixel_accuracy_min": min(accuracy),
            "mean_class_accuracy": nanmean([s.mean_class_accuracy for s in scores]),
            "mean_iou": nanmean([s.mean_iou for s in scores]), "per_sample_pixel_accuracy": accuracy}


def describe_diversity(diversity: Mapping[str, Any]) -> str:
    """How the diversity figures were measured, in words, printed with them."""
    seed = diversity.get("seed")
    words = (f"{diversity['samples']} samples per input ({'seeds ' + str(seed) + ' + s' if seed is not None else 'unseeded'}"
             f"), the mean over {diversity['pairs_per_input']} consecutive pairs, averaged over "
             f"{diversity['inputs']} inputs (BicycleGAN's protocol); L1 in [-1, 1] units")
    if "lpips" in diversity:
        weights = diversity.get("lpips_weights") or {}
        sha = diversity.get("lpips_weights_sha256") or {}
        words += (f"; LPIPS v0.1 {diversity['lpips_net']} (weights {', '.join(weights.values()) or 'not from files'}, "
                  f"sha256 {', '.join(v[:12] for v in sha.values()) or '-'})")
    return words

