"""The adversarial contract: what a discriminator outputs and what an adversarial loss scores.

A discriminator's registration declares its output (`@register_discriminator(output="logits")`)
and an adversarial loss's registration declares the outputs it scores
(`@register_loss(scores=("logits", "multiscale_logits"))`). A recipe pairing a loss with a
discriminator whose output it cannot score is refused when it is loaded, with a message naming
both and what would fit (`Registry.check_method_tables`). The standard outputs:

- `"logits"`: one tensor of real/fake logits, any shape (a PatchGAN's `(B, 1, h, w)` map);
- `"multiscale_logits"`: a list of such tensors, one per scale (pix2pixHD's multiscale D); with
  `return_features=True` the network also returns each scale's intermediate features;
- `"energy"`: one non-negative energy per sample, `(B,)`, low for real data (EBGAN's auto-encoder
  reconstruction error). Logit losses must not score it: a sigmoid of an energy means nothing.

These are strings, not a closed enum: a plugin may introduce another output kind together with
losses that score it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

__all__ = ["ENERGY", "LOGITS", "MULTISCALE_LOGITS", "AdversarialLoss", "Predictions"]

LOGITS = "logits"
MULTISCALE_LOGITS = "multiscale_logits"
ENERGY = "energy"

Predictions = torch.Tensor | Sequence[torch.Tensor]


@runtime_checkable
class AdversarialLoss(Protocol):
    """What a loss registered with `scores=...` must provide (a method calls nothing else).

    `__call__(prediction, target_is_real, for_discriminator=True)` scores a discriminator's output
    (a tensor, or a list of tensors for multiscale discriminators) against "real" or "fake" and
    returns a scalar. `for_discriminator` says whose loss it is: the discriminator's, or the
    generator's (which may differ, as for hinge and Wasserstein losses).

    `penalty(discriminator, real, fake)` is the discriminator's regulariser, added to its loss in
    the discriminator step: the gradient penalty of WGAN-GP, zero for losses without one. It gets
    the discriminator (or any callable of its input), and real and generated discriminator inputs
    of the same shape, which it must treat as constants (it trains the discriminator only), and
    returns a float32 scalar computed with autocast off.
    """

    def __call__(self, prediction: Predictions, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        ...

    def penalty(
        self, discriminator: Callable[[torch.Tensor], Predictions], real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        ...
