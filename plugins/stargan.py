"""StarGAN: one generator for translation among many domains, Choi et al., CVPR 2018 (https://arxiv.org/abs/1711.09020).

G takes an image and a target-domain label (a one-hot vector over the domains, or a 0/1 vector of
attributes), tiled into constant channels beside the image; D has two heads on one trunk: a
real/fake patch map and a domain classifier. The objective (paper, Sec. 3; reference
yunjey/stargan `solver.py`):

- D: L_adv + lambda_cls * L_cls(D_cls(x), c_org) (+ the WGAN-GP penalty, lambda_gp 10);
- G: L_adv + lambda_cls * L_cls(D_cls(G(x, c_trg)), c_trg) + lambda_rec * |x - G(G(x, c_trg), c_org)|_1.

L_cls is the cross-entropy over domains for one-hot labels (the reference's RaFD mode) and the
binary cross-entropy summed over attributes, averaged over the batch, for attribute labels (its
CelebA mode). The target label of every sample is drawn as the reference does: a shuffled copy of
the batch's own labels.

Networks (reference `model.py`): G is a 7x7 conv (64), two stride-2 4x4 down convolutions, 6
residual blocks, two stride-2 4x4 transposed convolutions and a 7x7 conv to the image, with
affine instance norm and ReLU, no biases, tanh out. D is 6 stride-2 4x4 convolutions (64 .. 2048
channels, leaky ReLU 0.01, no norm), then a 3x3 conv to one real/fake logit per patch (2x2 at
128 px) and a conv whose kernel covers the whole last map to the domain logits.

How it fits the adversarial contract: D's plain `forward(x)` is its real/fake logit map, so D
registers with the standard output `"logits"` and any logit loss scores it, `wgangp` included
(its `penalty(D, real, fake)` then differentiates the real/fake head only, as the reference's
gradient penalty does). The classification head is reached with `forward(x, classify=True)`,
which returns `(logits, class_logits)`: a capability the method checks (`DomainClassifier`),
not a new output kind, so no loss needs to learn a tuple.

The schedule: D is updated at every step, G at every `n_critic`-th (the reference's 5). Which
step is which is decided from the trainer's step count (`ctx.step % n_critic == 0`), which a
checkpoint restores, so a resumed run updates G at exactly the steps an uninterrupted one does.

Deviations from the reference, each deliberate:

- G steps fall on steps 0, n, 2n, ... rather than after the n-th D step (n - 1, 2n - 1, ...): the
  same ratio of D to G updates, and even a two-step run trains both networks;
- instance norm keeps no running statistics (the reference keeps them but never switches to
  eval mode, so its test-time outputs use each image's own statistics, as here);
- the learning rate decays by epoch through `train.decay_epochs` (translate-kit's schedules are
  per epoch), linearly to 1/(decay_epochs + 1) of the rate; the reference subtracts lr/100000
  every 1000 iterations of its last 100k, which lowers it only to 0.999 of the rate;
- D's domain logits are averaged over positions when an image is larger than the `image_size`
  the head was built for (never in training: the method requires `data.crop_size == image_size`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.domain_data import DOMAIN_KEY, DOMAIN_NAMES_KEY

from translate_kit.api import (
    BatchSpec,
    GANLossName,
    InferenceOption,
    InputSpec,
    LossOptions,
    Method,
    PairedJitter,
    Parts,
    RecipeError,
    StepContext,
    did_you_mean,
    frozen,
    register_discriminator,
    register_generator,
    register_method,
    unwrap,
)

__all__ = [
    "DomainClassifier",
    "LabelMode",
    "ResidualBlock",
    "StarGAN",
    "StarGANDiscriminator",
    "StarGANGenerator",
    "domain_classification_loss",
    "stargan",
    "stargan_discriminator",
    "stargan_generator",
]

LabelMode = Literal["domain", "attributes"]


# --- networks ---------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """x + (conv3x3 -> IN -> ReLU -> conv3x3 -> IN)(x), convolutions without bias, affine IN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StarGANGenerator(nn.Module):
    """G(x, c): an image and a target label, tiled as `c_dim` constant channels, to an image.

    Args:
        in_channels: image channels in.
        out_channels: image channels out.
        c_dim: label length (domains or attributes).
        conv_dim: channels of the first convolution (64); x2 per down-sampling.
        repeat_num: residual blocks at the bottleneck (6).

    Zero padding matters: instance norm removes a constant channel's effect inside the image, and
    the label reaches the features through the borders, where the padding makes it non-constant
    (the reference notes that reflection padding breaks the conditioning).

    Example:
        >>> g = StarGANGenerator(c_dim=5)
        >>> sum(p.numel() for p in g.parameters())  # the reference's G: 8,430,528
        8430528
        >>> g = StarGANGenerator(c_dim=3, conv_dim=8, repeat_num=1)
        >>> g(torch.zeros(2, 3, 16, 16), torch.eye(3)[:2]).shape
        torch.Size([2, 3, 16, 16])
    """

    size_multiple = 4  # two stride-2 down-samplings
    min_size = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 3, *, c_dim: int = 5, conv_dim: int = 64,
                 repeat_num: int = 6) -> None:
        super().__init__()
        if min(in_channels, out_channels, c_dim, conv_dim) < 1 or repeat_num < 0:
            raise ValueError(f"Expected channels, c_dim and conv_dim >= 1 and repeat_num >= 0, got in_channels "
                             f"{in_channels}, out_channels {out_channels}, c_dim {c_dim}, conv_dim {conv_dim}, "
                             f"repeat_num {repeat_num}")
        self.in_channels, self.c_dim = in_channels, c_dim
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels + c_dim, conv_dim, 7, padding=3, bias=False),
            nn.InstanceNorm2d(conv_dim, affine=True),
            nn.ReLU(inplace=True),
        ]
        width = conv_dim
        for _ in range(2):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(width * 2, affine=True), nn.ReLU(inplace=True)]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(width // 2, affine=True), nn.ReLU(inplace=True)]
            width //= 2
        layers += [nn.Conv2d(width, out_channels, 7, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Translate `x` `(B, in_channels, H, W)`, H and W multiples of 4, to the label `c` `(B, c_dim)`.

        Without `c`, the all-zero label (no domain, every attribute off): the network then runs
        as a plain image-to-image generator, which is what generic checks of generators call.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if c is None:
            c = x.new_zeros(x.shape[0], self.c_dim)
        if tuple(c.shape) != (x.shape[0], self.c_dim):
            raise ValueError(f"Expected labels of shape ({x.shape[0]}, {self.c_dim}), got {tuple(c.shape)}")
        tiled = c.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.main(torch.cat([x, tiled], dim=1))


class StarGANDiscriminator(nn.Module):
    """PatchGAN-like critic with a domain-classification head on the same trunk.

    Args:
        in_channels: image channels.
        c_dim: label length (domains or attributes).
        image_size: the training image side; the class head's kernel covers the last map,
            `image_size / 2**repeat_num` (2 at 128 px).
        conv_dim: channels of the first convolution (64); x2 per layer.
        repeat_num: stride-2 convolutions (6).

    `forward(x)` gives the real/fake logits `(B, 1, H / 2**repeat_num, W / 2**repeat_num)`;
    `forward(x, classify=True)` gives `(logits, class_logits)` with class logits `(B, c_dim)`.

    Example:
        >>> d = StarGANDiscriminator(c_dim=5)
        >>> sum(p.numel() for p in d.parameters())  # the reference's D: 44,762,048
        44762048
        >>> d = StarGANDiscriminator(c_dim=3, image_size=32, conv_dim=4, repeat_num=3)
        >>> [tuple(t.shape) for t in d(torch.zeros(2, 3, 32, 32), classify=True)]
        [(2, 1, 4, 4), (2, 3)]
    """

    def __init__(self, in_channels: int = 3, *, c_dim: int = 5, image_size: int = 128, conv_dim: int = 64,
                 repeat_num: int = 6) -> None:
        super().__init__()
        if min(in_channels, c_dim, conv_dim, repeat_num) < 1:
            raise ValueError(f"Expected in_channels, c_dim, conv_dim and repeat_num >= 1, got {in_channels}, {c_dim}, "
                             f"{conv_dim}, {repeat_num}")
        if image_size < 2**repeat_num or image_size % 2**repeat_num:
            raise ValueError(f"Expected image_size a positive multiple of 2**repeat_num = {2**repeat_num}, got "
                             f"{image_size}")
        self.c_dim, self.image_size = c_dim, image_size
        self.size_multiple, self.min_size = 2**repeat_num, image_size
        layers: list[nn.Module] = [nn.Conv2d(in_channels, conv_dim, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
        width = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            width *= 2
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(width, 1, 3, padding=1, bias=False)
        self.cls = nn.Conv2d(width, c_dim, image_size // 2**repeat_num, bias=False)

    def forward(self, x: torch.Tensor, classify: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        logits = self.src(h)
        if not classify:
            return logits
        return logits, self.cls(h).mean(dim=(2, 3))  # one position at image_size: the reference's view


@runtime_checkable
class DomainClassifier(Protocol):
    """A discriminator with StarGAN's classification head: `forward(x, classify=True)` gives
    `(logits, class_logits (B, c_dim))`."""

    c_dim: int
    image_size: int


def _check_size(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"Expected {name} >= {low}, got {value}")


@register_generator(tiny={"conv_dim": 4, "repeat_num": 1})
def stargan_generator(*, in_channels: int = 3, out_channels: int = 3, c_dim: int = 5, conv_dim: int = 64,
                      repeat_num: int = 6) -> StarGANGenerator:
    """StarGAN's G: image + tiled target label, c7s1-64, 2 down, `repeat_num` residual blocks, 2 up (sizes: x4)."""
    _check_size("c_dim", c_dim, 1)
    return StarGANGenerator(in_channels, out_channels, c_dim=c_dim, conv_dim=conv_dim, repeat_num=repeat_num)


@register_discriminator(tiny={"conv_dim": 4, "repeat_num": 3, "image_size": 32})
def stargan_discriminator(*, in_channels: int = 3, c_dim: int = 5, image_size: int = 128, conv_dim: int = 64,
                          repeat_num: int = 6) -> StarGANDiscriminator:
    """StarGAN's D: `repeat_num` stride-2 convs (leaky ReLU 0.01), a real/fake patch head and a domain head."""
    _check_size("c_dim", c_dim, 1)
    return StarGANDiscriminator(in_channels, c_dim=c_dim, image_size=image_size, conv_dim=conv_dim,
                                repeat_num=repeat_num)


# --- the method -------------------------------------------------------------------------------


def domain_classification_loss(logits: torch.Tensor, target: torch.Tensor, mode: LabelMode) -> torch.Tensor:
    """StarGAN's L_cls, in float32.

    - "domain": cross-entropy of `logits` `(B, n)` against one-hot `target`, mean over the batch;
    - "attributes": binary cross-entropy per attribute, summed over attributes, mean over the
      batch (the reference's `size_average=False` sum divided by B).

    Example:
        >>> logits = torch.tensor([[1.0, 3.0]]).log()  # [0, log 3]: softmax [1/4, 3/4]
        >>> round(domain_classification_loss(logits, torch.tensor([[1.0, 0.0]]), "domain").item(), 4)  # -log(1/4)
        1.3863
        >>> round(domain_classification_loss(logits, torch.tensor([[1.0, 0.0]]), "attributes").item(), 4)  # log 8
        2.0794
    """
    logits, target = logits.float(), target.float()
    if mode == "domain":
        return F.cross_entropy(logits, target.argmax(dim=1))
    if mode == "attributes":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]
    raise ValueError(f"Expected mode 'domain' or 'attributes', got {mode!r}")


class StarGAN(Method):
    """One G for every pair of domains, one D with a real/fake and a domain head (see the module docstring).

    Args:
        generator: `G(x, c)` with `c` `(B, n)` labels.
        discriminator: a `DomainClassifier` whose plain output is a real/fake logit map.
        gan_loss: an adversarial loss (the paper's: wgangp, with its gradient penalty).
        domains: the label's entries, in order: domain names ("domain" mode) or attribute names.
        label_mode: "domain" (one domain per image, cross-entropy) or "attributes" (independent
            binary attributes, binary cross-entropy).
        lambda_cls: weight of the classification terms (paper: 1).
        lambda_rec: weight of the reconstruction term (paper: 10).
        n_critic: D updates per G update (paper: 5).
        default_to: the target `translate` uses without options ("" = the first domain; for
            attributes, a comma-separated list of those set).
    """

    roles = {"G": "translate", "D": "adversary"}
    sample_mode = "eval"  # no dropout, no batch norm: both modes are the same

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        gan_loss: nn.Module,
        *,
        domains: Sequence[str],
        label_mode: LabelMode = "domain",
        lambda_cls: float = 1.0,
        lambda_rec: float = 10.0,
        n_critic: int = 5,
        default_to: str = "",
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "D": discriminator})
        self.gan_loss = gan_loss
        self.domains, self.label_mode = tuple(domains), label_mode
        self.lambda_cls, self.lambda_rec, self.n_critic = lambda_cls, lambda_rec, n_critic
        self.target = self.parse_target(default_to or self.domains[0])  # translate's label, (n,) floats
        # G's losses of its latest update, logged at every step in between (the trainer averages
        # every logged key over all steps, so logging them only at G steps would divide them by n_critic).
        self.last_g_losses = torch.zeros(3)

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"D": ["D"], "G": ["G"]}

    # The target of `translate`: named options.

    def parse_target(self, to: str) -> tuple[float, ...]:
        """The label vector `to` names: a domain ("domain" mode), or the comma-separated attributes
        set to 1, the others 0 ("attributes" mode; "" or "none": all 0).

        Raises:
            ValueError: a name that is not one of `domains` (with a near name and the list).
        """
        names = [n.strip() for n in to.split(",") if n.strip() and n.strip() != "none"]
        if self.label_mode == "domain" and len(names) != 1:
            raise ValueError(f"to={to}: expected one domain, one of {', '.join(self.domains)}")
        for name in names:
            if name not in self.domains:
                what = "domain" if self.label_mode == "domain" else "attribute"
                raise ValueError(f"to={to}: unknown {what} {name!r}.{did_you_mean(name, self.domains)} Choices: "
                                 f"{', '.join(self.domains)}")
        return tuple(1.0 if d in names else 0.0 for d in self.domains)

    def input_spec(self, default: InputSpec) -> InputSpec:
        """The option `to`: the target domain (or attributes) of the translation."""
        current = ",".join(d for d, v in zip(self.domains, self.target) if v) or "none"
        if self.label_mode == "domain":
            option = InferenceOption("the target domain of the translation (StarGAN conditions on the target only, "
                                     "so any input domain works)", default=current, choices=self.domains)
        else:
            option = InferenceOption("the target attributes, comma-separated, set to 1 (the others 0; none: all 0), "
                                     f"from {', '.join(self.domains)}", default=current)
        return dataclasses.replace(default, options={"to": option})

    def with_options(self, **values: Any) -> StarGAN:
        """A method sharing these networks that translates to `values["to"]`."""
        if "to" not in values:
            return self.shared_copy()
        return self.shared_copy(target=self.parse_target(str(values["to"])))

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(self.target, dtype=x.dtype, device=x.device).expand(x.shape[0], -1)
        return self.nets["G"](x, c)

    # Batches.

    def _labels(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's label vectors `(B, n)`, checked against `domains` and the label mode."""
        if DOMAIN_KEY not in batch:
            raise RecipeError(
                f"stargan trains on images labelled with their domain, but the dataset's items have no {DOMAIN_KEY!r} "
                f"entry (they have {', '.join(map(str, batch))}); use data.dataset = \"domain_folders\" or "
                "\"celeba_attributes\"."
            )
        labels = batch[DOMAIN_KEY]
        names = batch.get(DOMAIN_NAMES_KEY)
        given = (names[0] if isinstance(names, (list, tuple)) and names else "").split(",")
        if labels.shape[-1] != len(self.domains) or (names is not None and given != list(self.domains)):
            shown = ", ".join(given) if names is not None else f"{labels.shape[-1]} entries"
            raise RecipeError(
                f"The dataset labels {labels.shape[-1]} domain(s) ({shown}), but [method] domains lists "
                f"{len(self.domains)} ({', '.join(self.domains)}), which also sets c_dim of G and D. Make [method] "
                "domains the dataset's domains (data.domains, or data.selected_attrs), in the same order."
            )
        one_hot = bool(((labels == 0) | (labels == 1)).all() and (labels.sum(-1) == 1).all())
        if self.label_mode == "domain" and not one_hot:
            raise RecipeError(
                "method.label_mode = \"domain\" needs one domain per image (one-hot labels), but the dataset gives "
                "images with several labels set (attributes); set method.label_mode = \"attributes\"."
            )
        return labels

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """Images `A` to the device in [-1, 1], cropped and flipped as the recipe says, with their
        labels (`domain`); `B` is `A` again (there is no target image): sample pages and
        evaluations show the input in its place."""
        labels = self._labels(batch)
        image_size = getattr(unwrap(self.nets["D"]), "image_size", None)
        if spec.train and image_size is not None and spec.crop_size != image_size:
            raise RecipeError(
                f"data.crop_size is {spec.crop_size}, but the discriminator's classification head is built for "
                f"image_size = {image_size}; set [discriminator] image_size = {spec.crop_size} (or the crop to "
                f"{image_size})."
            )
        jitter = self.__dict__.get("_jitter")
        if jitter is None or (jitter.crop_size, jitter.flip_enabled) != (spec.crop_size, spec.flip):
            jitter = self.__dict__["_jitter"] = PairedJitter(spec.crop_size, spec.flip, keys=("A",))
        out = jitter.prepare({k: v for k, v in batch.items() if k != DOMAIN_KEY}, spec)
        out[DOMAIN_KEY] = labels.to(spec.device, torch.float32, non_blocking=True)
        out["B"] = out["A"]
        return out

    # One step.

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G, D = self.nets["G"], self.nets["D"]
        real, label_org = batch["A"], batch[DOMAIN_KEY]
        # The targets: the batch's labels in a random order (the reference's draw); the global
        # RNG, which checkpoints restore.
        label_trg = label_org[torch.randperm(label_org.shape[0]).to(label_org.device)]
        g_step = ctx.step % self.n_critic == 0
        # On D-only steps G's output is a constant for D: no graph. On G steps the same forward
        # serves both (G does not change in between), as the reference's recomputation would.
        with ctx.autocast(), (contextlib.nullcontext() if g_step else torch.no_grad()):
            fake = G(real, label_trg)

        # D step: real vs fake, and the domain of real images.
        with ctx.autocast():
            logits_real, classes_real = D(real, classify=True)
            loss_d_real = self.gan_loss(logits_real, target_is_real=True, for_discriminator=True)
            loss_d_fake = self.gan_loss(D(fake.detach()), target_is_real=False, for_discriminator=True)
            loss_d_cls = domain_classification_loss(classes_real, label_org, self.label_mode)
        penalty = self.gan_loss.penalty(D, real, fake.detach())  # WGAN-GP: lambda_gp * (|grad D| - 1)^2
        ctx.update("D", loss_d_real + loss_d_fake + self.lambda_cls * loss_d_cls + penalty)

        if g_step:
            # G step: fool the frozen D as the target domain, and come back to the original.
            with frozen([D]), ctx.autocast():
                logits_fake, classes_fake = D(fake, classify=True)
                loss_g_fake = self.gan_loss(logits_fake, target_is_real=True, for_discriminator=False)
                loss_g_cls = domain_classification_loss(classes_fake, label_trg, self.label_mode)
                loss_g_rec = F.l1_loss(G(fake, label_org).float(), real.float())
                loss_g = loss_g_fake + self.lambda_rec * loss_g_rec + self.lambda_cls * loss_g_cls
            ctx.update("G", loss_g)
            self.last_g_losses = torch.stack([loss_g_fake, loss_g_cls, loss_g_rec]).detach().float()
        g = self.last_g_losses.to(real.device)
        return {
            "loss_D_real": loss_d_real.detach().float(),
            "loss_D_fake": loss_d_fake.detach().float(),
            "loss_D_cls": loss_d_cls.detach(),
            "loss_D_gp": penalty.detach().float(),
            "loss_G_fake": g[0],
            "loss_G_cls": g[1],
            "loss_G_rec": g[2],
        }

    def extra_state(self) -> dict[str, Any]:
        return {"last_G_losses": self.last_g_losses.detach().cpu()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.last_g_losses = state.get("last_G_losses", torch.zeros(3)).clone()


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def stargan(
    parts: Parts,
    /,
    *,
    domains: list[str],
    label_mode: LabelMode = "domain",
    lambda_cls: float = 1.0,
    lambda_rec: float = 10.0,
    n_critic: int = 5,
    gan_mode: GANLossName = "wgangp",
    gan_options: LossOptions = None,
    default_to: str = "",
) -> StarGAN:
    """StarGAN (Choi et al. 2018): one G conditioned on the target domain, D with a domain head.

    The recipe's [generator] and [discriminator] tables build G and D with `c_dim` set to the
    number of `domains` (a table may repeat c_dim only with that value).

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        domains: the label's entries in the dataset's order: the domain folders
            (`domain_folders`' data.domains) or the attributes (`celeba_attributes`' selected_attrs).
        label_mode: "domain" (one-hot labels, cross-entropy; the paper's RaFD) or "attributes"
            (0/1 attributes, binary cross-entropy; the paper's CelebA).
        lambda_cls: weight of the domain classification losses; the paper uses 1.
        lambda_rec: weight of the reconstruction loss; the paper uses 10.
        n_critic: D updates per G update; the paper uses 5.
        gan_mode: the adversarial loss: wgangp (the paper's; gp_weight is lambda_gp, 10), or any
            loss that scores logits.
        gan_options: options of that loss, e.g. `{ gp_weight = 10.0 }`.
        default_to: what `translate` targets without `--option to=...` ("": the first domain).
    """
    if not domains:
        raise ValueError("Expected at least one name in domains")
    if len(set(domains)) != len(domains) or any("," in d or not d.strip() for d in domains):
        raise ValueError(f"Expected distinct domain names without commas, got {domains}")
    if n_critic < 1 or lambda_cls < 0 or lambda_rec < 0:
        raise ValueError(f"Expected n_critic >= 1 and lambdas >= 0, got n_critic {n_critic}, lambda_cls {lambda_cls}, "
                         f"lambda_rec {lambda_rec}")
    if parts.in_channels != parts.out_channels:
        raise ValueError(f"every domain's images pass through the same G and D, so data.in_channels and "
                         f"data.out_channels must agree, got {parts.in_channels} and {parts.out_channels}")
    n = len(domains)
    why = (f" stargan sets c_dim of G and D to the number of [method] domains ({n}), so the tables need not set it; "
           "its networks must take the label (stargan_generator, stargan_discriminator).")
    try:
        generator = parts.generator(c_dim=n)
        discriminator = parts.discriminator(in_channels=parts.in_channels, c_dim=n)
    except RecipeError as exc:
        raise RecipeError(f"{exc}{why}") from None
    if not isinstance(unwrap(discriminator), DomainClassifier):
        raise RecipeError(f"The discriminator ({type(discriminator).__name__}) has no domain-classification head "
                          f"(DomainClassifier).{why}")
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    try:
        return StarGAN(generator, discriminator, gan_loss, domains=domains, label_mode=label_mode,
                       lambda_cls=lambda_cls, lambda_rec=lambda_rec, n_critic=n_critic, default_to=default_to)
    except ValueError as exc:
        raise ValueError(f"default_to: {exc}") from None
