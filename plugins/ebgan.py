"""EBGAN: an auto-encoder discriminator whose energy is its reconstruction error, and the margin loss.

Zhao, Mathieu & LeCun, "Energy-based Generative Adversarial Network", ICLR 2017,
https://arxiv.org/abs/1609.03126 (Sections 2.1-2.4).

The discriminator is an auto-encoder; the energy of a sample is how badly it reconstructs it, low
for data. D minimises ``D(x) + max(0, m - D(G(z)))`` (Eq. 1): real energies down, generated ones up
to the margin ``m`` and no further. G minimises ``D(G(z)) + lambda_PT * PT`` (Eq. 2 with the
"repelling regulariser" of Section 2.4), where the pull-away term PT is the mean squared cosine
similarity between the encoder's embeddings of distinct generated samples of the batch: 0 for
orthogonal embeddings, 1 for identical ones. PT discourages mode collapse; it enters G's loss only.

How it fits the adversarial contract (`translate_kit.adversarial`): PT needs the discriminator's
embedding, which a loss scoring the plain `"energy"` output never sees. So the auto-encoder
declares an output kind of its own, `ENERGY_EMBEDDING` (`"energy_embedding"`): an
`EnergyEmbedding(energy, embedding)` named tuple, and the `ebgan` loss scores that kind only.
A recipe pairing `ebgan_autoencoder` with a logit loss (`vanilla`, ...), or `ebgan` with a logit
discriminator (`patchgan`, ...), is refused when it is loaded, like any mismatched pair.

Conditional use: pix2pix's method works unchanged (`gan_mode = "ebgan"` with
`[discriminator] name = "ebgan_autoencoder"`): D sees (input, output) pairs, so the auto-encoder
reconstructs the pair (6 channels for RGB). pix2pix halves D's loss, ``0.5 * (D(x, y) +
max(0, m - D(x, G(x))))``: the margin still applies to the energies themselves, so halving only
scales D's gradient by 1/2, which Adam (the recipes' optimiser) all but cancels (it divides by the
gradient's running RMS); with SGD it would halve D's learning rate. Two further effects of the
pairing: G's adversarial term is an energy, near m = 0.03 once D holds generated pairs at the
margin, beside 100 x L1 (tens early in training; pix2pix's BCE term is about 0.7), so it weighs
little in G's loss, and pix2pix has no weight for the adversarial term to raise it; and PT compares
codes of whole pairs, whose input halves already differ across a batch, so G's gradient from PT
acts through the output's part of the codes only.

Deviations from the paper, all stated where they matter:

- Energy: the paper writes ``D(x) = ||Dec(Enc(x)) - x||``; here it is the per-sample mean squared
  error, so that an energy means the same at any image size. Margins convert as
  ``m_mse = m_norm^2 / (C H W)``: the paper's RGB settings (m = 20 at 64x64, 40 at 128x128, 80 at
  256x256) all give ``m_mse = 0.0326`` (with images in [-1, 1]), the `ebgan` loss's default.
- Architecture: the paper's 64x64 auto-encoder (encoder (64)4c2s-(128)4c2s-(256)4c2s, decoder
  mirrored with transposed convolutions) generalised to `n_layers` levels; norms and activations
  follow pix2pix's conventions (BatchNorm, LeakyReLU 0.2 in the encoder, ReLU in the decoder, N(0,
  0.02) weights). The decoder ends without tanh, so the energy is unbounded above: the margin, not
  the output range, bounds how far D pushes generated energies.
- Pull-away term with one sample: PT needs two distinct samples, so a batch of one (pix2pix's
  facades setting) has PT = 0; the `ebgan_facades` recipe trains with batches of 4.

Example:
    >>> import torch
    >>> d = ebgan_autoencoder(ndf=8)
    >>> out = d(torch.randn(2, 6, 32, 32))
    >>> out.energy.shape, out.embedding.shape  # one energy per pair; 32 channels at 4x4 flattened
    (torch.Size([2]), torch.Size([2, 512]))
    >>> criterion = ebgan(margin=1.0)
    >>> criterion(EnergyEmbedding(torch.tensor([0.25, 2.0]), torch.eye(2)), target_is_real=False)
    tensor(0.3750)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import (
    Norm,
    check_image_batch,
    conv_bias,
    init_weights,
    make_norm,
    register_discriminator,
    register_loss,
)

__all__ = [
    "ENERGY_EMBEDDING",
    "EBGANLoss",
    "EnergyAutoEncoder",
    "EnergyEmbedding",
    "ebgan",
    "ebgan_autoencoder",
    "ebgan_loss",
    "pull_away_term",
    "reconstruction_energy",
]

ENERGY_EMBEDDING = "energy_embedding"  # the output kind: an `EnergyEmbedding` per batch
_MAX_MULT = 8  # channel multipliers double per level and stop at 8, as in the PatchGAN
# The paper's margin for RGB images as a per-pixel mean squared error: 20^2 / (3 * 64 * 64), which
# is also 40^2 / (3 * 128^2) and 80^2 / (3 * 256^2) (see the module docstring).
PAPER_MARGIN_MSE = 0.0326


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 (autocast's outputs) as float32; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class EnergyEmbedding(NamedTuple):
    """What the EBGAN auto-encoder outputs for a batch.

    Attributes:
        energy: (B,) non-negative reconstruction energies (float32 under autocast); low for data.
        embedding: (B, K) the encoder's code of each sample, flattened (what PT compares).
    """

    energy: torch.Tensor
    embedding: torch.Tensor


# --- functions ---------------------------------------------------------------------------------


def reconstruction_energy(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error ``mean_{c,h,w} (reconstruction - x)^2``, at least in float32.

    Args:
        reconstruction: (B, C, H, W), the auto-encoder's output.
        x: (B, C, H, W), its input.

    Returns:
        (B,) energies.

    Example:
        >>> reconstruction_energy(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
        tensor([1., 1.])
    """
    if reconstruction.shape != x.shape:
        raise ValueError(
            f"Expected a reconstruction of the input's shape {tuple(x.shape)}, got {tuple(reconstruction.shape)}"
        )
    return (_as_float(reconstruction) - _as_float(x)).square().flatten(1).mean(dim=1)


