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

- the discriminator `gman` holds N members built from any registered discriminator that outputs
  logits (`member`, with `member_options`; a third party's as well as `patchgan`), each
  initialised independently, and outputs `ENSEMBLE_LOGITS` (`"ensemble_logits"`): the list of
  the N members' predictions;
- the loss `gman` wraps any registered adversarial loss that scores logits (`base`: vanilla,
  lsgan, hinge, wgangp or another plugin's, with `base_options`) and scores that kind. The
  registry hands both factories a `ComponentBuilder` for the name the recipe gives, so this
  plugin imports no other plugin's factory. For D it is the **sum** of the members' losses: the
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
    >>> from translate_kit.api import Registry, get_plugin_manager
    >>> registry = Registry.from_plugin_manager(get_plugin_manager(distributions=["translate-kit"], disabled=[]))
    >>> d = registry.create("discriminator", "gman", num_d=2, member_options={"ndf": 8})
    >>> logits = d(torch.randn(1, 6, 32, 32))
    >>> len(logits), logits[0].shape
    (2, torch.Size([1, 1, 2, 2]))
    >>> softmax_weighted_mean(torch.tensor([1.0, 3.0]), 0.0)  # GMAN-0: the mean
    tensor(2.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import torch
from torch import nn

from translate_kit.api import (
    LOGITS,
    ComponentBuilder,
    ComponentRef,
    OptionsOf,
    SizeConstrained,
    register_discriminator,
    register_loss,
)

__all__ = [
    "ENSEMBLE_LOGITS",
    "GMANDiscriminator",
    "GMANLoss",
    "LogitDiscriminator",
    "LogitLoss",
    "gman_discriminator",
    "gman_loss",
    "softmax_weighted_mean",
]

ENSEMBLE_LOGITS = "ensemble_logits"  # the output kind: a list of N members' logit outputs

# The options naming what gman is made of. The recipe gives a name, checked at load against the
# registry (the member must output logits, the base must score them); the factory receives a
# `ComponentBuilder` that builds the named component with its `*_options`.
LogitDiscriminator = Annotated[ComponentBuilder, ComponentRef("discriminator", output=LOGITS)]
LogitLoss = Annotated[ComponentBuilder, ComponentRef("loss", scores=LOGITS)]

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
    member: LogitDiscriminator = "patchgan",
    member_options: Annotated[dict[str, Any] | None, OptionsOf("member")] = None,
) -> GMANDiscriminator:
    """GMAN's N discriminators, each built by `member` with `member_options` and its own random
    initialisation (they are built one after another from the global generator, so they differ).

    `member` names any registered discriminator that outputs logits, a third party's included;
    the recipe check looks it up (with suggestions) and checks `member_options` against its
    options. The registry passes a `ComponentBuilder` for it, which this factory calls N times.

    Args:
        in_channels: channels of what the members see; the method sets it, and gman sets it for
            every member (`member_options` may repeat it only with the same value).
        num_d: N, the number of discriminators (the paper uses 2 and 5).
        member: the registered discriminator each member is (a name in the recipe).
        member_options: that discriminator's options; the registry hands them to `member`.

    Raises:
        ValueError: num_d < 1, or a member that does not output logits.
        TypeError: `member` is a name, not a `ComponentBuilder`: build gman through the registry.

    Example:
        >>> from translate_kit.api import Registry, get_plugin_manager
        >>> registry = Registry.from_plugin_manager(get_plugin_manager(distributions=["translate-kit"], disabled=[]))
        >>> d = registry.create("discriminator", "gman", num_d=3)
        >>> sum(p.numel() for p in d.parameters())  # three 70x70 PatchGANs
        8306115
    """
    if num_d < 1:
        raise ValueError(f"Expected num_d >= 1, got {num_d}")
    if not isinstance(member, ComponentBuilder):
        raise TypeError(
            f"gman_discriminator builds its members through the registry, got member={member!r}: call "
            "registry.create('discriminator', 'gman', ...) or pass member=registry.builder('discriminator', name)"
        )
    # The recipe check refuses other outputs already; this guards a builder passed from Python.
    if member.spec.output != LOGITS:
        raise ValueError(f"gman's members must output {LOGITS}, got discriminator {member.name!r}, which outputs "
                         f"{member.spec.output}")
    return GMANDiscriminator([member(in_channels=in_channels) for _ in range(num_d)])


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
    base: LogitLoss = "vanilla",
    base_options: Annotated[dict[str, Any] | None, OptionsOf("base")] = None,
    lam: float = 1.0,
    detach_weights: bool = False,
) -> GMANLoss:
    """GMAN's loss for a `gman` discriminator: members' losses summed for D, softmax-weighted for G.

    Args:
        base: the adversarial loss each member is scored with (a name in the recipe): any
            registered loss that scores logits (vanilla, lsgan, hinge, wgangp, another plugin's).
        base_options: that loss's options (e.g. `{ gp_weight = 10.0 }` for wgangp); the
            registry hands them to `base`.
        lam: lambda of the weights softmax(lam * L_i): 0 is GMAN-0 (the mean), 1 is GMAN-1.
        detach_weights: treat the weights as constants in G's gradient (the paper does not).

    Raises:
        ValueError: a base that does not score logits, or a negative lam.
        TypeError: `base` is a name, not a `ComponentBuilder`: build gman through the registry.
    """
    if not isinstance(base, ComponentBuilder):
        raise TypeError(
            f"gman_loss builds its base loss through the registry, got base={base!r}: call "
            "registry.create('loss', 'gman', ...) or pass base=registry.builder('loss', name)"
        )
    # The recipe check refuses other losses already; this guards a builder passed from Python.
    if LOGITS not in (base.spec.scores or ()):
        raise ValueError(f"gman's base must be an adversarial loss that scores {LOGITS}, got loss {base.name!r}")
    if lam < 0:
        raise ValueError(f"Expected lam >= 0 (lam -> infinity tends to the harshest discriminator), got {lam}")
    return GMANLoss(base(), lam=lam, detach_weights=detach_weights)
