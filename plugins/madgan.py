"""MAD-GAN: k generators and one discriminator that must also tell which generator made a fake.

Ghosh, Kulharia, Namboodiri, Torr and Dokania, "Multi-Agent Diverse Generative Adversarial
Networks", CVPR 2018, https://arxiv.org/abs/1704.02906, here in its conditional (image-to-image)
form on top of pix2pix (Isola et al., CVPR 2017, https://arxiv.org/abs/1611.07004).

- **Generators** (`madgan_unet`): the pix2pix U-Net whose every layer is shared by the k
  generators except the last (the outermost transposed convolution and its tanh), one head per
  generator: parameters = trunk + k x head. The paper shares all layers but the last between its
  generators; `SeparateGenerators` gives the unshared variant from any registered generator.
- **Discriminator** (`madgan_patchgan`): a PatchGAN whose last convolution gives k + 1 logits per
  patch instead of one, a new discriminator output kind, `MULTICLASS_LOGITS`: class i < k is
  "made by generator i", class k is "real" (the paper's (k+1)-way softmax).
- **Loss** (`madgan_ce`, scores `MULTICLASS_LOGITS` only): D minimises the cross-entropy over the
  k + 1 classes (real pairs labelled k, generator i's pairs labelled i); each generator minimises
  -log D_real(its fakes), the paper's non-saturating generator objective, pushing D toward
  "real". A recipe pairing it with a real/fake discriminator, or a real/fake loss with
  `madgan_patchgan`, is refused when it is loaded (`translate_kit.adversarial`).
- **Method** (`madgan`): a `Pix2Pix` subclass: its step, with its four extension methods
  overridden, plus lambda x L1 per generator (pix2pix's 100).

One step: the trunk runs once and the k heads give k outputs, stacked along the batch as
`(k B, C, H, W)`, generator i's in rows i B to (i + 1) B. D sees the real pairs as one batch and the
k fake batches as one (so batch normalisation cannot remove what tells the generators apart), and
its loss is the mean over the k + 1 groups, (CE_real + sum_i CE_i) / (k + 1): pix2pix's halved
loss when k = 1. G's loss is the mean over generators of (adversarial + lambda L1); with one
optimiser for all heads this is each generator's own objective up to the factor 1/k, which Adam's
per-parameter normalisation removes.

Inference: the method is multimodal (`InputSpec.multimodal`), and a sample is one generator's
output: translating under seed S (`tkit translate --seed S`; sample s of `--samples N` is seeded
with S + s) uses generator S mod k, so `--samples k --seed 0` gives the k generators in order.
The option `generator` (`--option generator=I`) chooses one for every sample instead.

Where this deviates from the paper:

- the paper gives each D class its own term; the per-group mean above weights them the same, so
  only the overall scale differs, and only for D (which pix2pix already halves);
- heads are stacked through one D batch; the paper does not say how batches are formed;
- the diversity-enforcing similarity objective of the appendix (MAD-GAN-Sim) is not implemented.

Example:
    >>> import torch
    >>> g = madgan_unet(num_heads=3, num_downs=5, ngf=8)
    >>> g(torch.randn(2, 3, 32, 32), head="all").shape  # 3 generators x 2 images
    torch.Size([6, 3, 32, 32])
    >>> d = madgan_patchgan(num_classes=4, ndf=8)
    >>> d(torch.randn(1, 6, 64, 64)).shape  # 4 = 3 generators + real, per patch
    torch.Size([1, 4, 6, 6])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.patchgan import PatchDiscriminator
from translate_kit_plugins.pix2pix import Discriminator, Pix2Pix
from translate_kit_plugins.unet import DownBlock, UpBlock, decoder_level, level_widths

from translate_kit.api import (
    GANLossName,
    InferenceOption,
    InputSpec,
    LossOptions,
    Norm,
    Parts,
    RecipeError,
    StepContext,
    check_image_batch,
    init_weights,
    register_discriminator,
    register_generator,
    register_loss,
    register_method,
)

__all__ = [
    "MULTICLASS_LOGITS",
    "MADGAN",
    "MultiClassAdversarialLoss",
    "MultiClassGANLoss",
    "MultiHeadUNet",
    "SeparateGenerators",
    "madgan",
    "madgan_ce",
    "madgan_patchgan",
    "madgan_unet",
    "multiclass_gan_loss",
]

# A discriminator output kind of this plugin: `(B, k + 1, h, w)` logits per patch, class i < k
# "made by generator i", class k "real". Losses that score it take `generator_index=` (below).
MULTICLASS_LOGITS = "multiclass_logits"

Head = int | Literal["all"]



# ------------------------------------------------------------------------------------------------
# Generators


def _check_head(head: Head, count: int) -> None:
    if head != "all" and not (isinstance(head, int) and 0 <= head < count):
        raise ValueError(f"Expected head 'all' or an int in 0..{count - 1}, got {head!r}")


class MultiHeadUNet(nn.Module):
    """k pix2pix U-Nets that share every layer but the last: one trunk, k output heads.

    The trunk is `UNetGenerator`'s encoder and decoder without its outermost decoder level; each
    head is that level (ReLU -> ConvTranspose 4x4/2 -> Tanh, `unet.UpBlock`), so head i with the
    trunk computes exactly a `unet` of the same options.

    Args:
        num_heads: k, the number of generators.
        num_downs: stride-2 levels; input height and width must be multiples of 2**num_downs.
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first level.
        norm: "batch", "instance" or "none".
        dropout: dropout probability of the decoder levels 4 .. num_downs-2 (in the shared trunk,
            so one draw serves all heads).

    Attributes:
        num_heads: k.
        size_multiple, min_size: 2**num_downs (`SizeConstrained`).

    Shape:
        `forward(x, head=i)`: (B, in_channels, H, W) -> (B, out_channels, H, W);
        `forward(x, head="all")`: -> (k B, out_channels, H, W), head i in rows i B .. (i + 1) B.
    """

    def __init__(
        self,
        *,
        num_heads: int = 3,
        num_downs: int = 8,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"Expected num_heads >= 1, got {num_heads}")
        if num_downs < 2:
            raise ValueError(f"Expected num_downs >= 2 (a trunk below the heads), got {num_downs}")
        if min(in_channels, out_channels, ngf) < 1:
            raise ValueError(f"Expected in_channels, out_channels and ngf >= 1, got {in_channels}, {out_channels}, {ngf}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout}")
        self.num_heads = num_heads
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple = self.min_size = 2**num_downs
        widths = level_widths(ngf, num_downs)
        innermost = num_downs - 1
        self.downs = nn.ModuleList(
            DownBlock(in_channels if i == 0 else widths[i - 1], widths[i], norm=norm, outermost=i == 0,
                      innermost=i == innermost)
            for i in range(num_downs)
        )
        self.ups = nn.ModuleList(  # the shared decoder: every level but the outermost
            decoder_level(i, widths, out_channels, norm=norm, dropout=dropout) for i in reversed(range(1, num_downs))
        )
        self.heads = nn.ModuleList(UpBlock(2 * widths[0], out_channels, norm=norm, outermost=True)
                                   for _ in range(num_heads))
        for head in self.heads:
            head.act.inplace = False  # the k heads read the same features: none may overwrite them

    def forward(self, x: torch.Tensor, head: Head = 0) -> torch.Tensor:
        """Translate with one generator (`head=i`) or all of them (`head="all"`, stacked along the batch).

        Raises:
            ValueError: a wrong input shape, or a head that does not exist.
        """
        _check_head(head, self.num_heads)
        check_image_batch(x, self.in_channels, self.size_multiple)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for up in self.ups:
            x = torch.cat([skips.pop(), up(x)], dim=1)
        if head == "all":
            return torch.cat([h(x) for h in self.heads])
        return self.heads[head](x)


class SeparateGenerators(nn.Module):
    """k generators that share nothing (the paper's unshared variant), with `MultiHeadUNet`'s interface.

    Args:
        generators: k networks mapping (B, C_in, H, W) to (B, C_out, H, W), e.g. k builds of one
            recipe [generator] table.
    """

    def __init__(self, generators: Sequence[nn.Module]) -> None:
        super().__init__()
        if not generators:
            raise ValueError("Expected at least one generator, got none")
        self.generators = nn.ModuleList(generators)
        self.num_heads = len(generators)
        self.size_multiple = math.lcm(*(int(getattr(g, "size_multiple", 1)) for g in generators))
        self.min_size = max(int(getattr(g, "min_size", 0)) for g in generators)

    def forward(self, x: torch.Tensor, head: Head = 0) -> torch.Tensor:
        """One generator's output (`head=i`) or all of them stacked along the batch (`head="all"`)."""
        _check_head(head, self.num_heads)
        if head == "all":
            return torch.cat([g(x) for g in self.generators])
        return self.generators[head](x)


@register_generator(tiny={"num_downs": 5, "ngf": 8})
def madgan_unet(
    *,
    num_heads: int = 3,
    num_downs: int = 8,
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    norm: Norm = "batch",
    dropout: float = 0.5,
) -> MultiHeadUNet:
    """k U-Net generators sharing all layers but the last (MAD-GAN); forward(x, head=i | "all").

    Weights are initialised as pix2pix's: N(0, 0.02), norm scales N(1, 0.02), biases 0.

    Args:
        num_heads: k, the number of generators (the `madgan` method sets it to its num_generators).
        num_downs: stride-2 levels (8 for 256x256 images, 5 for 32x32 tests).
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first level (64 in pix2pix).
        norm: "batch" (pix2pix), "instance" or "none".
        dropout: decoder dropout probability, pix2pix's noise source (0 disables it).

    Example:
        >>> from translate_kit_plugins.unet import unet
        >>> one = sum(p.numel() for p in unet(num_downs=5, ngf=8).parameters())  # a trunk and one head
        >>> head = 2 * 8 * 3 * 16 + 3  # ConvTranspose2d(2 * ngf, 3, 4) with its bias
        >>> sum(p.numel() for p in madgan_unet(num_heads=3, num_downs=5, ngf=8).parameters()) == one + 2 * head
        True
    """
    net = MultiHeadUNet(num_heads=num_heads, num_downs=num_downs, in_channels=in_channels,
                        out_channels=out_channels, ngf=ngf, norm=norm, dropout=dropout)
    return init_weights(net)


# ------------------------------------------------------------------------------------------------
# Discriminator


@register_discriminator(output=MULTICLASS_LOGITS, tiny={"ndf": 8})
def madgan_patchgan(
    *, in_channels: int = 6, num_classes: int = 4, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch"
) -> PatchDiscriminator:
    """PatchGAN with k + 1 logits per patch (MAD-GAN's D): class i < k generator i, class k real.

    The blocks are `patchgan`'s; only the last convolution gives `num_classes` maps instead of one.

    Args:
        in_channels: channels of the (input, output) pair; the madgan method sets it.
        num_classes: k + 1; the madgan method sets it from its num_generators.
        ndf: feature maps of the first convolution (64 in pix2pix).
        n_layers: stride-2 convolutions; 3 gives pix2pix's 70x70 patches.
        norm: "batch" (pix2pix), "instance" or "none".

    Example:
        >>> one = sum(p.numel() for p in madgan_patchgan(num_classes=1).parameters())
        >>> one == 2768705  # patchgan's, the paper's 70x70 PatchGAN
        True
        >>> sum(p.numel() for p in madgan_patchgan(num_classes=4).parameters()) - one  # 3 more 4x4x512 filters
        24579
    """
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1, got {num_classes}")
    net = PatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm)
    net.head = nn.Conv2d(net.head.in_channels, num_classes, 4, 1, 1)
    return init_weights(net)