def pull_away_term(embedding: torch.Tensor) -> torch.Tensor:
    """EBGAN's pull-away term: the mean, over ordered pairs of distinct samples, of the squared
    cosine similarity of their embeddings (Zhao et al. 2017, Section 2.4).

    ``PT = 1 / (N (N - 1)) * sum_i sum_{j != i} (s_i . s_j / (|s_i| |s_j|))^2``. A batch of one has no
    pair, and PT is 0. A zero embedding counts as orthogonal to every other.

    Args:
        embedding: (N, K) embeddings, or (N, ...) flattened from dimension 1.

    Returns:
        A scalar in [0, 1], float32 for half-precision embeddings.

    Example:
        >>> pull_away_term(torch.eye(3)), pull_away_term(torch.ones(3, 4))
        (tensor(0.), tensor(1.))
    """
    if embedding.ndim < 2:
        raise ValueError(f"Expected embeddings of shape (N, K), got {tuple(embedding.shape)}")
    n = embedding.shape[0]
    if n < 2:
        return _as_float(embedding).new_zeros(())
    unit = F.normalize(_as_float(embedding.flatten(1)), dim=1)
    with torch.autocast(unit.device.type, enabled=False):  # cosines near 1 need more than bfloat16's 8 bits
        cosine = unit @ unit.T
    off_diagonal = cosine.square().sum() - cosine.diagonal().square().sum()
    return off_diagonal / (n * (n - 1))


