"""The key layouts of the reference pix2pix/CycleGAN code (junyanz/pytorch-CycleGAN-and-pix2pix,
`models/networks.py`), and how they map onto translate-kit's networks: a library for
`reference_import` (`tkit convert`), which holds the command.

Nothing about the architecture has to be typed in: it is read from the keys and shapes.

- **Family.** `model.model.*` keys are the recursively nested `UnetGenerator`; `model.N.conv_block.*`
  with a 7x7 first convolution is the `ResnetGenerator`; `model.N` with a 4x4 first convolution is
  the `NLayerDiscriminator` (PatchGAN); `net.N` is the `PixelDiscriminator`.
- **Size.** U-Net depth from how deeply the skip blocks nest (8: unet_256, 7: unet_128), residual
  blocks from the `conv_block` indices, PatchGAN `n_layers` from the number of convolutions,
  ngf/ndf and channels from the first and last convolutions' shapes.
- **Norm.** BatchNorm leaves affine weights and running statistics; the reference's InstanceNorm
  has neither, but its convolutions then carry biases (its `use_bias` rule); "none" has neither
  norm keys nor biases. Stale InstanceNorm statistics that old PyTorch versions saved are dropped,
  as the reference's own loader drops them.
- **Dropout.** Visible in a ResNet block (it shifts the second convolution's index); invisible in
  a U-Net, so it follows the reference's defaults (pix2pix: on, CycleGAN: off) unless asked.

Keys are then renamed onto translate-kit's flat networks (`plugins/unet.py`, `plugins/resnet.py`,
`plugins/patchgan.py`), which compute the same functions; every key must be used and every
parameter filled (strict), or the conversion fails with a `CheckpointError` naming the keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from translate_kit.api import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CYCLEGAN_FILES",
    "PIX2PIX_FILES",
    "DetectedNet",
    "Family",
    "Kind",
    "NormName",
    "check_channels",
    "check_norm",
    "detect",
    "detect_file",
    "dropout_for",
    "find_reference_files",
    "load_reference_state_dict",
    "remap_state_dict",
    "same_architecture",
]

Kind = Literal["generator", "discriminator"]
Family = Literal["unet", "resnet", "nlayer", "pixel"]
NormName = Literal["batch", "instance", "none"]

_DROPOUT = 0.5  # the reference's nn.Dropout(0.5), in U-Net and ResNet blocks alike
_RESNET_FIRST_BLOCK = 10  # pad, conv, norm, relu, then two (conv, norm, relu) down-samplings
_RESNET_TAIL = 7  # after the blocks: two (convT, norm, relu), pad, then the output conv
_STALE_STATS = ("running_mean", "running_var", "num_batches_tracked")
_LAYOUTS = (
    "model.model.0.weight (UnetGenerator), model.1.weight with model.10.conv_block.* (ResnetGenerator), "
    "model.0.weight with a 4x4 kernel (NLayerDiscriminator) or net.0.weight (PixelDiscriminator)"
)
# Reference file names inside a checkpoint folder: <epoch>_net_<name>.pth.
PIX2PIX_FILES = ("G", "D")
CYCLEGAN_FILES = ("G_A", "G_B", "D_A", "D_B")


@dataclass(frozen=True)
class DetectedNet:
    """A reference network as read from its state dict.

    Attributes:
        source: the file it came from (for messages).
        kind: "generator" or "discriminator".
        family: "unet", "resnet" (generators), "nlayer" or "pixel" (discriminators).
        in_channels: channels of the first convolution's input.
        out_channels: channels of the output (1 for a discriminator's logit map).
        width: ngf or ndf (the first convolution's feature maps).
        norm: "batch", "instance" or "none".
        depth: U-Net levels, ResNet blocks or PatchGAN n_layers (0 for the pixel discriminator).
        dropout: whether the weights show dropout (ResNet blocks); None when they cannot (U-Net).

    Example:
        >>> net = DetectedNet(Path("latest_net_G.pth"), "generator", "unet", 3, 3, 64, "batch", 8)
        >>> net.describe()
        'U-Net, 8 levels (unet_256), ngf 64, batch norm, 3 -> 3 channels'
        >>> net.table(dropout=True)
        {'name': 'unet_256', 'ngf': 64, 'norm': 'batch', 'dropout': 0.5}
    """

    source: Path
    kind: Kind
    family: Family
    in_channels: int
    out_channels: int
    width: int
    norm: NormName
    depth: int
    dropout: bool | None = None

    @property
    def reference_name(self) -> str:
        """The reference's `--netG` / `--netD` value (a depth it has no name for is described)."""
        if self.family == "unet":
            return {8: "unet_256", 7: "unet_128"}.get(self.depth, f"UnetGenerator(num_downs={self.depth})")
        if self.family == "resnet":
            return {9: "resnet_9blocks", 6: "resnet_6blocks"}.get(self.depth, f"ResnetGenerator(n_blocks={self.depth})")
        if self.family == "nlayer":
            return "basic" if self.depth == 3 else f"n_layers --n_layers_D {self.depth}"
        return "pixel"

    def table(self, dropout: bool = False) -> dict[str, Any]:
        """The translate-kit recipe table ([generator] or [discriminator]) of this network.

        Channels are left out: they come from [data] (generators) or from the method (discriminators).
        """
        if self.family == "unet":
            name = {8: "unet_256", 7: "unet_128"}.get(self.depth, "unet")
            depth = {} if name != "unet" else {"num_downs": self.depth}
            return {"name": name, **depth, "ngf": self.width, "norm": self.norm,
                    "dropout": _DROPOUT if dropout else 0.0}
        if self.family == "resnet":
            name = {9: "resnet_9blocks", 6: "resnet_6blocks"}.get(self.depth, "resnet")
            depth = {} if name != "resnet" else {"n_blocks": self.depth}
            return {"name": name, **depth, "ngf": self.width, "norm": self.norm,
                    "dropout": _DROPOUT if dropout else 0.0}
        if self.family == "nlayer":
            return {"name": "patchgan", "n_layers": self.depth, "ndf": self.width, "norm": self.norm}
        return {"name": "pixelgan", "ndf": self.width, "norm": self.norm}

    def describe(self) -> str:
        """One line for the command's output, e.g. "U-Net, 8 levels (unet_256), ngf 64, batch norm, 3 -> 3 channels"."""
        if self.family == "unet":
            shape = f"U-Net, {self.depth} levels ({self.reference_name}), ngf {self.width}"
        elif self.family == "resnet":
            shape = f"ResNet, {self.depth} residual blocks ({self.reference_name}), ngf {self.width}"
        elif self.family == "nlayer":
            shape = f"PatchGAN, n_layers {self.depth} ({self.reference_name}), ndf {self.width}"
        else:
            shape = f"PixelGAN (pixel), ndf {self.width}"
        channels = (f"{self.in_channels} -> {self.out_channels} channels" if self.kind == "generator"
                    else f"{self.in_channels} channels in")
        return f"{shape}, {self.norm} norm, {channels}"


# ------------------------------------------------------------------------------------------------
# Reading a reference file


def _few(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def load_reference_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a reference state dict with `torch.load(weights_only=True)`; strip a `module.` prefix.

    Args:
        path: a `*_net_*.pth` file saved by the reference (`torch.save(net.state_dict())`).

    Returns:
        A plain `{key: tensor}` dict, keys without DataParallel's `module.` prefix.

    Raises:
        CheckpointError: the file is missing, unreadable, a translate-kit checkpoint, or not a
            state dict of tensors.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Reference checkpoint {path} does not exist; pass a file such as latest_net_G.pth.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or foreign files
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            # Not torch's own text: it suggests weights_only=False, which would run code from the file.
            raise CheckpointError(
                f"{path} holds pickled Python objects, not only tensors (perhaps a whole network saved with "
                "torch.save(net) instead of torch.save(net.state_dict())); translate-kit loads reference files "
                "with weights_only=True only. Load it where you trust it and re-save net.state_dict()."
            ) from None
        raise CheckpointError(
            f"Cannot read {path} with torch.load ({type(exc).__name__}): the file is corrupt, truncated, or not a "
            "PyTorch file. Expected a reference state dict such as latest_net_G.pth."
        ) from None
    if isinstance(state, Mapping) and state.get("format") == "translate-kit/checkpoint":
        raise CheckpointError(
            f"{path} is already a translate-kit checkpoint, not a reference one; use it directly "
            "(tkit translate / tkit eval), there is nothing to convert."
        )
    if not isinstance(state, Mapping) or not state:
        what = "an empty dict" if isinstance(state, Mapping) else f"a {type(state).__name__}"
        raise CheckpointError(
            f"{path} holds {what}, not a reference state dict; expected a dict of tensors as the reference saves "
            "with torch.save(net.state_dict()) (latest_net_G.pth, latest_net_D.pth, ...)."
        )
    odd = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(
            f"{path} is a dict but not a plain state dict: {_few(odd)} hold no tensor (a training checkpoint "
            "with optimiser state or options?). Expected only parameter and buffer tensors, as the reference "
            "saves with torch.save(net.state_dict())."
        )
    keys = list(state)
    if all(k.startswith("module.") for k in keys):  # saved from a DataParallel wrapper
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def find_reference_files(folder: Path, epoch: str = "latest") -> dict[str, Path]:
    """The reference networks in a checkpoint folder (`checkpoints/NAME`), by reference name.

    Returns `{"G": ..., "D": ...}` for pix2pix or `{"G_A": ..., "G_B": ..., "D_A": ..., "D_B": ...}`
    for CycleGAN, the discriminators only where their files exist.

    Raises:
        CheckpointError: neither `<epoch>_net_G.pth` nor `<epoch>_net_G_A.pth` and `_G_B.pth` exist.
    """
    folder = Path(folder)
    path = {name: folder / f"{epoch}_net_{name}.pth" for name in PIX2PIX_FILES + CYCLEGAN_FILES}
    if path["G"].is_file():
        names: tuple[str, ...] = PIX2PIX_FILES
    elif path["G_A"].is_file() and path["G_B"].is_file():
        names = CYCLEGAN_FILES
    else:
        present = sorted(p.name for p in folder.glob("*_net_*.pth"))
        epochs = sorted({p.split("_net_")[0] for p in present})
        hint = f" It holds {_few(present)}; pick one of the epochs {', '.join(epochs)} with --epoch." if present else ""
        raise CheckpointError(
            f"{folder} holds no reference generator for epoch {epoch!r}: expected {epoch}_net_G.pth (pix2pix) or "
            f"{epoch}_net_G_A.pth and {epoch}_net_G_B.pth (CycleGAN).{hint}"
        )
    return {name: path[name] for name in names if path[name].is_file()}


# ------------------------------------------------------------------------------------------------
# Detecting the architecture


def _tensor(state: Mapping[str, torch.Tensor], key: str, ndim: int, source: Path, what: str) -> torch.Tensor:
    value = state.get(key)
    if value is None or value.ndim != ndim:
        found = "missing" if value is None else f"of shape {tuple(value.shape)}"
        raise CheckpointError(
            f"{source} looks like a reference {what} but its key {key} is {found} (expected a {ndim}-D tensor); "
            f"it is not a checkpoint of the reference's networks.py. Its first keys: {_few(list(state))}."
        )
    return value


def _norm_of(state: Mapping[str, torch.Tensor], bias_probe: str) -> NormName:
    """BatchNorm leaves affine weights beside running statistics; the reference's InstanceNorm has
    no parameters but makes the convolution before it biased (`bias_probe`); "none" leaves neither."""
    for key in state:
        if key.endswith(".running_var") and key[: -len("running_var")] + "weight" in state:
            return "batch"
    return "instance" if bias_probe in state else "none"


def _unet_prefix(level: int) -> str:
    """The reference's Sequential of U-Net level `level` (0 outermost): each level's block sits at
    index 1 of the outermost Sequential and at index 3 of every inner one."""
    return "model.model." + ("1.model." if level >= 1 else "") + "3.model." * max(level - 1, 0)


def _indices(keys: list[str], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.fullmatch(k))})


def detect(state: Mapping[str, torch.Tensor], source: Path) -> DetectedNet:
    """Read the architecture of a reference network from its state dict (see the module docstring).

    Args:
        state: the state dict, without a `module.` prefix (`load_reference_state_dict`).
        source: the file it came from, for messages.

    Raises:
        CheckpointError: the keys fit none of the reference's layouts.
    """
    keys = list(state)
    source = Path(source)
    if "model.model.0.weight" in state:
        what = "UnetGenerator"
        first = _tensor(state, "model.model.0.weight", 4, source, what)
        depth = 2
        # Follow the nesting: a level whose index 3 is a block (not the innermost's up-convolution).
        while f"{_unet_prefix(depth - 1)}3.model.1.weight" in state:
            depth += 1
        innermost = _unet_prefix(depth - 1)
        _tensor(state, f"{innermost}1.weight", 4, source, what)
        _tensor(state, f"{innermost}3.weight", 4, source, what)
        last = _tensor(state, "model.model.3.weight", 4, source, what)  # ConvTranspose: (in, out, k, k)
        return DetectedNet(source, "generator", "unet", int(first.shape[1]), int(last.shape[1]),
                           int(first.shape[0]), _norm_of(state, "model.model.0.bias"), depth)
    if "net.0.weight" in state:
        first = _tensor(state, "net.0.weight", 4, source, "PixelDiscriminator")
        return DetectedNet(source, "discriminator", "pixel", int(first.shape[1]), 1, int(first.shape[0]),
                           _norm_of(state, "net.2.bias"), 0)
    head = state.get("model.0.weight")
    if head is not None and head.ndim == 4 and head.shape[-1] == 4:
        what = "NLayerDiscriminator"
        convs = [i for i in _indices(keys, r"model\.(\d+)\.weight") if state[f"model.{i}.weight"].ndim == 4]
        n_layers = len(convs) - 2
        expected = [0] + [3 * k - 1 for k in range(1, n_layers + 1)] + [3 * n_layers + 2]
        if n_layers < 1 or convs != expected:
            raise CheckpointError(
                f"{source} looks like a reference {what} (model.0.weight is a 4x4 convolution) but its "
                f"convolutions sit at model.{convs} where n_layers={max(n_layers, 1)} puts them at model.{expected}; "
                "it is not a checkpoint of the reference's networks.py."
            )
        return DetectedNet(source, "discriminator", "nlayer", int(head.shape[1]), 1, int(head.shape[0]),
                           _norm_of(state, "model.2.bias"), n_layers)
    first = state.get("model.1.weight")
    if first is not None and first.ndim == 4 and first.shape[-1] == 7:
        what = "ResnetGenerator"
        blocks = _indices(keys, r"model\.(\d+)\.conv_block\..+")
        n_blocks = len(blocks)
        if blocks != list(range(_RESNET_FIRST_BLOCK, _RESNET_FIRST_BLOCK + n_blocks)):
            raise CheckpointError(
                f"{source} looks like a reference {what} but its residual blocks sit at model.{blocks}, not at "
                f"consecutive indices from model.{_RESNET_FIRST_BLOCK}; it is not a checkpoint of the reference's "
                "networks.py."
            )
        dropout: bool | None = None
        if n_blocks:
            block = f"model.{_RESNET_FIRST_BLOCK}.conv_block."
            if f"{block}0.weight" in state:
                raise CheckpointError(
                    f"{source} is a reference {what} built with padding_type 'zero' (its residual blocks start with "
                    "a convolution, not a padding layer); translate-kit's ResNet generator pads by reflection, as "
                    "the reference's define_G always does, so this network cannot be converted exactly."
                )
            # Dropout sits between the two convolutions and shifts the second one from index 5 to 6.
            if f"{block}6.weight" in state and state[f"{block}6.weight"].ndim == 4:
                dropout = True
            elif f"{block}5.weight" in state and state[f"{block}5.weight"].ndim == 4:
                dropout = False
            else:
                raise CheckpointError(
                    f"{source} looks like a reference {what} but its first residual block has no second "
                    f"convolution at {block}5 or {block}6; it is not a checkpoint of the reference's networks.py."
                )
        last = _tensor(state, f"model.{_RESNET_FIRST_BLOCK + n_blocks + _RESNET_TAIL}.weight", 4, source, what)
        return DetectedNet(source, "generator", "resnet", int(first.shape[1]), int(last.shape[0]),
                           int(first.shape[0]), _norm_of(state, "model.1.bias"), n_blocks, dropout)
    raise CheckpointError(
        f"The keys of {source} fit no network of the reference pix2pix/CycleGAN code: expected keys such as "
        f"{_LAYOUTS}; its first keys are {_few(keys)}."
    )


# ------------------------------------------------------------------------------------------------
# Renaming onto translate-kit's networks


def _module_pairs(detected: DetectedNet, net: nn.Module) -> dict[str, str]:
    """translate-kit module name -> the reference module holding the same weights."""
    n = detected.depth
    if detected.family == "unet":
        pairs: dict[str, str] = {}
        for level in range(n):
            ref, up = _unet_prefix(level), f"ups.{n - 1 - level}"
            if level == 0:  # [down conv, block, ReLU, up conv, Tanh]
                pairs.update({"downs.0.conv": f"{ref}0", f"{up}.conv": f"{ref}3"})
            elif level == n - 1:  # [LeakyReLU, down conv, ReLU, up conv, norm]
                pairs.update({f"downs.{level}.conv": f"{ref}1", f"{up}.conv": f"{ref}3", f"{up}.norm": f"{ref}4"})
            else:  # [LeakyReLU, down conv, norm, block, ReLU, up conv, norm (, Dropout)]
                pairs.update({f"downs.{level}.conv": f"{ref}1", f"downs.{level}.norm": f"{ref}2",
                              f"{up}.conv": f"{ref}5", f"{up}.norm": f"{ref}6"})
        return pairs
    if detected.family == "resnet":
        # The same Sequential indices; only the residual block's inner Sequential has another name.
        return {name: name.replace(".body.", ".conv_block.") for name, _ in net.named_modules() if name}
    if detected.family == "nlayer":
        # Reference: conv at 0, then (conv, norm, LeakyReLU) triples from index 2, then the head.
        pairs = {"blocks.0.0": "model.0", "head": f"model.{3 * n + 2}"}
        for k in range(1, n + 1):
            pairs.update({f"blocks.{k}.0": f"model.{3 * k - 1}", f"blocks.{k}.1": f"model.{3 * k}"})
        return pairs
    return {"blocks.0.0": "net.0", "blocks.1.0": "net.2", "blocks.1.1": "net.3", "head": "net.5"}


def remap_state_dict(
    state: Mapping[str, torch.Tensor], net: nn.Module, detected: DetectedNet
) -> dict[str, torch.Tensor]:
    """The reference `state` renamed into a state dict that `net.load_state_dict(strict=True)` takes.

    Two gaps are filled with values that leave the function unchanged: a zero bias where the
    reference's norm "none" builds a convolution without one (its `use_bias` rule tests for
    InstanceNorm only; translate-kit keeps the bias whenever there is no BatchNorm), and a zero
    `num_batches_tracked` for BatchNorm saved by PyTorch < 0.4 (inference never reads it). Stale
    InstanceNorm statistics are dropped.

    Args:
        state: the reference state dict (no `module.` prefix).
        net: the translate-kit network built for `detected` (its keys and shapes are the target).
        detected: what `detect` read from `state`.

    Raises:
        CheckpointError: a key is missing, left over, or of the wrong shape.
    """
    import torch
    from torch import nn

    convs = (nn.Conv2d, nn.ConvTranspose2d)
    pairs = _module_pairs(detected, net)
    modules = dict(net.named_modules())
    instance_norms = {pairs[m] for m, mod in modules.items() if isinstance(mod, nn.InstanceNorm2d) and m in pairs}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    wrong: list[str] = []
    for key, like in net.state_dict().items():
        module, _, param = key.rpartition(".")
        ref = f"{pairs[module]}.{param}" if module in pairs else f"(nothing for {key})"
        if ref in state:
            used.add(ref)
            tensor = state[ref]
            if tensor.shape != like.shape:
                wrong.append(f"{ref} {tuple(tensor.shape)} instead of {tuple(like.shape)}")
            else:
                out[key] = tensor.detach().to(like.dtype).clone()
        elif param == "bias" and detected.norm == "none" and isinstance(modules[module], convs):
            out[key] = torch.zeros_like(like)  # the reference's unbiased convolution: adding 0 is the same
        elif param == "num_batches_tracked":
            out[key] = torch.zeros_like(like)  # BatchNorm of PyTorch < 0.4; only training's momentum=None reads it
        else:
            missing.append(ref)
    stale = {k for k in state if k.rpartition(".")[0] in instance_norms and k.rpartition(".")[2] in _STALE_STATS}
    unexpected = [k for k in state if k not in used and k not in stale]
    if missing or unexpected or wrong:
        problems = [f"{label} {_few(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise CheckpointError(
            f"{detected.source} does not fit the reference layout its keys suggest ({detected.describe()}): "
            f"{'; '.join(problems)}. It was not saved by the reference's networks.py, or by a modified copy of it."
        )
    return out


# ------------------------------------------------------------------------------------------------
# Checks of detected networks against what was asked


def detect_file(path: Path | None, expected: Kind, role: str) -> tuple[dict[str, torch.Tensor], DetectedNet] | None:
    """Read and detect the reference file given for `role`; refuse one of the other kind."""
    if path is None:
        return None
    state = load_reference_state_dict(path)
    detected = detect(state, path)
    if detected.kind != expected:
        option = {"G": "SOURCE", "G_A": "SOURCE", "G_B": "--G-B", "D": "--D", "D_A": "--D", "D_B": "--D-B"}[role]
        raise CheckpointError(
            f"{path} is a reference {detected.kind} ({detected.describe()}), but it was given as {role} ({option}), "
            f"which must be a {expected}. Pass generators as SOURCE / --G-B and discriminators with --D / --D-B."
        )
    return state, detected


def check_norm(detected: DetectedNet, norm: str | None) -> None:
    if norm is not None and detected.norm != norm:
        raise CheckpointError(
            f"--norm {norm} was asked for, but the weights of {detected.source} are those of {detected.norm} norm "
            f"({detected.describe()}). Leave --norm out to use what the weights say."
        )


def check_channels(detected: DetectedNet, channels: int, what: str) -> None:
    if channels not in (1, 3):
        raise CheckpointError(
            f"{detected.source} has {channels} {what} channels ({detected.describe()}); translate-kit's data "
            "pipeline reads gray (1) or RGB (3) images only, so it cannot be converted into a usable checkpoint."
        )


def same_architecture(a: DetectedNet, b: DetectedNet, what: str) -> None:
    fields = ("family", "width", "norm", "depth")
    if any(getattr(a, f) != getattr(b, f) for f in fields) or {a.dropout, b.dropout} == {True, False}:
        raise CheckpointError(
            f"The two {what}s differ: {a.source} is {a.describe()}, {b.source} is {b.describe()}. translate-kit's "
            f"CycleGAN builds both {what}s from one recipe table, as the reference does from one set of options."
        )


def dropout_for(g: DetectedNet, asked: bool | None, method: str, notes: list[str]) -> bool:
    """The generator's dropout: what its weights show, else what was asked, else the reference's
    default for `method` (noted in `notes`)."""
    if g.dropout is not None:  # a ResNet block shows it
        if asked is not None and asked != g.dropout:
            shown = "has" if g.dropout else "has no"
            raise CheckpointError(
                f"--{'' if asked else 'no-'}dropout was asked for, but {g.source} {shown} dropout in its residual "
                "blocks (the second convolution's index shows it). Leave the option out."
            )
        return g.dropout
    if asked is not None:
        return asked
    default = method == "pix2pix"  # pix2pix keeps the base --no_dropout False; cycle_gan sets it True
    if g.family == "unet" and g.depth > 5:
        notes.append(
            f"U-Net dropout is not stored in the weights: using the reference's {method} default "
            f"({'on' if default else 'off'}); pass --{'no-' if default else ''}dropout if the network was trained "
            f"with{'' if default else 'out'} --no_dropout. It matters for --mode paper and for training only."
        )
    return default