# ------------------------------------------------------------------------------------------------
# Loss


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _single(x: torch.Tensor, real: bool, for_discriminator: bool, generator_index: int | None) -> torch.Tensor:
    x = _as_float(x)
    if x.ndim < 2 or x.shape[1] < 2:
        raise ValueError(f"Expected logits of shape (B, k + 1, ...) with k >= 1, got {tuple(x.shape)}")
    fake_classes = x.shape[1] - 1
    log_p = F.log_softmax(x, dim=1)
    if real:  # "real" is the last class, for D's real pairs and for G's fakes alike
        return -log_p[:, -1].mean()
    if not for_discriminator:
        raise ValueError("The generator's MAD-GAN loss needs target_is_real=True, got False")
    if generator_index is None:  # made by some generator: -log (1 - p_real)
        return -torch.logsumexp(log_p[:, :-1], dim=1).mean()
    if not 0 <= generator_index < fake_classes:
        raise ValueError(f"Expected generator_index in 0..{fake_classes - 1}, got {generator_index}")
    return -log_p[:, generator_index].mean()


def multiclass_gan_loss(
    prediction: torch.Tensor | Sequence[torch.Tensor],
    target_is_real: bool,
    for_discriminator: bool = True,
    *,
    generator_index: int | None = None,
) -> torch.Tensor:
    """MAD-GAN's (k+1)-class adversarial loss: cross-entropy of per-patch class logits, averaged.

    - D, real (`target_is_real=True`): -log p_k, the "real" class;
    - D, fake of generator i (`generator_index=i`): -log p_i;
    - D, fake of any generator (`generator_index=None`): -log (p_0 + ... + p_{k-1}) = -log(1 - p_k);
    - G (`for_discriminator=False`, `target_is_real=True`): -log p_k, the paper's generator objective.

    Args:
        prediction: logits `(B, k + 1, h, w)` (any trailing shape), or a list of them (mean).
        target_is_real: score against the "real" class, or a fake class.
        for_discriminator: D's loss (True) or a generator's.
        generator_index: the generator that made a fake batch (D's loss on fakes).

    Returns:
        A scalar, in float32 for float16/bfloat16 logits.

    Raises:
        ValueError: fewer than 2 classes, a generator that does not exist, an empty list, or a
            generator's loss with `target_is_real=False`.

    Example:
        >>> logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))  # k = 2: two generators and real
        >>> [round(v.item(), 4) for v in (multiclass_gan_loss(logits, True), multiclass_gan_loss(logits, False,
        ...  generator_index=1), multiclass_gan_loss(logits, False))]  # -log .5, -log .3, -log (.2 + .3)
        [0.6931, 1.204, 0.6931]
    """
    if isinstance(prediction, torch.Tensor):
        return _single(prediction, target_is_real, for_discriminator, generator_index)
    if len(prediction) == 0:
        raise ValueError("Expected a tensor or a non-empty list of tensors, got an empty list")
    return torch.stack([_single(p, target_is_real, for_discriminator, generator_index) for p in prediction]).mean()