def ebgan_loss(
    prediction: EnergyEmbedding,
    target_is_real: bool,
    for_discriminator: bool = True,
    *,
    margin: float = PAPER_MARGIN_MSE,
    pt_weight: float = 0.1,
) -> torch.Tensor:
    """EBGAN's margin loss, one term at a time, as pix2pix-style methods call an adversarial loss.

    - discriminator, real: ``mean(E)``; discriminator, fake: ``mean(max(0, margin - E))``;
    - generator (fakes scored as real): ``mean(E) + pt_weight * PT(embedding)``.

    Args:
        prediction: the auto-encoder's output for the batch.
        target_is_real: score against "real" (True) or "fake".
        for_discriminator: the loss trains D (True) or G.
        margin: m, in the energy's unit (per-pixel mean squared error).
        pt_weight: lambda_PT, the pull-away term's weight (0.1 in the paper); G's loss only.

    Returns:
        A scalar, float32 for half-precision predictions.

    Raises:
        TypeError: `prediction` is not an `EnergyEmbedding`.
        ValueError: a generator loss with ``target_is_real=False``.

    Example:
        >>> out = EnergyEmbedding(torch.tensor([0.5, 1.5]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        >>> ebgan_loss(out, True, margin=1.0), ebgan_loss(out, False, margin=1.0)
        (tensor(1.), tensor(0.2500))
        >>> ebgan_loss(out, True, for_discriminator=False, pt_weight=1.0)  # 1 + PT, PT = cos^2(45 deg)
        tensor(1.5000)
    """
    if not isinstance(prediction, EnergyEmbedding):
        raise TypeError(
            f"Expected the EnergyEmbedding(energy, embedding) of an energy_embedding discriminator such as "
            f"ebgan_autoencoder, got {type(prediction).__name__}"
        )
    energy = _as_float(prediction.energy)
    if not for_discriminator:
        if not target_is_real:
            raise ValueError("The generator's ebgan loss needs target_is_real=True, got False")
        loss = energy.mean()
        return loss + pt_weight * pull_away_term(prediction.embedding) if pt_weight else loss
    return energy.mean() if target_is_real else F.relu(margin - energy).mean()


