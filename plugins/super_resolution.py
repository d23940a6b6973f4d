"""Super-resolution methods: PSNR-oriented training and GAN training, one family.

- `sr_psnr`: a pixel loss only. SRResNet (Ledig et al., CVPR 2017, https://arxiv.org/abs/1609.04802)
  with MSE, BasicSR's MSRResNet and ESRGAN's RRDB-PSNR (Wang et al., ECCVW 2018,
  https://arxiv.org/abs/1809.00219) with L1, Real-ESRNet with a `[degradation]` table.
- `sr_gan`: pixel + perceptual + adversarial losses. SRGAN (VGG54 content loss, adversarial weight
  1e-3, a plain discriminator), ESRGAN (VGG19 conv5_4 before the activation, a relativistic
  average discriminator, L1 1e-2 + perceptual 1 + GAN 5e-3, started from a PSNR-trained
  generator: `init_from`), Real-ESRGAN (Wang et al., ICCVW 2021, https://arxiv.org/abs/2107.10833:
  the second-order degradation, a U-Net discriminator, USM-sharpened targets for the pixel and
  perceptual terms, a pool of training pairs).
- `tkit interpolate RUN_A RUN_B --alpha A OUT`: ESRGAN's network interpolation,
  `theta = (1 - alpha) * theta_A + alpha * theta_B`, written as a checkpoint.

The data are high-resolution images (`B`), optionally with their low-resolution partners (`A`).
`prepare_batch` crops aligned square patches (`data.crop_size` high-resolution pixels, one integer:
a [height, width] crop is refused), flips and rotates them, and makes the low-resolution input on
the device when the data have none: MATLAB-bicubic downscaling (`sr_data.imresize`), or the
recipe's `[degradation]` pipeline while training.
Evaluation takes whole images at their stored size and scores the luma with `scale` pixels
shaved at each border, the literature's ×4 protocol (`eval_protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import nn
from translate_kit_plugins.degradations import usm_sharp
from translate_kit_plugins.sr_data import imresize

from translate_kit.api import (
    BatchSpec,
    CheckpointError,
    ComponentRef,
    EvalProtocol,
    GANLossName,
    LossOptions,
    Method,
    OptionsOf,
    Parts,
    RecipeError,
    StepContext,
    atomic_save,
    checkpoint_dict,
    cli_command,
    frozen,
    hookimpl,
    read_model,
    register_method,
    unwrap,
)

__all__ = ["SuperResolution", "interpolate_checkpoints", "sr_gan", "sr_psnr"]

_PSNR_TABLES = {"generator": "generator", "degradation": "degradation"}
_GAN_TABLES = {**_PSNR_TABLES, "discriminator": "discriminator"}


class SuperResolution(Method):
    """Super-resolution with a pixel loss, and with a discriminator a GAN stage.

    Args:
        generator: maps `(B, C, h, w)` to `(B, C, s h, s w)` (declares `scale`).
        pixel: pixel loss module (`l1`, `mse`).
        pixel_weight: its weight.
        perceptual: a perceptual loss of (output, target), or None.
        perceptual_weight: its weight.
        discriminator: judges high-resolution images; None for PSNR-oriented training.
        gan_loss: an adversarial loss (vanilla for SRGAN, ESRGAN and Real-ESRGAN).
        gan_weight: its weight in the generator's loss.
        relativistic: relativistic average GAN (ESRGAN): each side scores how much more real its
            images look than the other side's on average.
        degradation: makes training inputs from high-resolution images in [0, 1] (Real-ESRGAN);
            None: MATLAB-bicubic downscaling.
        sharpen: pixel and perceptual targets are USM-sharpened (Real-ESRGAN).
        pool_size: training pairs kept and swapped at random (Real-ESRGAN: 180); 0: none.
        init_from: a run, checkpoint or export whose generator a fresh run starts from
            (`warm_start`); checkpoints of this method do not need it afterwards.

    Training patches get random flips and 90-degree rotations when `data.flip` is on.
    """

    sample_mode = "eval"
    static_step = True  # the same kernels every step: one CUDA graph on a GPU (train.cuda_graphs)

    def __init__(
        self,
        generator: nn.Module,
        *,
        pixel: nn.Module,
        pixel_weight: float = 1.0,
        perceptual: nn.Module | None = None,
        perceptual_weight: float = 0.0,
        discriminator: nn.Module | None = None,
        gan_loss: Any | None = None,
        gan_weight: float = 0.0,
        relativistic: bool = False,
        degradation: nn.Module | None = None,
        sharpen: bool = False,
        pool_size: int = 0,
        init_from: str = "",
    ) -> None:
        super().__init__()
        self.scale = int(getattr(unwrap(generator), "scale", 1))
        self.nets = nn.ModuleDict({"G": generator} | ({"D": discriminator} if discriminator is not None else {}))
        self.roles = {"G": "translate"} | ({"D": "adversary"} if discriminator is not None else {})
        self.pixel, self.pixel_weight = pixel, pixel_weight
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight
        self.gan_loss, self.gan_weight, self.relativistic = gan_loss, gan_weight, relativistic
        self.degradation, self.sharpen = degradation, sharpen
        self.pool_size, self.init_from = pool_size, init_from
        self._pool: dict[str, torch.Tensor] = {}

    def warm_start(self) -> None:
        """A fresh run starts its generator from `init_from`'s (ESRGAN's GAN stage from RRDB-PSNR)."""
        if self.init_from:
            _init_from(self.nets["G"], self.init_from)

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G"]} | ({"D": ["D"]} if "D" in self.nets else {})

    def eval_protocol(self) -> EvalProtocol:
        return EvalProtocol(resize=False, color="y", shave=self.scale)

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets["G"](x).clamp(-1, 1)

    # --- batches ---------------------------------------------------------------------------

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """High-resolution patches `B` and their low-resolution inputs `A`, in [-1, 1].

        Training: a random `crop_size` patch of each image (aligned with the given low-resolution
        image, if any), random flips and rotations, and the input made on the device when none was
        given. Evaluation (`spec.train` false): the whole image cropped to a multiple of the scale
        (`crop_size` None) or its centred `crop_size` patch (sample pages).
        """
        s = self.scale
        highs, lows = _images(batch["B"]), _images(batch["A"]) if "A" in batch else None
        out_high, out_low = [], []
        for i, high in enumerate(highs):
            high, low = _crop_pair(high, lows[i] if lows is not None else None, s, spec)
            out_high.append(high)
            out_low.append(low)
        high = torch.stack([h.to(spec.device, non_blocking=True) for h in out_high]).float() / 255
        low = None if lows is None else torch.stack([x.to(spec.device, non_blocking=True) for x in out_low]).float() / 255
        if spec.train and spec.flip:
            high, low = _augment(high, low)
        if low is None:
            if spec.train and self.degradation is not None:
                low = self.degradation(high)
            else:  # the benchmark sets' LR: MATLAB bicubic, stored as 8-bit images
                low = imresize(high, 1 / s).clamp(0, 1).mul(255).round().div(255)
        out = {"A": low * 2 - 1, "B": high * 2 - 1, "name": batch.get("name")}
        if spec.train and self.pool_size:
            out["A"], out["B"] = self._from_pool(out["A"], out["B"])
        if self.sharpen and spec.train:
            out["B_sharp"] = usm_sharp((out["B"] + 1) / 2) * 2 - 1
        memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        for key in ("A", "B", "B_sharp"):
            if key in out:
                out[key] = out[key].contiguous(memory_format=memory_format)
        return out

    @torch.no_grad()
    def _from_pool(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real-ESRGAN's pool of training pairs: fill it, then trade the batch for random stored pairs."""
        b = low.shape[0]
        if self.pool_size % b:
            raise RecipeError(f"method.pool_size {self.pool_size} must be a multiple of the batch size {b}.")
        if not self._pool:
            self._pool = {"A": low.new_empty((0, *low.shape[1:])), "B": high.new_empty((0, *high.shape[1:]))}
        if self._pool["A"].shape[0] < self.pool_size:
            self._pool = {"A": torch.cat([self._pool["A"], low]), "B": torch.cat([self._pool["B"], high])}
            return low, high
        order = torch.randperm(self.pool_size, device=low.device)
        pool_a, pool_b = self._pool["A"][order], self._pool["B"][order]
        out = pool_a[:b].clone(), pool_b[:b].clone()
        pool_a[:b], pool_b[:b] = low, high
        self._pool = {"A": pool_a, "B": pool_b}
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"pool": dict(self._pool)} if self._pool else {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        device = next(self.nets["G"].parameters()).device
        self._pool = {k: v.to(device) for k, v in state.get("pool", {}).items()}

    # --- one step --------------------------------------------------------------------------

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        G = self.nets["G"]
        target = batch.get("B_sharp", batch["B"])  # pixel and perceptual targets
        with ctx.autocast():
            fake = G(batch["A"])
        if "D" not in self.nets:
            with ctx.autocast():
                loss_pix = self.pixel(fake.float(), target.float())
            ctx.update("G", self.pixel_weight * loss_pix)
            return {"loss_G_pixel": loss_pix.detach()}

        D, gan = self.nets["D"], self.gan_loss
        scalars: dict[str, torch.Tensor] = {}
        # G first, with D frozen (BasicSR's order for SRGAN and ESRGAN).
        with frozen([D]), ctx.autocast():
            loss_pix = self.pixel(fake.float(), target.float())
            loss_g = self.pixel_weight * loss_pix
            scalars["loss_G_pixel"] = loss_pix.detach()
            if self.perceptual is not None:
                loss_per = self.perceptual(fake.float(), target.float())
                loss_g = loss_g + self.perceptual_weight * loss_per
                scalars["loss_G_perceptual"] = loss_per.detach()
            fake_pred = D(fake)
            if self.relativistic:
                real_pred = D(batch["B"]).detach()
                loss_gan = 0.5 * (gan(real_pred - fake_pred.mean(), False, for_discriminator=False)
                                  + gan(fake_pred - real_pred.mean(), True, for_discriminator=False))
            else:
                loss_gan = gan(fake_pred, True, for_discriminator=False)
            loss_g = loss_g + self.gan_weight * loss_gan
            scalars["loss_G_GAN"] = loss_gan.detach()
        ctx.update("G", loss_g)

        fake = fake.detach()
        with ctx.autocast():
            real_pred, fake_pred = D(batch["B"]), D(fake)
            if self.relativistic:
                loss_real = gan(real_pred - fake_pred.detach().mean(), True)
                loss_fake = gan(fake_pred - real_pred.detach().mean(), False)
                loss_d = 0.5 * (loss_real + loss_fake)
            else:
                loss_real, loss_fake = gan(real_pred, True), gan(fake_pred, False)
                loss_d = loss_real + loss_fake
        ctx.update("D", loss_d + gan.penalty(D, batch["B"], fake))
        return {**scalars, "loss_D_real": loss_real.detach(), "loss_D_fake": loss_fake.detach()}


def _images(value: Any) -> list[torch.Tensor]:
    """A batch entry as a list of `(C, H, W)` tensors (stacked or kept apart by size)."""
    return list(value) if isinstance(value, (list, tuple)) else list(value.unbind(0))


def _crop_pair(
    high: torch.Tensor, low: torch.Tensor | None, s: int, spec: BatchSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A high-resolution image cropped to a multiple of `s` and, with `spec.crop_size`, its random
    (training) or centred patch of that size; a given low-resolution image cropped in step."""
    h, w = high.shape[-2] // s * s, high.shape[-1] // s * s
    if low is not None and tuple(low.shape[-2:]) != (h // s, w // s):
        raise RecipeError(
            f"A low-resolution image of {tuple(low.shape[-2:])} pixels does not match its high-resolution "
            f"partner of {tuple(high.shape[-2:])} at scale {s}; the pairs must be made at the method's scale, and "
            "kept at their stored size (data.load_size = 0)."
        )
    top, left, p = 0, 0, None
    if spec.crop_hw is not None:
        p, width = spec.crop_hw
        if p != width:  # flips and transposes of square patches are the published augmentation
            raise RecipeError(
                f"data.crop_size [{p}, {width}] is not square, but super-resolution trains on square patches "
                "(random flips and 90-degree rotations, as ESRGAN and Real-ESRGAN do); set data.crop_size to one "
                "integer, the patch side in high-resolution pixels."
            )
        if min(h, w) < p:
            raise RecipeError(
                f"An image of {h}x{w} pixels is smaller than data.crop_size {p}; lower the crop size or leave out "
                "small images."
            )
        if spec.train:  # on the low-resolution grid, so a given low-resolution image crops in step
            top = int(torch.randint(0, (h - p) // s + 1, ())) * s
            left = int(torch.randint(0, (w - p) // s + 1, ())) * s
        else:
            top, left = (h - p) // 2 // s * s, (w - p) // 2 // s * s
    ph, pw = (h, w) if p is None else (p, p)
    high = high[..., top : top + ph, left : left + pw]
    if low is not None:
        low = low[..., top // s : (top + ph) // s, left // s : (left + pw) // s]
    return high, low


def _augment(high: torch.Tensor, low: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The same random horizontal flip, vertical flip and transpose per sample for both sides."""
    b = high.shape[0]
    draws = torch.rand(3, b) < 0.5
    pair = [high] if low is None else [high, low]
    for which, dims in ((0, (-1,)), (1, (-2,))):
        mask = draws[which].to(high.device).view(b, 1, 1, 1)
        pair = [torch.where(mask, x.flip(dims), x) for x in pair]
    if high.shape[-1] == high.shape[-2]:
        mask = draws[2].to(high.device).view(b, 1, 1, 1)
        pair = [torch.where(mask, x.transpose(-1, -2), x) for x in pair]
    return pair[0], (pair[1] if low is not None else None)


# --- factories -----------------------------------------------------------------------------------

PixelLoss = Annotated[str, ComponentRef("loss")]


def _init_from(generator: nn.Module, init_from: str) -> None:
    """Load a run's (or checkpoint's, or export's) generator weights into `generator`: its moving
    average when it kept one. ESRGAN starts its GAN stage from the PSNR-oriented generator."""
    saved = read_model(Path(init_from))
    state = saved.ema.get("G") or saved.nets.get("G")
    if state is None:
        raise RecipeError(f"method.init_from {init_from!r} holds no network G (it has {', '.join(saved.nets)}).")
    # Weights that compute on [0, 1] images (BasicSR's) load into a [-1, 1] network without a
    # complaint and give another picture: the image ranges must agree (sr_networks.PixelRange).
    theirs = saved.recipe.get("generator", {}).get("pixel_range", "-1..1")
    ours = getattr(unwrap(generator), "pixel_range", "-1..1")
    if theirs != ours:
        raise RecipeError(
            f"method.init_from {init_from!r}: its generator computes on pixel_range {theirs!r} images, this recipe's "
            f"[generator] on {ours!r}; set [generator] pixel_range = {theirs!r} to start from it."
        )
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RecipeError(
            f"method.init_from {init_from!r}: its generator does not fit this recipe's [generator] ({first}). Use "
            "the same generator table as the run it comes from."
        ) from None


def _build(parts: Parts, init_from: str, discriminator: bool, **options: Any) -> SuperResolution:
    generator = parts.generator()
    scale = int(getattr(generator, "scale", 1))
    degradation = parts.component("degradation", scale=scale) if parts.has("degradation") else None
    d = parts.discriminator(in_channels=parts.out_channels) if discriminator else None
    return SuperResolution(generator, discriminator=d, degradation=degradation, init_from=init_from, **options)


@register_method(tables=_PSNR_TABLES)
def sr_psnr(
    parts: Parts,
    /,
    *,
    pixel_loss: PixelLoss = "l1",
    pixel_weight: float = 1.0,
    init_from: str = "",
    sharpen: bool = False,
    pool_size: int = 0,
) -> SuperResolution:
    """PSNR-oriented super-resolution: the generator alone on a pixel loss (SRResNet: mse;
    MSRResNet, RRDB-PSNR: l1; Real-ESRNet: l1 with a [degradation] table and pool_size 180).

    Args:
        parts: builds [generator] and, when the recipe has it, [degradation].
        pixel_loss: the pixel loss component: l1 or mse.
        pixel_weight: its weight.
        init_from: a run folder, checkpoint or export whose generator weights start training.
        sharpen: USM-sharpened targets (Real-ESRNet).
        pool_size: training pairs kept and swapped at random (Real-ESRNet: 180; 0: none).
    """
    if pixel_weight <= 0 or pool_size < 0:
        raise ValueError(f"Expected pixel_weight > 0 and pool_size >= 0, got {pixel_weight} and {pool_size}")
    return _build(parts, init_from, False, pixel=parts.loss(pixel_loss), pixel_weight=pixel_weight, sharpen=sharpen,
                  pool_size=pool_size)


@register_method(tables=_GAN_TABLES)
def sr_gan(
    parts: Parts,
    /,
    *,
    pixel_loss: PixelLoss = "l1",
    pixel_weight: float = 1e-2,
    perceptual_loss: Annotated[str, ComponentRef("loss")] = "vgg19_layers",
    perceptual_options: Annotated[dict[str, Any] | None, OptionsOf("perceptual_loss")] = None,
    perceptual_weight: float = 1.0,
    gan_mode: GANLossName = "vanilla",
    gan_options: LossOptions = None,
    gan_weight: float = 5e-3,
    relativistic: bool = True,
    init_from: str = "",
    sharpen: bool = False,
    pool_size: int = 0,
) -> SuperResolution:
    """GAN super-resolution (defaults: ESRGAN's weights and relativistic average GAN).

    SRGAN, ESRGAN and Real-ESRGAN differ only in these options and their tables (their recipes and
    docs/super-resolution.md give each paper's): Real-ESRGAN is relativistic false, gan_weight 0.1,
    sharpen, a U-Net [discriminator] and a [degradation] table.

    Args:
        parts: builds [generator], [discriminator] (on high-resolution images) and, when the recipe
            has it, [degradation].
        pixel_loss: l1 (ESRGAN, Real-ESRGAN) or mse (SRGAN).
        pixel_weight: ESRGAN 1e-2, Real-ESRGAN 1.
        perceptual_loss: the perceptual loss component (`vgg19_layers`).
        perceptual_options: its options, e.g. `{ layers = { conv5_4 = 1.0 }, weights = "vgg19.pth" }`.
        perceptual_weight: its weight (0: none built).
        gan_mode: the adversarial loss (vanilla in all three papers).
        gan_options: its options.
        gan_weight: ESRGAN 5e-3, SRGAN 1e-3, Real-ESRGAN 0.1.
        relativistic: relativistic average GAN (ESRGAN) or a plain one (SRGAN, Real-ESRGAN).
        init_from: the PSNR-oriented run the GAN stage starts from (ESRGAN, Real-ESRGAN).
        sharpen: USM-sharpened pixel and perceptual targets (Real-ESRGAN).
        pool_size: training pairs kept and swapped at random (Real-ESRGAN: 180; 0: none).
    """
    if min(pixel_weight, perceptual_weight, gan_weight) < 0 or pool_size < 0:
        raise ValueError("Expected non-negative loss weights and pool_size")
    perceptual = parts.loss(perceptual_loss, **(perceptual_options or {})) if perceptual_weight > 0 else None
    return _build(
        parts, init_from, True, pixel=parts.loss(pixel_loss), pixel_weight=pixel_weight, perceptual=perceptual,
        perceptual_weight=perceptual_weight, gan_loss=parts.loss(gan_mode, **(gan_options or {})),
        gan_weight=gan_weight, relativistic=relativistic, sharpen=sharpen, pool_size=pool_size,
    )


# --- network interpolation ----------------------------------------------------------------------


def interpolate_checkpoints(a: Path, b: Path, alpha: float) -> dict[str, Any]:
    """ESRGAN's network interpolation: every floating tensor of each network the two runs both hold
    is `(1 - alpha) * A + alpha * B` (each side's moving average when it kept one); the recipe, the
    networks only B holds (the GAN run's discriminator) and integer buffers come from B. A
    checkpoint to translate, evaluate or export (it holds no optimiser state, so it does not resume).

    Raises:
        CheckpointError: alpha is outside [0, 1]; the two share no network; a shared network's keys
            or shapes differ.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CheckpointError(f"--alpha {alpha}: expected a number in [0, 1] (0: A, 1: B).")
    first, second = read_model(Path(a)), read_model(Path(b))
    tables = [saved.recipe.get("generator", {}) for saved in (first, second)]
    for key, default in (("name", None), ("pixel_range", "-1..1")):
        if tables[0].get(key, default) != tables[1].get(key, default):
            raise CheckpointError(
                f"{first.path} and {second.path} have different generators ({key} {tables[0].get(key, default)!r} and "
                f"{tables[1].get(key, default)!r}): interpolate two runs of the same generator."
            )
    nets = {name: dict(sd) for name, sd in second.nets.items()}
    if not set(first.nets) & set(second.nets):
        raise CheckpointError(
            f"{first.path} and {second.path} share no network ({', '.join(first.nets)} and {', '.join(second.nets)}): "
            "interpolate two runs of the same generator (e.g. the PSNR-oriented run and the GAN run started from it)."
        )
    for name in second.nets:
        if name not in first.nets:
            continue  # B's own networks (a discriminator) are kept as they are
        sd_a, sd_b = first.ema.get(name, first.nets[name]), second.ema.get(name, second.nets[name])
        if sd_a.keys() != sd_b.keys():
            only = sorted(set(sd_a) ^ set(sd_b))
            raise CheckpointError(
                f"{first.path} and {second.path} hold different networks {name!r} ({only[0]} is in one only): the "
                "architectures differ; interpolate two runs of the same generator."
            )
        mixed = {}
        for key, tb in sd_b.items():
            ta = sd_a[key]
            if ta.shape != tb.shape:
                raise CheckpointError(f"{name}.{key} has shape {tuple(ta.shape)} in {first.path} and "
                                      f"{tuple(tb.shape)} in {second.path}; the architectures differ.")
            mixed[key] = torch.lerp(ta.float(), tb.float(), alpha).to(tb.dtype) if tb.is_floating_point() else tb
        nets[name] = mixed
    state = {"epoch": 0, "epoch_step": 0, "step": second.step or 0, "nonfinite_total": 0, "nonfinite_in_row": 0}
    return checkpoint_dict(second.recipe, nets, method_state={}, state=state,  # no training pool: not for resuming
                           training={"interpolated_from": [str(first.path), str(second.path), alpha]})


@cli_command
def interpolate_command(
    run_a: Annotated[Path, typer.Argument(help="The first run (alpha 0), e.g. the PSNR-oriented one.")],
    run_b: Annotated[Path, typer.Argument(help="The second run (alpha 1), e.g. the GAN one.")],
    output: Annotated[Path, typer.Argument(help="The checkpoint file to write.")],
    alpha: Annotated[float, typer.Option(help="Weight of RUN_B: theta = (1 - alpha) theta_A + alpha theta_B.")] = 0.8,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Blend two runs of one generator parameter by parameter (ESRGAN's network interpolation)."""
    if output.exists() and not overwrite:
        raise CheckpointError(f"{output} exists; pass --overwrite to replace it, or choose another OUTPUT.")
    atomic_save(interpolate_checkpoints(run_a, run_b, alpha), output)
    typer.echo(f"Wrote {output}: {1 - alpha:g} x {run_a} + {alpha:g} x {run_b}. Evaluate it with: tkit eval {output}")


@hookimpl
def translate_kit_add_commands(app: typer.Typer) -> None:
    app.command(name="interpolate")(interpolate_command)
