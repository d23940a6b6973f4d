"""Adversarial losses (vanilla, LSGAN, hinge, WGAN-GP) and the L1 reconstruction loss of pix2pix.

- vanilla: Goodfellow et al., 2014, https://arxiv.org/abs/1406.2661, binary cross-entropy on logits
  (the generator minimises -log D(G(x)), the non-saturating form); pix2pix's choice.
- lsgan: Mao et al., 2017, https://arxiv.org/abs/1611.04076, squared error to the labels
  (pix2pixHD, CycleGAN).
- hinge: Lim & Ye, 2017, https://arxiv.org/abs/1705.02894 (SPADE's choice).
- wgangp: Gulrajani et al., 2017, https://arxiv.org/abs/1704.00028, the critic's score difference
  plus a gradient penalty at random interpolates of real and fake samples.

As in kornia, each loss is a function (`gan_loss`, `gradient_penalty`) beside a module (`GANLoss`).
Predictions may be one logit map or a list of them (a multiscale discriminator); the loss is then
the mean over the list. Lower-precision predictions (float16, bfloat16, as autocast produces) are
scored in float32.

Example:
    >>> import torch
    >>> criterion = vanilla()
    >>> logits = torch.zeros(1, 1, 30, 30)
    >>> round(criterion(logits, target_is_real=True).item(), 4)  # log 2
    0.6931
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import LOGITS, MULTISCALE_LOGITS, register_loss

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "GANMode",
    "gan_loss",
    "gradient_penalty",
    "hinge",
    "l1",
    "lsgan",
    "mse",
    "vanilla",
    "wgangp",
]

GANMode = Literal["vanilla", "lsgan", "hinge", "wgangp"]
GAN_MODES: tuple[str, ...] = get_args(GANMode)

Predictions = torch.Tensor | Sequence[torch.Tensor]
# Each loss scores one logit map, or a list of them (the mean of the per-map losses).
_SCORES = (LOGITS, MULTISCALE_LOGITS)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _single(
    x: torch.Tensor, real: bool, mode: str, for_discriminator: bool, target_real: float, target_fake: float
) -> torch.Tensor:
    x = _as_float(x)
    if mode in ("vanilla", "lsgan"):
        # A 0-d target expanded to the prediction's shape: a view, no allocation per element.
        target = torch.full((), target_real if real else target_fake, dtype=x.dtype, device=x.device).expand_as(x)
        if mode == "vanilla":
            return F.binary_cross_entropy_with_logits(x, target)
        return F.mse_loss(x, target)
    if not for_discriminator:  # hinge and wgangp: the generator raises the critic's score of its fakes
        if not real:
            raise ValueError(f"The generator's {mode} loss needs target_is_real=True, got False")
        return -x.mean()
    if mode == "hinge":
        return F.relu(1.0 - x).mean() if real else F.relu(1.0 + x).mean()
    return -x.mean() if real else x.mean()  # wgangp critic


def gan_loss(
    prediction: Predictions,
    target_is_real: bool,
    mode: str,
    for_discriminator: bool = True,
    *,
    target_real: float = 1.0,
    target_fake: float = 0.0,
) -> torch.Tensor:
    """Adversarial loss of discriminator logits against "real" or "fake".

    - vanilla: BCE(x, target_real) for real, BCE(x, target_fake) for fake, for D and G alike.
    - lsgan: mean((x - target_real)^2) for real, mean((x - target_fake)^2) for fake, for D and G.
    - hinge: D mean(relu(1 - x)) for real, mean(relu(1 + x)) for fake; G -mean(x).
    - wgangp: D -mean(x) for real, mean(x) for fake; G -mean(x) (add `gradient_penalty` to D's loss).

    For vanilla and lsgan the generator's loss is the discriminator's loss with the "real" label,
    so `for_discriminator` changes nothing; hinge and wgangp use -mean(x) for the generator.

    Args:
        prediction: logits of shape (B, 1, h, w) (any shape works), or a list of them; a list
            gives the mean of the per-tensor losses.
        target_is_real: score against the "real" label (True) or the "fake" one.
        mode: one of "vanilla", "lsgan", "hinge", "wgangp".
        for_discriminator: the loss trains the discriminator (True) or the generator.
        target_real: the "real" label of vanilla and lsgan (below 1 for one-sided label smoothing).
        target_fake: the "fake" label of vanilla and lsgan.

    Returns:
        A scalar tensor, in the prediction's dtype (float32 for float16/bfloat16 predictions).

    Raises:
        ValueError: unknown mode, an empty list, or a hinge/wgangp generator loss with
            ``target_is_real=False``.

    Example:
        >>> x = torch.tensor([2.0, -1.0])
        >>> gan_loss(x, True, "hinge"), gan_loss(x, False, "hinge"), gan_loss(x, True, "hinge", False)
        (tensor(1.), tensor(1.5000), tensor(-0.5000))
    """
    if mode not in GAN_MODES:
        raise ValueError(f"Expected mode to be one of {', '.join(GAN_MODES)}, got {mode!r}")
    if isinstance(prediction, torch.Tensor):
        return _single(prediction, target_is_real, mode, for_discriminator, target_real, target_fake)
    if len(prediction) == 0:
        raise ValueError("Expected a tensor or a non-empty list of tensors, got an empty list")
    losses = [_single(p, target_is_real, mode, for_discriminator, target_real, target_fake) for p in prediction]
    return torch.stack(losses).mean()


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    *,
    target_norm: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP gradient penalty: ``weight * mean_b (||grad_x D(x_b)|| - target_norm)^2``.

    ``x_b = a_b * real_b + (1 - a_b) * fake_b`` with one ``a_b ~ U(0, 1)`` per sample (Gulrajani et
    al. 2017, Algorithm 1). The gradient is that of the sum of D's outputs (all patches, all scales)
    with respect to the whole sample, and the graph is kept so the penalty trains D. It is computed
    with autocast disabled, so a float16 discriminator pass cannot underflow the gradient.

    Args:
        discriminator: maps (B, C, H, W) to logits, or to a list of logits (summed).
        real: real samples, shape (B, C, H, W).
        fake: generated samples of the same shape. Both are detached: the penalty trains D only.
        weight: the penalty weight (lambda, 10 in the paper).
        target_norm: the gradient norm the penalty pulls towards.
        generator: random generator for the interpolation weights (for reproducibility).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``real`` and ``fake`` differ in shape.

    Example:
        >>> w = torch.full((1, 1, 2, 2), 1.5)  # D(x) = sum(w * x) has gradient w, norm 3
        >>> gradient_penalty(lambda x: (w * x).sum(), torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2))
        tensor(40.)
    """
    if real.shape != fake.shape:
        raise ValueError(f"Expected real and fake of the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    with torch.autocast(real.device.type, enabled=False):
        real, fake = _as_float(real.detach()), _as_float(fake.detach())
        alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator, device=real.device)
        mixed = torch.lerp(fake, real, alpha.to(real.dtype)).requires_grad_(True)
        scores = discriminator(mixed)
        total = scores.sum() if isinstance(scores, torch.Tensor) else sum(s.sum() for s in scores)
        (grad,) = torch.autograd.grad(total, mixed, create_graph=True)
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)  # its gradient at 0 is 0, not NaN
        return weight * (norm - target_norm).square().mean()


