"""GMAN: N discriminators, each trained on its own loss; G minimises a softmax-weighted mean of theirs.

Durugkar, Gemp & Mahadevan, "Generative Multi-Adversarial Networks", ICLR 2017,
https://arxiv.org/abs/1611.01673 (Section 3; GMAN-lambda and GMAN* in Section 3.3-3.4).

G faces N discriminators D_1..D_N. Each D_i maximises its own value V_i (here: minimises its own
adversarial loss). G minimises the "soft-discriminator" mean of its losses L_i against each D_i,

    F_lambda(L) = sum_i w_i L_i,    w = softmax(lambda * L),

so lambda = 0 is the arithmetic mean (GMAN-0), lambda -> infinity the loss against the harshest
discriminator (GMAN-max), and a finite lambda in between (GMAN-lambda; the paper reports GMAN-1).
F_lambda is a function of the losses whose gradient includes the weights' own (the paper's
GMAN* learns lambda through exactly that gradient, which would be zero if the weights were
constants), so by default the weights are not detached: ``dF/dL_i = w_i (1 + lambda (L_i - F))``.
`detach_weights=True` treats them as constants instead (gradient ``w_i``).

Two plugins make GMAN out of any method that scores one discriminator with a `gan_mode` loss
(pix2pix: `[discriminator] name = "gman"`, `gan_mode = "gman"`, no new method):

- the discriminator `gman` holds N members built from a registered logit discriminator (`member`,
  with `member_options`), each initialised independently, and outputs `ENSEMBLE_LOGITS`
  (`"ensemble_logits"`): the list of the N members' predictions;
- the loss `gman` wraps a base adversarial loss (`base`: vanilla, lsgan, hinge, wgangp, with
  `base_options`) and scores that kind. For D it is the **sum** of the members' losses: the
  members share no parameter, so the gradient of the sum with respect to D_i's weights is exactly
  the gradient of D_i's own loss, as if each were trained alone (a mean would scale each member's
  gradient by 1/N). For G it is F_lambda above. Its `penalty` is the sum of the base loss's
  penalty for each member (wgangp: one gradient penalty per member).

The adversarial contract refuses a `gman` discriminator with a plain loss (vanilla would average
the members for G as well, silently GMAN-0) and a `gman` loss with a single discriminator.

Deviations from the paper: the members see the same batch (the reference code gives each
discriminator its own slice of a larger batch and its own dropout rate; pix2pix's facades batch of
one cannot be split), so they differ by their initialisation only. GMAN* (learned lambda, with a
penalty on small lambda) is not implemented: lambda would be a parameter of G's optimiser, which
a loss cannot add to a method's optimiser groups.

Example:
    >>> import torch
    >>> d = gman_discriminator(num_d=2, member_options={"ndf": 8})
    >>> logits = d(torch.randn(1, 6, 32, 32))
    >>> len(logits), logits[0].shape
    (2, torch.Size([1, 1, 2, 2]))
    >>> softmax_weighted_mean(torch.tensor([1.0, 3.0]), 0.0)  # GMAN-0: the mean
    tensor(2.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import torch
from torch import nn
from translate_kit_plugins.gan_losses import hinge, lsgan, vanilla, wgangp
from translate_kit_plugins.patchgan import patchgan, patchgan_16, patchgan_70, patchgan_286, pixelgan

from translate_kit.api import ComponentRef, OptionsOf, SizeConstrained, register_discriminator, register_loss

__all__ = [
    "ENSEMBLE_LOGITS",
    "GMANDiscriminator",
    "GMANLoss",
    "gman_discriminator",
    "gman_loss",
    "softmax_weighted_mean",
]

ENSEMBLE_LOGITS = "ensemble_logits"  # the output kind: a list of N members' logit outputs

# Members and base losses are built from these first-party factories: a discriminator or loss
# factory receives no registry, so it cannot build a third party's component by name (see
# `gman_discriminator`). Each member outputs logits, which every base loss here scores.
MEMBERS: Mapping[str, Callable[..., nn.Module]] = {
    "patchgan": patchgan,
    "patchgan_16": patchgan_16,
    "patchgan_70": patchgan_70,
    "patchgan_286": patchgan_286,
    "pixelgan": pixelgan,
}
BASE_LOSSES: Mapping[str, Callable[..., nn.Module]] = {
    "vanilla": vanilla,
    "lsgan": lsgan,
    "hinge": hinge,
    "wgangp": wgangp,
}

Predictions = torch.Tensor | Sequence[torch.Tensor]


# --- the weighting -------------------------------------------------------------------------------


def softmax_weighted_mean(losses: torch.Tensor, lam: float, *, detach_weights: bool = False) -> torch.Tensor:
    """GMAN's soft-discriminator mean ``sum_i softmax(lam * losses)_i * losses_i``.

    lam = 0 gives the arithmetic mean; as lam grows it tends to ``max(losses)``; a negative lam
    tends to the minimum (the paper keeps lam >= 0).

    Args:
        losses: (N,) the generator's loss against each discriminator.
        lam: the softmax's inverse temperature (lambda).
        detach_weights: treat the weights as constants (no gradient through the softmax).

    Returns:
        A scalar of the losses' dtype.

    Example:
        >>> losses = torch.tensor([0.0, math.log(3.0)])  # weights at lam 1: 1/4, 3/4
        >>> softmax_weighted_mean(losses, 1.0)
        tensor(0.8240)
        >>> softmax_weighted_mean(losses, 1000.0)  # the max
        tensor(1.0986)
    """
    if losses.ndim != 1 or losses.numel() == 0:
        raise ValueError(f"Expected a non-empty vector of per-discriminator losses, got shape {tuple(losses.shape)}")
    weights = torch.softmax(lam * (losses.detach() if detach_weights else losses), dim=0)
    return (weights * losses).sum()


# --- the discriminator ---------------------------------------------------------------------------


class GMANDiscriminator(nn.Module):
    """N discriminators side by side; `forward` returns the list of their outputs.

    Args:
        members: the N discriminators, each mapping (B, C, H, W) to logits.

    Attributes:
        size_multiple, min_size: the strictest of the members' (`SizeConstrained`) declarations.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("Expected at least one member discriminator, got none")
        self.members = nn.ModuleList(members)
        sized = [m for m in self.members if isinstance(m, SizeConstrained)]
        self.size_multiple = math.lcm(*(int(m.size_multiple) for m in sized)) if sized else 1
        self.min_size = max((int(m.min_size) for m in sized), default=0)

    def forward(self, x: torch.Tensor) -> list[Predictions]:
        """Each member's prediction for the batch, in member order.

        Args:
            x: (B, C, H, W), what every member takes (a pix2pix pair).

        Returns:
            A list of N outputs, each what its member returns (a (B, 1, h, w) logit map for a PatchGAN).
        """
        return [member(x) for member in self.members]


