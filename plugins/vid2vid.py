"""vid2vid: video-to-video synthesis of Wang, Liu, Zhu, Liu, Tao, Kautz and Catanzaro, NeurIPS 2018
(https://arxiv.org/abs/1808.06601).

Each output frame is made from the current label frame, the K previous label frames and the K
previous *generated* frames. The generator predicts a hallucinated image h, the flow w from the
current frame to the previous one and an occlusion mask m, and blends

    x_t = m * warp(x_{t-1}, w) + (1 - m) * h

so what the camera already showed is carried over and only new content is invented. Two kinds of
discriminator judge the result: an image discriminator (pix2pixHD's multiscale, conditional on the
label frame) and temporal discriminators that see K consecutive frames with the flow between them,
each at a temporal scale (frames 1, K, K^2, ... apart), so motion must look real too. Losses: GAN
and feature matching of both, VGG, the flow's L1 to the ground-truth flow and the warping loss
(the previous real frame warped by the predicted flow against the current one). Training is
progressive in the clip length: clips start short and double.

Networks here: `G`, the hallucination generator, any registered generator of the recipe's
[generator] table (pix2pixHD's `global_generator`, or `local_enhancer` for the coarse-to-fine
setting, or a `resnet`), fed the K+1 label frames and K previous frames along channels; `F`, the
flow-and-mask network (`vid2vid_flow`, the recipe's [flow] table); `D`, the image discriminator;
`D_T0`, `D_T1`, ..., one temporal discriminator per temporal scale.

Deviations from the published setting (each is deliberate; see docs/video.md):

- the flow and mask come from their own encoder-decoder `F` rather than from a branch sharing G's
  residual blocks, so any registered generator serves as G (the reference's sequential generator
  is one network with two heads);
- flows in the temporal discriminators and the flow loss are the data's ground-truth flows (the
  synthetic set's exact ones, or precomputed flow files), not FlowNet2's estimates, which need
  custom CUDA operations; a data set without flow files is refused with a message;
- generated frames in the history are detached (no back-propagation through time), as the
  reference does between the chunks of a clip;
- frame 0 of every clip is also generated without history (the first-frame case of inference,
  which the reference covers with a separate single-image model); frames 1.. start from the real
  frame 0, as the reference's training does;
- flows enter the temporal discriminators in pixels, unnormalised; no foreground-background
  model, no instance maps, one spatial scale of temporal discriminators.

Losses as the reference weighs them: GAN 1, FM 10 (image and temporal Ds), VGG 10 (lambda_feat),
flow L1 10 (lambda_F), the warping losses 10 (lambda_T: the real previous frame warped by the
predicted flow, and each generated frame against the previous generated one carried by the true
flow), the mask regulariser 1 (prefer the warped previous frame where the flow is valid). The
hallucinated images are judged by the image D and the VGG loss too, as the reference does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal

import torch
from torch import nn
from translate_kit_plugins.pix2pixhd import feature_matching_loss
from translate_kit_plugins.resnet import ResidualBlock
from translate_kit_plugins.video_data import ClipJitter, compose_flow, warp

from translate_kit.api import (
    BatchSpec,
    ComponentRef,
    DataError,
    GANLossName,
    LossOptions,
    Method,
    Norm,
    OptionsOf,
    Parts,
    StepContext,
    conv_bias,
    frozen,
    init_weights,
    make_norm,
    register,
    register_method,
)

__all__ = ["FlowMaskNet", "Vid2Vid", "vid2vid", "vid2vid_flow"]


# --- the flow-and-mask network ----------------------------------------------------------------


class FlowMaskNet(nn.Module):
    """Flow to the previous frame and occlusion mask, from the label and frame history.

    An encoder (c7s1-ngf, `n_downsampling` stride-2 convolutions), `n_blocks` residual blocks and a
    decoder (transposed convolutions) with two heads: the flow `(B, 2, H, W)` in pixels (a 3x3
    convolution, unbounded) and the mask `(B, 1, H, W)` in (0, 1) (a sigmoid): 1 takes the warped
    previous frame, 0 the hallucinated image.

    Attributes:
        size_multiple: 2^n_downsampling; min_size: twice that.
    """

    def __init__(self, *, in_channels: int, ngf: int = 32, n_downsampling: int = 3, n_blocks: int = 3,
                 norm: Norm = "instance") -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   make_norm(norm, ngf), nn.ReLU(True)]
        width = ngf
        for _ in range(n_downsampling):
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias), make_norm(norm, width * 2),
                       nn.ReLU(True)]
            width *= 2
        layers += [ResidualBlock(width, norm, 0.0) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       make_norm(norm, width // 2), nn.ReLU(True)]
            width //= 2
        self.body = nn.Sequential(*layers)
        self.flow_head = nn.Conv2d(width, 2, 3, padding=1)
        self.mask_head = nn.Conv2d(width, 1, 3, padding=1)
        self.in_channels = in_channels
        self.size_multiple = 2**n_downsampling
        self.min_size = 2 * self.size_multiple

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, in_channels, H, W)` -> flow `(B, 2, H, W)` and mask `(B, 1, H, W)`."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-1] % self.size_multiple or \
                x.shape[-2] % self.size_multiple:
            raise ValueError(f"Expected input of shape (B, {self.in_channels}, H, W) with H, W divisible by "
                             f"{self.size_multiple}, got {tuple(x.shape)}")
        features = self.body(x)
        return self.flow_head(features), torch.sigmoid(self.mask_head(features))


@register("flow_generator", tiny={"ngf": 4, "n_downsampling": 2, "n_blocks": 1})
def vid2vid_flow(*, in_channels: int = 8, ngf: int = 32, n_downsampling: int = 3, n_blocks: int = 3,
                 norm: Norm = "instance") -> FlowMaskNet:
    """vid2vid's flow-and-mask network (the recipe's [flow] table); the method sets in_channels."""
    return init_weights(FlowMaskNet(in_channels=in_channels, ngf=ngf, n_downsampling=n_downsampling,
                                    n_blocks=n_blocks, norm=norm))


# --- the method -------------------------------------------------------------------------------


def _history(frames: list[torch.Tensor], length: int) -> torch.Tensor:
    """The last `length` of `frames` along a new dim 1, the earliest repeated where there are fewer."""
    kept = frames[-length:]
    return torch.stack([kept[0]] * (length - len(kept)) + kept, dim=1)


def _later_frames(features: list[list[torch.Tensor]], clips: int) -> list[list[torch.Tensor]]:
    """D's features of `clips` clips' frames flattened `(N*T, ...)`, kept for frames 1.. only."""
    return [[f.unflatten(0, (clips, -1))[:, 1:].flatten(0, 1) for f in scale] for scale in features]


class Vid2Vid(Method):
    """The vid2vid method (module docstring).

    Args:
        generator: G, `(B, (K+1) C_in + K C_out, H, W)` -> hallucinated `(B, C_out, H, W)` in [-1, 1].
        flow_net: F, the same input -> (flow, mask).
        discriminator: the image D on (label, frame) pairs, multiscale.
        temporal: one D per temporal scale on K_D frames and their K_D - 1 flows.
        gan_loss: the adversarial loss of every D.
        history: K, previous frames G sees.
        temporal_frames: K_D, frames a temporal D sees.
        lambda_fm, lambda_vgg, lambda_flow, lambda_warp, lambda_temporal: loss weights.
        vgg_loss: the VGG loss, or None.
        clip_start, clip_double_every: progressive training: clips of `clip_start` frames, doubled
            every `clip_double_every` steps (0: whole clips from the start) up to the data's.
        first_frame: "real": frames 1.. of a training clip follow the real frame 0; "generated": the
            generated one.
        out_channels: C_out (the zeros that stand for a first frame's missing history).
    """

    sample_mode = "eval"

    def __init__(
        self, generator: nn.Module, flow_net: nn.Module, discriminator: nn.Module, temporal: list[nn.Module],
        gan_loss: nn.Module, *, history: int, temporal_frames: int, lambda_fm: float, lambda_vgg: float,
        vgg_loss: nn.Module | None, lambda_flow: float, lambda_warp: float, lambda_temporal: float,
        clip_start: int, clip_double_every: int, first_frame: Literal["real", "generated"], out_channels: int,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "F": flow_net, "D": discriminator})
        self.roles = {"G": "translate", "F": "translate", "D": "adversary"}
        for s, d in enumerate(temporal):
            self.nets[f"D_T{s}"] = d
            self.roles[f"D_T{s}"] = "adversary"
        self.temporal_scales = len(temporal)
        self.gan_loss, self.vgg_loss = gan_loss, vgg_loss
        self.history, self.temporal_frames = history, temporal_frames
        self.lambda_fm, self.lambda_vgg, self.lambda_flow = lambda_fm, lambda_vgg, lambda_flow
        self.lambda_warp, self.lambda_temporal = lambda_warp, lambda_temporal
        self.clip_start, self.clip_double_every, self.first_frame = clip_start, clip_double_every, first_frame
        self.out_channels = out_channels
        self._jitter = ClipJitter()

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"D": ["D", *(f"D_T{s}" for s in range(self.temporal_scales))], "G": ["G", "F"]}

    # --- data ------------------------------------------------------------------------------

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """Clips with one jitter for every frame and side (`ClipJitter`): "clip_A", "clip_B" `(N, T, C,
        H, W)`, "flow", "valid"; "A" and "B" are the clips' first frames (what sample pages show)."""
        out = self._jitter.prepare(batch, spec)
        out["clip_A"], out["clip_B"] = out["A"], out["B"]
        out["A"], out["B"] = out["clip_A"][:, 0], out["clip_B"][:, 0]
        return out

    # --- generation ------------------------------------------------------------------------

    def generate_frame(
        self, labels: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One frame: `labels` `(B, K+1, C_in, H, W)` (current last), `previous` generated frames
        `(B, K, C_out, H, W)` (latest last) or None for a first frame (zeros in, the mask off).

        Returns:
            (frame, hallucinated, flow, mask); flow and mask are None for a first frame.
        """
        b, _, _, h, w = labels.shape
        if previous is None:
            prev_in = labels.new_zeros(b, self.history * self.out_channels, h, w)
        else:
            prev_in = previous.flatten(1, 2)
        x = torch.cat([labels.flatten(1, 2), prev_in], dim=1)
        hallucinated = self.nets["G"](x)
        if previous is None:
            return hallucinated, hallucinated, None, None
        flow, mask = self.nets["F"](x)
        warped = warp(previous[:, -1], flow)
        return mask * warped + (1 - mask) * hallucinated, hallucinated, flow, mask

    def unroll(self, labels: torch.Tensor, first: torch.Tensor | None = None) -> dict[str, Any]:
        """Generate a clip frame by frame: what training optimises and inference repeats.

        Args:
            labels: `(B, T, C_in, H, W)`.
            first: frame 0's output `(B, C_out, H, W)` (given); None: generated without history.

        Returns:
            "frames" `(B, T, C_out, H, W)`; "flows", "masks" and "hallucinated" lists for frames
            1..T-1. Generated frames enter the history detached.
        """
        t_len = labels.shape[1]
        label_list = list(labels.unbind(1))
        frames = [first if first is not None else self.generate_frame(_history(label_list[:1], self.history + 1),
                                                                      None)[0]]
        history = [frames[0].detach()]
        flows, masks, hallucinated = [], [], []
        for t in range(1, t_len):
            out, raw, flow, mask = self.generate_frame(_history(label_list[: t + 1], self.history + 1),
                                                       _history(history, self.history))
            frames.append(out)
            flows.append(flow)
            masks.append(mask)
            hallucinated.append(raw)
            history.append(out.detach())
        return {"frames": torch.stack(frames, 1), "flows": flows, "masks": masks, "hallucinated": hallucinated}

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """A single image: a first frame, generated without history."""
        labels = torch.stack([x] * (self.history + 1), dim=1)
        return self.generate_frame(labels, None)[0]

    def translate_sequence(self, frames: Iterable[torch.Tensor], *,
                           first_output: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """The recurrence at inference: frames `(B, C_in, H, W)` one at a time, each output made from
        the label history and the outputs so far (`first_output`: frame 0's output, given)."""
        labels: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        for x in frames:
            labels.append(x)
            if not outputs:
                y = first_output if first_output is not None else \
                    self.generate_frame(_history(labels, self.history + 1), None)[0]
            else:
                y = self.generate_frame(_history(labels, self.history + 1), _history(outputs, self.history))[0]
            labels = labels[-(self.history + 1):]
            outputs = [*outputs[-self.history:], y]
            yield y

    # --- training --------------------------------------------------------------------------

    def clip_length(self, step: int, available: int) -> int:
        """Frames trained at `step`: `clip_start` doubled every `clip_double_every` steps, at most `available`."""
        if self.clip_double_every <= 0:
            return available
        return max(2, min(available, self.clip_start * 2 ** (step // self.clip_double_every)))

    def _temporal_inputs(self, frames: torch.Tensor, flow: torch.Tensor, scale: int) -> torch.Tensor | None:
        """K_D frames `skip = K_D^scale` apart, ending at the clip's last frame, with the backward flows
        between them (composed from the per-frame flows), along channels; None if the clip is too short."""
        k, t_len = self.temporal_frames, frames.shape[1]
        skip = k**scale
        first = t_len - 1 - (k - 1) * skip
        if first < 0:
            return None
        picks = list(range(first, t_len, skip))
        flows = []
        for i in picks[1:]:
            total = flow[:, i]
            for j in range(i - 1, i - skip, -1):
                total = compose_flow(total, flow[:, j])
            flows.append(total)
        return torch.cat([frames[:, picks].flatten(1, 2), torch.stack(flows, 1).flatten(1, 2)], dim=1)

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        if "flow" not in batch:
            raise DataError("vid2vid trains with ground-truth flow (flow/<sequence>.pt beside the frames), and this "
                            "data has none; make a synthetic set with `tkit data synth-video DIR`, or precompute "
                            "flow files for every sequence (docs/video.md).")
        t_len = self.clip_length(ctx.step, batch["clip_A"].shape[1])
        labels, real = batch["clip_A"][:, :t_len], batch["clip_B"][:, :t_len]
        flow_gt, valid = batch["flow"][:, :t_len], batch["valid"][:, :t_len].float()
        D = self.nets["D"]
        with ctx.autocast():
            # Frame 0 without history (the first-frame case), then frames 1.. from the real or that frame.
            if self.first_frame == "real":
                first = self.generate_frame(_history([labels[:, 0]], self.history + 1), None)[0]
                unrolled = self.unroll(labels, real[:, 0])
                fake = torch.cat([first[:, None], unrolled["frames"][:, 1:]], dim=1)  # (N, T, C, H, W)
            else:
                unrolled = self.unroll(labels)
                fake = unrolled["frames"]
        pairs_real = torch.cat([labels, real], dim=2).flatten(0, 1)
        pairs_fake = torch.cat([labels, fake], dim=2).flatten(0, 1)
        # The hallucinated images of frames 1.. are judged too (the reference's fake_B_raw), so what G
        # invents where the mask hands over to it looks real on its own.
        raw = torch.stack(unrolled["hallucinated"], 1) if t_len > 1 else None
        pairs_raw = torch.cat([labels[:, 1:], raw], dim=2).flatten(0, 1) if raw is not None else None
        temporal_real, temporal_fake, scales = [], [], []
        for s in range(self.temporal_scales):
            r = self._temporal_inputs(real, flow_gt, s)
            if r is not None:
                temporal_real.append(r)
                temporal_fake.append(self._temporal_inputs(fake, flow_gt, s))
                scales.append(s)

        # D step: the image D and every temporal D that the clip is long enough for.
        with ctx.autocast():
            loss_d_real = self.gan_loss(D(pairs_real), target_is_real=True, for_discriminator=True)
            loss_d_fake = self.gan_loss(D(pairs_fake.detach()), target_is_real=False, for_discriminator=True)
            if pairs_raw is not None:  # a second set of fakes, with the real term counted again (the reference)
                loss_d_real = 2 * loss_d_real
                loss_d_fake = loss_d_fake + self.gan_loss(D(pairs_raw.detach()), target_is_real=False,
                                                          for_discriminator=True)
            loss_dt = real.new_zeros(())
            for s, r, f in zip(scales, temporal_real, temporal_fake):
                d_t = self.nets[f"D_T{s}"]
                loss_dt = loss_dt + self.gan_loss(d_t(r), target_is_real=True, for_discriminator=True)
                loss_dt = loss_dt + self.gan_loss(d_t(f.detach()), target_is_real=False, for_discriminator=True)
            loss_d = 0.5 * (loss_d_real + loss_d_fake + loss_dt)
        ctx.update("D", loss_d)

        # G step: fool the frozen Ds, match their features, follow the true flow.
        temporal_nets = [self.nets[f"D_T{s}"] for s in range(self.temporal_scales)]
        with frozen([D, *temporal_nets]), ctx.autocast():
            logits_fake, feats_fake = D(pairs_fake, return_features=True)
            _, feats_real = D(pairs_real, return_features=True)
            loss_gan = self.gan_loss(logits_fake, target_is_real=True, for_discriminator=False)
            loss_fm = feature_matching_loss(feats_real, feats_fake)
            if pairs_raw is not None:
                logits_raw, feats_raw = D(pairs_raw, return_features=True)
                loss_gan = loss_gan + self.gan_loss(logits_raw, target_is_real=True, for_discriminator=False)
                loss_fm = loss_fm + feature_matching_loss(_later_frames(feats_real, real.shape[0]), feats_raw)
            loss_t_gan, loss_t_fm = real.new_zeros(()), real.new_zeros(())
            for s, r, f in zip(scales, temporal_real, temporal_fake):
                d_t = self.nets[f"D_T{s}"]
                logits_t, feats_t = d_t(f, return_features=True)
                loss_t_gan = loss_t_gan + self.gan_loss(logits_t, target_is_real=True, for_discriminator=False)
                loss_t_fm = loss_t_fm + feature_matching_loss(d_t(r, return_features=True)[1], feats_t)
            loss_vgg = real.new_zeros(())
            if self.vgg_loss is not None:
                loss_vgg = self.vgg_loss(fake.flatten(0, 1), real.flatten(0, 1))
                if raw is not None:
                    loss_vgg = loss_vgg + self.vgg_loss(raw.flatten(0, 1), real[:, 1:].flatten(0, 1))
            loss_flow, loss_warp, loss_consistency, loss_mask = (real.new_zeros(()) for _ in range(4))
            if t_len > 1:
                predicted = torch.stack(unrolled["flows"], 1).flatten(0, 1)
                mask = valid[:, 1:].flatten(0, 1)
                denominator = mask.sum().clamp_min(1)
                loss_flow = ((predicted - flow_gt[:, 1:].flatten(0, 1)).abs() * mask).sum() / (2 * denominator)
                warped_real = warp(real[:, :-1].flatten(0, 1), predicted)
                loss_warp = ((warped_real - real[:, 1:].flatten(0, 1)).abs() * mask).sum() / (
                    real.shape[2] * denominator)
                # The reference's G warping loss: each generated frame against the previous generated
                # one carried along the true flow; and its weight loss: where the content was already
                # in the previous frame, prefer carrying it over (mask 1) to hallucinating it anew.
                carried = warp(fake[:, :-1].flatten(0, 1).detach(), flow_gt[:, 1:].flatten(0, 1))
                loss_consistency = ((fake[:, 1:].flatten(0, 1) - carried).abs() * mask).sum() / (
                    real.shape[2] * denominator)
                loss_mask = ((1 - torch.stack(unrolled["masks"], 1).flatten(0, 1)) * mask).sum() / denominator
            loss_g = (loss_gan + self.lambda_fm * loss_fm
                      + self.lambda_temporal * (loss_t_gan + self.lambda_fm * loss_t_fm)
                      + self.lambda_vgg * loss_vgg + self.lambda_flow * loss_flow
                      + self.lambda_warp * (loss_warp + loss_consistency) + loss_mask)
        ctx.update("G", loss_g)
        return {
            "loss_G_GAN": loss_gan.detach(), "loss_G_FM": loss_fm.detach(), "loss_G_T_GAN": loss_t_gan.detach(),
            "loss_G_VGG": loss_vgg.detach(), "loss_flow": loss_flow.detach(), "loss_warp": loss_warp.detach(),
            "loss_G_warp": loss_consistency.detach(), "loss_mask": loss_mask.detach(),
            "loss_D_real": loss_d_real.detach(), "loss_D_fake": loss_d_fake.detach(), "loss_D_T": loss_dt.detach(),
            "clip_length": torch.tensor(float(t_len)),
        }


@register_method(tables={"generator": "generator", "flow": "flow_generator", "discriminator": "discriminator",
                         "temporal_discriminator": "discriminator"})
def vid2vid(
    parts: Parts,
    /,
    *,
    history: int = 2,
    temporal_frames: int = 3,
    temporal_scales: int = 2,
    lambda_fm: float = 10.0,
    lambda_vgg: float = 0.0,
    vgg_loss: Annotated[str, ComponentRef("loss")] = "vgg19",
    vgg_options: Annotated[dict[str, Any] | None, OptionsOf("vgg_loss")] = None,
    lambda_flow: float = 10.0,
    lambda_warp: float = 10.0,
    lambda_temporal: float = 1.0,
    gan_mode: GANLossName = "lsgan",
    gan_options: LossOptions = None,
    clip_start: int = 0,
    clip_double_every: int = 0,
    first_frame: Literal["real", "generated"] = "real",
) -> Vid2Vid:
    """vid2vid (Wang et al. 2018): sequential generator with flow and mask, image and temporal Ds.

    Args:
        parts: builds [generator] (G, the hallucination), [flow] (F), [discriminator] (the image D)
            and [temporal_discriminator] (one per temporal scale).
        history: K, previous frames G and F see (the reference's n_frames_G - 1 = 2).
        temporal_frames: frames a temporal D sees (the reference's n_frames_D = 3).
        temporal_scales: temporal Ds, frames 1, K_D, K_D^2 ... apart (the reference's n_scales_temporal = 2).
        lambda_fm: feature matching weight (10, as pix2pixHD and vid2vid).
        lambda_vgg: VGG weight (the paper's 10); 0 builds no VGG (its weights are a local file).
        vgg_loss, vgg_options: the perceptual loss and its options (`{ weights = "vgg19-dcbb9e9d.pth" }`).
        lambda_flow: weight of the flow L1 to the ground truth (the reference's 10).
        lambda_warp: weight of the two warping losses (the reference's lambda_T = 10).
        lambda_temporal: weight of the temporal Ds' GAN and FM losses (1).
        gan_mode, gan_options: the adversarial loss (lsgan, the reference's) and its options.
        clip_start: progressive training: frames per clip at first (0: the data's clip_length).
        clip_double_every: steps between doublings of the clip length (0: no schedule).
        first_frame: what frames 1.. of a training clip follow: the "real" frame 0 (the reference) or
            the "generated" one (what inference from a generated first frame does).
    """
    if history < 1 or temporal_frames < 2 or temporal_scales < 0:
        raise ValueError(f"Expected history >= 1, temporal_frames >= 2 and temporal_scales >= 0, got {history}, "
                         f"{temporal_frames}, {temporal_scales}")
    if min(lambda_fm, lambda_vgg, lambda_flow, lambda_warp, lambda_temporal) < 0 or clip_start < 0 \
            or clip_double_every < 0:
        raise ValueError("Expected non-negative loss weights, clip_start and clip_double_every")
    if clip_double_every and clip_start < 2:
        raise ValueError(f"clip_double_every = {clip_double_every} needs clip_start >= 2 (frames of the first "
                         f"clips), got {clip_start}")
    if clip_double_every and temporal_scales and clip_start < temporal_frames:
        raise ValueError(f"clip_start = {clip_start} is shorter than temporal_frames = {temporal_frames}: the temporal "
                         f"discriminator would see no clip at first; set clip_start >= {temporal_frames}")
    c_in, c_out = parts.in_channels, parts.out_channels
    g_in = (history + 1) * c_in + history * c_out
    temporal_in = temporal_frames * c_out + (temporal_frames - 1) * 2  # frames and the flows between them
    temporal = [parts.component("temporal_discriminator", in_channels=temporal_in) for _ in range(temporal_scales)]
    perceptual = parts.loss(vgg_loss, **(vgg_options or {})) if lambda_vgg > 0 else None
    return Vid2Vid(
        parts.generator(in_channels=g_in, out_channels=c_out),
        parts.component("flow", in_channels=g_in),
        parts.discriminator(in_channels=c_in + c_out),
        temporal,
        parts.loss(gan_mode, **(gan_options or {})),
        history=history, temporal_frames=temporal_frames, lambda_fm=lambda_fm, lambda_vgg=lambda_vgg,
        vgg_loss=perceptual, lambda_flow=lambda_flow, lambda_warp=lambda_warp, lambda_temporal=lambda_temporal,
        clip_start=clip_start, clip_double_every=clip_double_every, first_frame=first_frame, out_channels=c_out,
    )