class EBGANLoss(nn.Module):
    """Module form of `ebgan_loss`, an `AdversarialLoss` for `ENERGY_EMBEDDING` outputs.

    Args:
        margin: m, in per-pixel mean squared error.
        pt_weight: lambda_PT (0.1 in the paper; 0 gives EBGAN without PT).
    """

    def __init__(self, *, margin: float = PAPER_MARGIN_MSE, pt_weight: float = 0.1) -> None:
        super().__init__()
        if margin <= 0 or pt_weight < 0:
            raise ValueError(f"Expected margin > 0 and pt_weight >= 0, got margin={margin}, pt_weight={pt_weight}")
        self.margin = margin
        self.pt_weight = pt_weight

    def forward(
        self, prediction: EnergyEmbedding, target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """The loss of one batch's `EnergyEmbedding`; see `ebgan_loss`."""
        return ebgan_loss(
            prediction, target_is_real, for_discriminator, margin=self.margin, pt_weight=self.pt_weight
        )

    def penalty(
        self, discriminator: Callable[[torch.Tensor], EnergyEmbedding], real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        """No regulariser: EBGAN's D loss is the margin loss alone (a zero, float32 for half inputs)."""
        return _as_float(real).new_zeros(())

    def extra_repr(self) -> str:
        return f"margin={self.margin}, pt_weight={self.pt_weight}"


# --- the auto-encoder --------------------------------------------------------------------------


class EnergyAutoEncoder(nn.Module):
    """EBGAN's discriminator: a convolutional auto-encoder scoring each sample by its reconstruction.

    Encoder, for k = 0 .. n_layers-1: Conv4x4/2 to ndf·min(2^k, 8) -> norm (not at k = 0) ->
    LeakyReLU(0.2). Decoder, mirrored: ConvTranspose4x4/2 back to the previous width -> norm -> ReLU,
    and a last ConvTranspose4x4/2 to `in_channels`, linear. n_layers 3, ndf 64 is the paper's 64x64
    auto-encoder: (64)4c2s-(128)4c2s-(256)4c2s, (128)4dc2s-(64)4dc2s-(3)4dc2s.

    Args:
        in_channels: channels of the input (6 for an RGB pair).
        ndf: feature maps of the first convolution.
        n_layers: stride-2 levels; inputs must be multiples of 2**n_layers.
        norm: "batch", "instance" or "none".

    Attributes:
        size_multiple, min_size: 2**n_layers (inputs must reduce to whole codes).
        embedding_channels: channels of the code; the embedding has
            ``embedding_channels * (H / 2**n_layers) * (W / 2**n_layers)`` features.
    """

    def __init__(self, *, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1 or min(in_channels, ndf) < 1:
            raise ValueError(f"Expected n_layers, in_channels and ndf >= 1, got {n_layers}, {in_channels}, {ndf}")
        self.in_channels = in_channels
        self.n_layers = n_layers
        self.size_multiple = self.min_size = 2**n_layers
        bias = conv_bias(norm)
        widths = [ndf * min(2**k, _MAX_MULT) for k in range(n_layers)]
        self.embedding_channels = widths[-1]
        encoder = [nn.Sequential(nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))]
        for k in range(1, n_layers):
            encoder.append(
                nn.Sequential(
                    nn.Conv2d(widths[k - 1], widths[k], 4, 2, 1, bias=bias),
                    make_norm(norm, widths[k]),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
        decoder = []
        for k in range(n_layers - 1, 0, -1):
            decoder.append(
                nn.Sequential(
                    nn.ConvTranspose2d(widths[k], widths[k - 1], 4, 2, 1, bias=bias),
                    make_norm(norm, widths[k - 1]),
                    nn.ReLU(inplace=True),
                )
            )
        decoder.append(nn.ConvTranspose2d(widths[0], in_channels, 4, 2, 1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> EnergyEmbedding:
        """Energies and codes of a batch.

        Args:
            x: (B, in_channels, H, W), H and W multiples of 2**n_layers.

        Returns:
            `EnergyEmbedding` with energy (B,) (float32 under autocast) and embedding (B, K).

        Raises:
            ValueError: wrong channels, or a size that is not a multiple of 2**n_layers.
        """
        check_image_batch(x, self.in_channels, self.size_multiple)
        code = self.encoder(x)
        reconstruction = self.decoder(code)
        return EnergyEmbedding(reconstruction_energy(reconstruction, x), code.flatten(1))


# --- registered factories ------------------------------------------------------------------------


@register_discriminator(output=ENERGY_EMBEDDING, tiny={"ndf": 8, "n_layers": 2})
def ebgan_autoencoder(
    *, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch"
) -> EnergyAutoEncoder:
    """EBGAN's auto-encoder discriminator; outputs `EnergyEmbedding` (score it with the `ebgan` loss).

    Weights are initialised as pix2pix's networks: N(0, 0.02), norm scales N(1, 0.02), biases 0.

    Args:
        in_channels: channels of the (input, output) pair; the pix2pix method sets it.
        ndf: feature maps of the first convolution (64 in the paper).
        n_layers: stride-2 levels (3 in the paper's 64x64 model).
        norm: "batch", "instance" or "none".

    Example:
        >>> sum(p.numel() for p in ebgan_autoencoder().parameters())
        1324230
    """
    return init_weights(EnergyAutoEncoder(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm))


@register_loss(scores=(ENERGY_EMBEDDING,))
def ebgan(*, margin: float = PAPER_MARGIN_MSE, pt_weight: float = 0.1) -> EBGANLoss:
    """EBGAN's margin loss with the pull-away term on G's side (the paper's EBGAN-PT).

    Args:
        margin: m as a per-pixel mean squared error; the default is the paper's RGB margin
            converted (see the module docstring). It must exceed the energies of real data.
        pt_weight: lambda_PT, 0.1 in the paper; 0 is EBGAN without PT.
    """
    return EBGANLoss(margin=margin, pt_weight=pt_weight)