@register_discriminator("gman", output=ENSEMBLE_LOGITS, tiny={"num_d": 2, "member_options": {"ndf": 4}})
def gman_discriminator(
    *,
    in_channels: int = 6,
    num_d: int = 3,
    member: Annotated[str, ComponentRef("discriminator")] = "patchgan",
    member_options: Annotated[dict[str, Any] | None, OptionsOf("member")] = None,
) -> GMANDiscriminator:
    """GMAN's N discriminators, each built by `member` with `member_options` and its own random
    initialisation (they are built one after another from the global generator, so they differ).

    `member` is checked against the registry when the recipe is loaded, and `member_options`
    against that discriminator's options. It must be one of translate-kit's logit discriminators
    (patchgan, patchgan_16, patchgan_70, patchgan_286, pixelgan): a discriminator factory gets no
    registry, so another plugin's discriminator cannot be built here.

    Args:
        in_channels: channels of what the members see; the method sets it.
        num_d: N, the number of discriminators (the paper uses 2 and 5).
        member: the registered discriminator each member is.
        member_options: that discriminator's options, except `in_channels`.

    Raises:
        ValueError: num_d < 1, a member this plugin cannot build, or `in_channels` in member_options.

    Example:
        >>> d = gman_discriminator(num_d=3)
        >>> sum(p.numel() for p in d.parameters())  # three 70x70 PatchGANs
        8306115
    """
    if num_d < 1:
        raise ValueError(f"Expected num_d >= 1, got {num_d}")
    factory = MEMBERS.get(member)
    if factory is None:
        raise ValueError(
            f"gman builds its members from {', '.join(MEMBERS)}, got member={member!r}: a discriminator factory "
            "gets no registry, so gman builds only the logit discriminators it imports; choose one of them"
        )
    options = dict(member_options or {})
    if "in_channels" in options:
        raise ValueError("member_options sets in_channels, which the method sets for every member; remove it")
    return GMANDiscriminator([factory(in_channels=in_channels, **options) for _ in range(num_d)])