@runtime_checkable
class MultiClassAdversarialLoss(Protocol):
    """What the madgan method needs of its loss: an `AdversarialLoss` whose call also takes
    `generator_index` (the fake class), marked by `multiclass = True`. A loss registered with
    `scores=(MULTICLASS_LOGITS,)` provides it."""

    multiclass: bool

    def __call__(self, prediction: Any, target_is_real: bool, for_discriminator: bool = True, *,
                 generator_index: int | None = None) -> torch.Tensor: ...

    def penalty(self, discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...


class MultiClassGANLoss(nn.Module):
    """Module form of `multiclass_gan_loss` (an `AdversarialLoss` scoring `MULTICLASS_LOGITS`)."""

    multiclass = True

    def forward(self, prediction: torch.Tensor | Sequence[torch.Tensor], target_is_real: bool,
                for_discriminator: bool = True, *, generator_index: int | None = None) -> torch.Tensor:
        """The loss of `prediction`; see `multiclass_gan_loss`."""
        return multiclass_gan_loss(prediction, target_is_real, for_discriminator, generator_index=generator_index)

    def penalty(self, discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """No regulariser: a zero scalar (float32 for lower-precision inputs)."""
        return real.new_zeros((), dtype=torch.float32 if real.dtype in (torch.float16, torch.bfloat16) else None)


@register_loss(scores=(MULTICLASS_LOGITS,))
def madgan_ce() -> MultiClassGANLoss:
    """MAD-GAN's (k+1)-class cross-entropy: D names the generator of each fake; G pushes D to "real"."""
    return MultiClassGANLoss()


# ------------------------------------------------------------------------------------------------
# Method

GENERATOR_OPTION = "generator"


class MADGAN(Pix2Pix):
    """pix2pix with k generators and a (k+1)-class D (networks: G holds the k generators, D judges pairs).

    Args:
        generator: k generators behind one module, `forward(x, head=i | "all")` with `num_heads`
            k (`MultiHeadUNet`, `SeparateGenerators`).
        discriminator: maps `(B, C_in + C_out, H, W)` pairs to `(B, k + 1, h, w)` class logits.
        gan_loss: a `MultiClassAdversarialLoss` (`madgan_ce`).
        lambda_l1: weight of each generator's L1 term (pix2pix: 100).
        conditional: D sees (input, output) pairs; False: the output alone.

    Attributes:
        num_generators: k.
        generator_choice: the generator `translate` uses; None: chosen by the seed (see the module).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, gan_loss: nn.Module, *, lambda_l1: float,
                 conditional: bool) -> None:
        if not isinstance(getattr(generator, "num_heads", None), int):
            raise ValueError(f"Expected a generator with k heads (num_heads, forward(x, head=...)) such as "
                             f"MultiHeadUNet or SeparateGenerators, got {type(generator).__name__}")
        super().__init__(generator, discriminator, gan_loss, lambda_l1=lambda_l1, conditional=conditional)
        self.num_generators = int(generator.num_heads)
        self.generator_choice: int | None = None

    def generate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> torch.Tensor:
        """All k outputs, `(k B, C_out, H, W)`, generator i's in rows i B .. (i + 1) B (one trunk pass)."""
        return self.nets["G"](real_a, head="all")

    def _inputs(self, real_a: torch.Tensor) -> torch.Tensor:
        """The inputs beside the k stacked outputs: `real_a` repeated k times along the batch."""
        return real_a.repeat(self.num_generators, *([1] * (real_a.ndim - 1)))

    def discriminator_loss(
        self, D: Discriminator, real_a: torch.Tensor, real_b: torch.Tensor, fake: torch.Tensor, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy over k + 1 classes: real pairs are class k, generator i's pairs class i;
        the mean over the k + 1 groups. Logs `loss_D_real` and `loss_D_fake` (mean over generators)."""
        k, batch = self.num_generators, real_a.shape[0]
        with ctx.autocast():
            real_pair = self.pair(real_a, real_b)
            fake_pair = self.pair(self._inputs(real_a), fake.detach())
            loss_d_real = self.gan_loss(D(real_pair), target_is_real=True, for_discriminator=True)
            scores = D(fake_pair)  # the k fake batches in one: batch statistics keep what tells them apart
            per_generator = [
                self.gan_loss(scores[i * batch : (i + 1) * batch], target_is_real=False, for_discriminator=True,
                              generator_index=i)
                for i in range(k)
            ]
            loss_d_fake = torch.stack(per_generator).mean()
            loss_d = (loss_d_real + k * loss_d_fake) / (k + 1)
        penalty = self.gan_loss.penalty(D, self._inputs(real_pair), fake_pair)
        return loss_d + penalty, {"loss_D_real": loss_d_real.detach(), "loss_D_fake": loss_d_fake.detach()}

    def generator_adversarial_loss(self, D: Discriminator, real_a: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Mean over generators of -log D_real(x, G_i(x))."""
        return self.gan_loss(D(self.pair(self._inputs(real_a), fake)), target_is_real=True, for_discriminator=False)

    def reconstruction_loss(self, fake: torch.Tensor, real_b: torch.Tensor) -> torch.Tensor:
        """Mean over generators of each one's L1 to the target."""
        return F.l1_loss(fake, self._inputs(real_b))

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """One generator's output: `generator_choice`, or the current seed mod k (see the module)."""
        if self.generator_choice is not None:
            head = self.generator_choice
        else:
            # The tools seed sample s with S + s before calling translate (Translator,
            # `tkit serve`) and pass no sample index, so the seed itself picks the generator.
            head = torch.initial_seed() % self.num_generators
        return self.nets["G"](x, head=head)

    def input_spec(self, default: InputSpec) -> InputSpec:
        """Multimodal (a sample is a generator) unless the `generator` option fixed one."""
        k = self.num_generators
        option = InferenceOption(f"which of the {k} generators translates (0..{k - 1}); without it, seed S uses "
                                 f"generator S mod {k} (sample s of --samples N: S + s)", type=int)
        return dataclasses.replace(default, multimodal=self.generator_choice is None and k > 1,
                                   options={GENERATOR_OPTION: option})

    def with_options(self, **values: Any) -> MADGAN:
        """A method sharing these networks whose `translate` uses generator `values["generator"]`.

        Raises:
            ValueError: a generator that does not exist, or an unknown option.
        """
        unknown = sorted(set(values) - {GENERATOR_OPTION})
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; MAD-GAN takes {GENERATOR_OPTION}=I")
        if GENERATOR_OPTION not in values:
            return self.shared_copy()
        choice = values[GENERATOR_OPTION]
        if not (isinstance(choice, int) and 0 <= choice < self.num_generators):
            raise ValueError(f"generator={choice}: this model has {self.num_generators} generators, numbered "
                             f"0..{self.num_generators - 1}")
        return self.shared_copy(generator_choice=choice)


def _build_generators(parts: Parts, count: int) -> nn.Module:
    """The k generators from the recipe's [generator] table: a multi-head generator with
    `num_heads` = k, or k independent builds of any other generator (`SeparateGenerators`)."""
    generator = parts.generator()
    heads = getattr(generator, "num_heads", None)
    if heads is None:
        return SeparateGenerators([generator, *(parts.generator() for _ in range(count - 1))])
    if heads != count:
        # Built again with the method's k: the recipe's own num_heads, if it set one, is then
        # reported as contradicting the method.
        generator = parts.generator(num_heads=count)
    return generator


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def madgan(
    parts: Parts,
    /,
    *,
    num_generators: int = 3,
    lambda_l1: float = 100.0,
    gan_mode: GANLossName = "madgan_ce",
    gan_options: LossOptions = None,
    conditional: bool = True,
) -> MADGAN:
    """MAD-GAN (Ghosh et al. 2018) on pix2pix: k generators, a (k+1)-class D, lambda * L1 each.

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        num_generators: k. With a multi-head [generator] (`madgan_unet`) it sets `num_heads`;
            any other generator is built k times, sharing nothing.
        lambda_l1: weight of each generator's L1 term; pix2pix uses 100.
        gan_mode: an adversarial loss scoring (k+1)-class logits (`madgan_ce`); the
            [discriminator] must output them (`madgan_patchgan`), which the recipe check enforces.
        gan_options: options of that loss.
        conditional: D sees (input, output) pairs (pix2pix); False: the output alone.

    Raises:
        RecipeError: the loss cannot name generators (a real/fake loss such as vanilla).
    """
    if num_generators < 1:
        raise ValueError(f"Expected num_generators >= 1, got {num_generators}")
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    if not isinstance(gan_loss, MultiClassAdversarialLoss):
        raise RecipeError(
            f"[method] gan_mode = {gan_mode!r}: MAD-GAN's discriminator must name the generator of each fake, so "
            f"it needs a loss that scores {MULTICLASS_LOGITS} (k + 1 classes), not real/fake logits. Set "
            f'method.gan_mode = "madgan_ce" and discriminator.name = "madgan_patchgan".'
        )
    generator = _build_generators(parts, num_generators)
    d_channels = parts.in_channels + parts.out_channels if conditional else parts.out_channels
    discriminator = parts.discriminator(in_channels=d_channels, num_classes=num_generators + 1)
    return MADGAN(generator, discriminator, gan_loss, lambda_l1=lambda_l1, conditional=conditional)