class GANLoss(nn.Module):
    """Module form of `gan_loss`, with the mode's options and its regulariser (`penalty`).

    Args:
        mode: one of "vanilla", "lsgan", "hinge", "wgangp".
        target_real: the "real" label of vanilla and lsgan.
        target_fake: the "fake" label of vanilla and lsgan.
        gp_weight: gradient-penalty weight of wgangp.

    Example:
        >>> criterion = GANLoss("wgangp")
        >>> d = torch.nn.Conv2d(3, 1, 3)
        >>> real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
        >>> loss_d = criterion(d(real), True) + criterion(d(fake), False) + criterion.penalty(d, real, fake)
        >>> loss_d.shape
        torch.Size([])
    """

    def __init__(
        self, mode: str, *, target_real: float = 1.0, target_fake: float = 0.0, gp_weight: float = 10.0
    ) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"Expected mode to be one of {', '.join(GAN_MODES)}, got {mode!r}")
        self.mode = mode
        self.target_real = target_real
        self.target_fake = target_fake
        self.gp_weight = gp_weight

    def forward(self, prediction: Predictions, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        """The loss of `prediction` (a tensor or a list of them); see `gan_loss`."""
        return gan_loss(
            prediction,
            target_is_real,
            self.mode,
            for_discriminator,
            target_real=self.target_real,
            target_fake=self.target_fake,
        )

    def penalty(
        self,
        discriminator: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
        real: torch.Tensor,
        fake: torch.Tensor,
    ) -> torch.Tensor:
        """The discriminator's regulariser: the gradient penalty for wgangp, a zero scalar otherwise.

        Args:
            discriminator: the discriminator (or a function of the sample it scores).
            real: real samples (B, C, H, W), as the discriminator sees them.
            fake: generated samples of the same shape.
        """
        if self.mode == "wgangp" and self.gp_weight != 0:
            return gradient_penalty(discriminator, real, fake, self.gp_weight)
        return real.new_zeros((), dtype=torch.float32 if real.dtype in (torch.float16, torch.bfloat16) else None)

    def extra_repr(self) -> str:
        options = f", target_real={self.target_real}, target_fake={self.target_fake}"
        if self.mode == "wgangp":
            options = f", gp_weight={self.gp_weight}"
        elif self.mode == "hinge":
            options = ""
        return f"mode={self.mode!r}{options}"


@register_loss(scores=_SCORES)
def vanilla(*, target_real: float = 1.0, target_fake: float = 0.0) -> GANLoss:
    """Binary cross-entropy on logits (pix2pix); target_real < 1 gives one-sided label smoothing."""
    return GANLoss("vanilla", target_real=target_real, target_fake=target_fake)


@register_loss(scores=_SCORES)
def lsgan(*, target_real: float = 1.0, target_fake: float = 0.0) -> GANLoss:
    """Least-squares GAN loss (pix2pixHD, CycleGAN): squared error to the labels."""
    return GANLoss("lsgan", target_real=target_real, target_fake=target_fake)


@register_loss(scores=_SCORES)
def hinge() -> GANLoss:
    """Hinge loss (SPADE): D minimises relu(1 - real) + relu(1 + fake), G minimises -fake."""
    return GANLoss("hinge")


@register_loss(scores=_SCORES)
def wgangp(*, gp_weight: float = 10.0) -> GANLoss:
    """Wasserstein loss with gradient penalty; `penalty()` adds gp_weight * (||grad D|| - 1)^2."""
    return GANLoss("wgangp", gp_weight=gp_weight)


@register_loss()
def l1() -> nn.L1Loss:
    """Mean absolute error, for methods that take a reconstruction loss by name."""
    return nn.L1Loss()


@register_loss()
def mse() -> nn.MSELoss:
    """Mean squared error (SRResNet's pixel loss; PSNR-oriented training)."""
    return nn.MSELoss()