# --- the loss ------------------------------------------------------------------------------------


class GMANLoss(nn.Module):
    """GMAN's loss over an `ENSEMBLE_LOGITS` prediction, from a base adversarial loss.

    - for the discriminators: ``sum_i base(pred_i)`` (each member gets its own loss's gradient);
    - for the generator: ``softmax_weighted_mean([base(pred_i) for i], lam)``.

    Args:
        base: an adversarial loss scoring each member's prediction (`GANLoss`).
        lam: lambda of the softmax weights (0: GMAN-0, the mean).
        detach_weights: treat the generator's weights as constants.
    """

    def __init__(self, base: nn.Module, *, lam: float = 1.0, detach_weights: bool = False) -> None:
        super().__init__()
        self.base = base
        self.lam = lam
        self.detach_weights = detach_weights

    def member_losses(
        self, prediction: Sequence[Predictions], target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """(N,) the base loss of each member's prediction (float32 for half-precision predictions)."""
        if isinstance(prediction, torch.Tensor) or not isinstance(prediction, Sequence) or not prediction:
            raise TypeError(
                "Expected the list of member predictions of an ensemble_logits discriminator (gman), got "
                f"{type(prediction).__name__}"
            )
        return torch.stack([self.base(p, target_is_real, for_discriminator) for p in prediction])

    def forward(
        self, prediction: Sequence[Predictions], target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """The ensemble's loss: the members' sum for D, the softmax-weighted mean for G.

        Args:
            prediction: one output per member discriminator.
            target_is_real: score against "real" (True) or "fake".
            for_discriminator: the loss trains the discriminators (True) or the generator.

        Returns:
            A scalar (float32 for half-precision predictions).
        """
        losses = self.member_losses(prediction, target_is_real, for_discriminator)
        if for_discriminator:
            return losses.sum()
        return softmax_weighted_mean(losses, self.lam, detach_weights=self.detach_weights)

    def penalty(
        self, discriminator: Callable[[torch.Tensor], Sequence[Predictions]], real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        """The sum over members of the base loss's penalty (zero unless the base has one).

        The penalty gets a callable, not the members (the discriminator may be wrapped for DDP or
        compiled), so member i's penalty calls the ensemble and keeps output i: a wgangp base costs
        N ensemble passes. Base losses without a penalty never call it, and cost nothing.
        """
        members: list[int] = []  # the ensemble's size, learnt from the first call, if any

        def member(index: int) -> Callable[[torch.Tensor], Predictions]:
            def call(x: torch.Tensor) -> Predictions:
                outputs = discriminator(x)
                members[:] = [len(outputs)]
                return outputs[index]

            return call

        total = self.base.penalty(member(0), real, fake)
        for index in range(1, members[0] if members else 1):
            total = total + self.base.penalty(member(index), real, fake)
        return total

    def extra_repr(self) -> str:
        return f"lam={self.lam}, detach_weights={self.detach_weights}"


@register_loss("gman", scores=(ENSEMBLE_LOGITS,))
def gman_loss(
    *,
    base: Annotated[str, ComponentRef("loss")] = "vanilla",
    base_options: Annotated[dict[str, Any] | None, OptionsOf("base")] = None,
    lam: float = 1.0,
    detach_weights: bool = False,
) -> GMANLoss:
    """GMAN's loss for a `gman` discriminator: members' losses summed for D, softmax-weighted for G.

    Args:
        base: the adversarial loss each member is scored with: vanilla, lsgan, hinge or wgangp.
        base_options: that loss's options (e.g. `{ gp_weight = 10.0 }` for wgangp).
        lam: lambda of the weights softmax(lam * L_i): 0 is GMAN-0 (the mean), 1 is GMAN-1.
        detach_weights: treat the weights as constants in G's gradient (the paper does not).

    Raises:
        ValueError: a base this plugin cannot build, or a negative lam.
    """
    factory = BASE_LOSSES.get(base)
    if factory is None:
        raise ValueError(
            f"gman's base must be one of {', '.join(BASE_LOSSES)} (adversarial losses that score one logit map), "
            f"got base={base!r}"
        )
    if lam < 0:
        raise ValueError(f"Expected lam >= 0 (lam -> infinity tends to the harshest discriminator), got {lam}")
    return GMANLoss(factory(**(base_options or {})), lam=lam, detach_weights=detach_weights)
