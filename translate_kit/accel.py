"""Device-specific speed-ups, swapped in at run time so that model code stays the paper's.

Everything here computes the same function as the plain PyTorch layers it stands in for (equal to
float rounding) and keeps parameters and state-dict keys unchanged, so checkpoints, `tkit convert`
and exports are unaffected:

- `accelerate(module, device)`: on the CPU, every 4x4, stride-2, padding-1 `nn.ConvTranspose2d`
  (the U-Net's decoder) becomes a `MatmulConvTranspose2d`, which runs small maps as one matrix
  product and, compiled for inference, thin image layers as `transposed_conv_by_phases`. Training
  (`Trainer`) and inference (`Translator`) call it; on other devices it does nothing.
- `eval_copy(method)`: a copy for eval-mode inference with batch norm folded into the
  convolutions (`fold_batchnorm`).
- `compiled_nets(method)`: the translate networks through `torch.compile` with inductor's freezing.

Why each pays, measured, is in docs/benchmarks.md.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from translate_kit.method import Method

__all__ = [
    "MatmulConvTranspose2d",
    "accelerate",
    "compiled_nets",
    "eval_copy",
    "fold_batchnorm",
    "transposed_conv_by_phases",
]


def accelerate(module: nn.Module, device: torch.device) -> int:
    """Swap in this module's faster equivalents of standard layers for `device`, in place; return
    how many layers were swapped.

    On the CPU, 4x4 stride-2 padding-1 transposed convolutions (groups 1, zero padding) become
    `MatmulConvTranspose2d` (a subclass: same parameters, same state dict); elsewhere nothing
    changes.

    Example:
        >>> net = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
        >>> accelerate(net, torch.device("cpu")), type(net[0]).__name__
        (1, 'MatmulConvTranspose2d')
    """
    if device.type != "cpu":
        return 0
    swapped = 0
    for layer in module.modules():
        if (
            type(layer) is nn.ConvTranspose2d
            and layer.kernel_size == (4, 4)
            and layer.stride == (2, 2)
            and layer.padding == (1, 1)
            and layer.groups == 1
            and layer.padding_mode == "zeros"
        ):
            layer.__class__ = MatmulConvTranspose2d
            swapped += 1
    return swapped


def eval_copy(method: Method) -> Method:
    """A copy of `method` for eval-mode inference: its translate networks in eval mode with batch
    norm folded into the convolutions (`fold_batchnorm`); the other networks (discriminators)
    are shared, not copied. Translating with it equals eval-mode `method.translate` to float
    rounding, with a pass over each feature map fewer per norm."""
    shared = {id(net): net for name, net in method.nets.items() if name not in method.translate_nets}
    with torch.inference_mode(False):  # real parameters, even when called under inference_mode
        clone = copy.deepcopy(method, memo=shared)
        for name in method.translate_nets:
            fold_batchnorm(clone.nets[name].eval())
    return clone


def compiled_nets(method: Method) -> Method:
    """A shallow copy of `method` whose translate networks run through `torch.compile` with
    inductor's freezing (for inference only: weights become constants of the compiled code).

    The compiled wrappers hold the very modules of `method`, so `test_time` on `method` still
    switches their modes (paper mode's dropout and batch statistics); the caller must make a new
    one when the weights change.
    """
    clone = copy.copy(method)
    clone._modules = dict(method._modules)  # the copy's own module table: `nets` is replaced below
    clone.nets = nn.ModuleDict(
        {name: _FrozenCompiled(net) if name in method.translate_nets else net for name, net in method.nets.items()}
    )
    return clone


class _FrozenCompiled(nn.Module):
    """`torch.compile(net)` whose compilations (the first call, and each new input size) run with
    inductor's `freezing` on. The setting must be in inductor's config while compiling: passed as
    `torch.compile(options=...)` it is not applied (docs/benchmarks.md: slower than eager)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(net)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from torch._inductor import config

        with config.patch(freezing=True):
            return self.compiled(*args, **kwargs)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the convolution just before it, in place; return how many.

    Inside any `nn.Sequential`, a `Conv2d` or `ConvTranspose2d` directly followed by a BatchNorm2d
    with running statistics becomes one convolution with scaled weights and a shifted bias, and the
    norm becomes an `nn.Identity`. In eval mode the result is the same function (to float rounding)
    with one pass over each feature map fewer. Only for inference: the folded network no longer
    has the norm's parameters or statistics, so it cannot train and its state dict differs.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> x = torch.randn(1, 3, 8, 8)
        >>> before = net(x)
        >>> fold_batchnorm(net), type(net[1]).__name__
        (1, 'Identity')
        >>> torch.allclose(before, net(x), atol=1e-6)
        True
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for child in module.children():
        folded += fold_batchnorm(child)
    if not isinstance(module, nn.Sequential):
        return folded
    names = list(module._modules)
    for first, second in zip(names, names[1:]):
        conv, norm = module._modules[first], module._modules[second]
        if (
            isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
            and type(norm) is nn.BatchNorm2d
            and norm.track_running_stats
            and norm.running_mean is not None
            and not (conv.training or norm.training)
            and not (isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1)  # torch cannot fuse these
        ):
            transpose = isinstance(conv, nn.ConvTranspose2d)
            module._modules[first] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
            module._modules[second] = nn.Identity()
            folded += 1
    return folded


# Output pixel 2m + a of a stride-2, 4-tap, padding-1 transposed convolution receives kernel tap k
# from input pixel m + d: for a = 0, (k, d) = (1, 0) and (3, -1); for a = 1, (2, 0) and (0, +1).
_PHASE_TAPS = (((1, 0), (3, -1)), ((2, 0), (0, 1)))


def transposed_conv_by_phases(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv_transpose2d(x, weight, bias, stride=2, padding=1)` for a 4x4 kernel, as one matrix
    product and a sum of shifted slices per output phase.

    Every input pixel times the weight matrix gives its 4x4 output patch, `(C_out, 4, 4, H, W)`;
    each of the four output phases (even/odd row, even/odd column) is then the sum of four of these
    taps, shifted by at most one pixel. Under `torch.compile` the product is one GEMM and the sums
    fuse into a single pass that also interleaves the phases, which beats oneDNN's transposed
    convolution for few output channels (the U-Net's 128 -> 3 image layer: docs/benchmarks.md).
    The product is written as a 1x1 convolution, which takes NCHW input as it is (a matrix product
    would make inductor copy the input transposed first).

    Example:
        >>> x, w, b = torch.randn(2, 5, 3, 4), torch.randn(5, 3, 4, 4), torch.randn(3)
        >>> expected = F.conv_transpose2d(x, w, b, stride=2, padding=1)
        >>> torch.allclose(transposed_conv_by_phases(x, w, b), expected, atol=1e-5)
        True
    """
    batch, channels, height, width = x.shape
    out_channels = weight.shape[1]
    taps = F.conv2d(x, weight.permute(1, 2, 3, 0).reshape(out_channels * 16, channels, 1, 1))
    taps = F.pad(taps.view(batch, out_channels, 4, 4, height, width), (1, 1, 1, 1))  # zeros beyond the border
    rows = []
    for row_taps in _PHASE_TAPS:
        phases = []
        for col_taps in _PHASE_TAPS:
            parts = [taps[:, :, ky, kx, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
                     for ky, dy in row_taps for kx, dx in col_taps]
            phases.append(parts[0] + parts[1] + parts[2] + parts[3])
        rows.append(torch.stack(phases, dim=-1))  # (B, C, H, W, column phase)
    y = torch.stack(rows, dim=3).reshape(batch, out_channels, 2 * height, 2 * width)
    return y if bias is None else y + bias.view(1, -1, 1, 1).to(y.dtype)


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` that runs as a matrix product on the CPU where oneDNN's kernel is slow.

    A transposed convolution is `fold(W^T x)`: every input pixel times the weight matrix gives the
    kernel-sized patch it adds to the output. Two cases gain from computing it so:

    - Small maps, eager: at a U-Net's inner levels (8x8 .. 1x1 maps of 512-1024 channels) the work
      is dominated by the weight, not by pixels, and oneDNN's transposed convolution spends most
      of its time re-laying the weight out on every call; from 16x16 maps, or 256 pixels over the
      whole batch, oneDNN is as fast or faster.
    - Few output channels, compiled inference: for stride 2, a 4x4 kernel and padding 1 with at
      most `max_thin_outputs` rows in `W^T` (the U-Net's 128 -> 3 image layer has 48), inductor's
      fusion of `transposed_conv_by_phases` beats oneDNN's pre-packed kernel. Not for training:
      its backward is slower.

    The crossovers below were measured on a 2-core x86 CPU (docs/benchmarks.md, "What made
    translate-kit faster").

    Everything else (larger maps, other devices, grouped layers, training under compile,
    `torch.export`) takes the ordinary path. The parameters, the state dict and the function are
    those of `nn.ConvTranspose2d` (the sums run in another order: equal to float rounding).
    """

    # Crossovers: pixels per map, and over the whole batch; rows of W^T for the phase path.
    max_map_pixels = 64
    max_pixels = 256
    max_thin_outputs = 64

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.ndim != 4
            or output_size is not None
            or self.groups != 1
            or self.padding_mode != "zeros"
        ):
            return super().forward(x, output_size)
        if torch.compiler.is_compiling():  # torch.compile and torch.export see plain operators
            if (
                not torch.compiler.is_exporting()
                and not torch.is_grad_enabled()
                and self.out_channels * self.kernel_size[0] * self.kernel_size[1] <= self.max_thin_outputs
                and self.kernel_size == (4, 4)
                and self.stride == (2, 2)
                and self.padding == (1, 1)
                and self.dilation == (1, 1)
                and self.output_padding == (0, 0)
            ):
                return transposed_conv_by_phases(x, self.weight, self.bias)
            return super().forward(x, output_size)
        batch, channels, height, width = x.shape
        if height * width > self.max_map_pixels or batch * height * width > self.max_pixels:
            return super().forward(x, output_size)
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        (oph, opw) = self.output_padding
        out_h = (height - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        out_w = (width - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        # (C_out k k, C_in) @ (B, C_in, H W): each input pixel's output patch, then summed into place.
        patches = self.weight.reshape(channels, -1).t() @ x.reshape(batch, channels, height * width)
        y = F.fold(patches, (out_h, out_w), self.kernel_size, dilation=self.dilation, padding=self.padding,
                   stride=self.stride)
        # The bias in the output's dtype: under bf16 autocast the product is bf16, as the library's
        # transposed convolution returns it, and a float32 bias must not promote it.
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1).to(y.dtype)
