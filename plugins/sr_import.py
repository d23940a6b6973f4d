"""Import official super-resolution weights with `tkit convert`: ESRGAN's and BasicSR / Real-ESRGAN's files.

Two components of the kind "weight_format" (the extension point of `reference_import`, which
holds the command), each reading one family of files:

- ``esrgan``: xinntao/ESRGAN's RRDBNet files (``RRDB_ESRGAN_x4.pth``, ``RRDB_PSNR_x4.pth``), in
  the original layout of its ``architecture.py`` and in the renamed layout of its later
  ``RRDBNet_arch.py`` (the same network):

  ==========================  ====================================  ==========================
  translate-kit (BasicSR)     original (``architecture.py``)        renamed (``RRDBNet_arch``)
  ==========================  ====================================  ==========================
  ``conv_first``              ``model.0``                           ``conv_first``
  ``body.N.rdbK.convJ``       ``model.1.sub.N.RDBK.convJ.0``        ``RRDB_trunk.N.RDBK.convJ``
  ``conv_body``               ``model.1.sub.<n_blocks>``            ``trunk_conv``
  ``conv_up1``, ``conv_up2``  ``model.3``, ``model.6``              ``upconv1``, ``upconv2``
  ``conv_hr``, ``conv_last``  ``model.8``, ``model.10``             ``HRconv``, ``conv_last``
  ==========================  ====================================  ==========================

  The original layout nests the RRDBs and the trunk convolution in a shortcut block
  (``model.1.sub``); each up-sampling stage is (nearest x2, conv, LeakyReLU) at three
  consecutive indices, so its convolutions sit at 3 and 6 for x4. Files with another number of
  stages (x2, x8) do not fit translate-kit's RRDBNet, which up-samples x4.
- ``basicsr``: BasicSR's and Real-ESRGAN's files, whose keys are translate-kit's own: the weights
  at the top level or under ``params_ema`` / ``params`` (the moving average is preferred, and the
  command says which was taken), of

  - ``RRDBNet`` (ESRGAN x4, ``RealESRGAN_x4plus``, ``RealESRNet_x4plus``; ``RealESRGAN_x2plus`` and
    x1 models pixel-unshuffle their input, so the scale is read from conv_first's input channels:
    out_channels x4, 4 x out_channels x2, 16 x out_channels x1), or
  - ``MSRResNet`` (``body.N.conv1``, ``upconv1``, ...; x4 has ``upconv2``, x2 and x3 have one
    up-convolution of 4·nf or 9·nf channels).

Everything else (features, blocks, growth, channels) is read from the shapes; a file that claims a
layout but does not fit it (a block cut short, a key left over, a shape that disagrees) is a
`CheckpointError` naming the file, the layout, what was found and what is expected.

**Value range.** The official networks were trained on RGB images in [0, 1]; translate-kit's are
in [-1, 1]. The change of range cannot be folded into the weights exactly (the first convolution
zero-pads its input, and zero is black in one range and grey in the other), so the converted
recipe sets the generator's ``pixel_range = "0..1"``: the network maps its input to [0, 1] and its
output back, and the weights are stored as published.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from translate_kit_plugins.reference_import import ImportedWeights
from translate_kit_plugins.sr_networks import MSRResNet, RRDBNet

from translate_kit.api import CheckpointError, register

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BasicSRFormat",
    "DetectedSR",
    "ESRGANFormat",
    "basicsr",
    "esrgan",
]

Network = Literal["rrdbnet", "msrresnet"]

# BasicSR saves the moving average and the trained weights under these keys; the first one found is taken.
_PARAM_KEYS = ("params_ema", "params")
_DATA_CHANNELS = (1, 3)  # translate-kit's data pipeline reads grey or RGB images
_CROP_SIZE = 128  # high-resolution training patches of the written recipe (ESRGAN's, BasicSR's RRDBNet and MSRResNet)
_DEFAULT_GROWTH = 32
_UNSHUFFLE_SCALE = {1: 4, 2: 2, 4: 1}  # Real-ESRGAN's pixel-unshuffle factor -> the network's scale
_RDB_KEY = re.compile(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)")


def _few(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# --- what was read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectedSR:
    """A super-resolution network as read from a weight file.

    Attributes:
        source: the file, for messages.
        layout: the key layout, in words ("ESRGAN's original layout (architecture.py)").
        network: "rrdbnet" or "msrresnet".
        in_channels, out_channels: image channels.
        nf: feature maps.
        n_blocks: RRDBs or residual blocks.
        growth: growth channels of the dense blocks (RRDBNet; 0 for MSRResNet).
        scale: the upscaling factor.
        taken: the BasicSR entry the weights came from ("params_ema", "params"), or "" (top level).

    Example:
        >>> net = DetectedSR(Path("x.pth"), "BasicSR", "rrdbnet", 3, 3, 64, 23, 32, 2, "params_ema")
        >>> print(net.describe())
        RRDBNet x2 (input pixel-unshuffled by 2), nf 64, 23 blocks, growth 32, 3 -> 3 channels
        (BasicSR, params_ema)
        >>> net.table()
        {'name': 'rrdbnet', 'nf': 64, 'n_blocks': 23, 'growth': 32, 'scale': 2, 'pixel_range': '0..1'}
    """

    source: Path
    layout: str
    network: Network
    in_channels: int
    out_channels: int
    nf: int
    n_blocks: int
    growth: int
    scale: int
    taken: str = ""

    def table(self) -> dict[str, Any]:
        """The [generator] table (channels come from [data])."""
        if self.network == "rrdbnet":
            return {"name": "rrdbnet", "nf": self.nf, "n_blocks": self.n_blocks, "growth": self.growth,
                    "scale": self.scale, "pixel_range": "0..1"}
        return {"name": "msrresnet", "nf": self.nf, "n_blocks": self.n_blocks, "scale": self.scale,
                "pixel_range": "0..1"}

    def build(self) -> nn.Module:
        """The translate-kit network for these weights (on the current default device)."""
        options = {"in_channels": self.in_channels, "out_channels": self.out_channels, "nf": self.nf,
                   "n_blocks": self.n_blocks, "scale": self.scale, "pixel_range": "0..1"}
        if self.network == "rrdbnet":
            return RRDBNet(growth=self.growth, **options)
        return MSRResNet(**options)

    def describe(self) -> str:
        """One line for the command's output."""
        if self.network == "rrdbnet":
            unshuffle = 4 // self.scale
            how = f" (input pixel-unshuffled by {unshuffle})" if unshuffle > 1 else ""
            shape = f"RRDBNet x{self.scale}{how}, nf {self.nf}, {self.n_blocks} blocks, growth {self.growth}"
        else:
            shape = f"MSRResNet x{self.scale}, nf {self.nf}, {self.n_blocks} blocks"
        where = f"{self.layout}, {self.taken}" if self.taken else self.layout
        return f"{shape}, {self.in_channels} -> {self.out_channels} channels ({where})"


# --- key layouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How a file names translate-kit's (BasicSR's) keys.

    Attributes:
        name: in words, for messages.
        network: the network it holds.
        block: matches a file key of residual block N (group 1).
        key: (translate-kit key, n_blocks) -> the file's key.
        unshuffled: the input may be pixel-unshuffled (Real-ESRGAN): the scale follows from conv_first.
    """

    name: str
    network: Network
    block: re.Pattern[str]
    key: Callable[[str, int], str]
    unshuffled: bool = False


def _renamed(key: str, rdb: str, modules: Mapping[str, str]) -> str:
    """`key` with an RRDB key put into the template `rdb` ({n}, {k}, {j}, {p}) and a top-level
    module renamed by `modules`."""
    if m := _RDB_KEY.fullmatch(key):
        n, k, j, p = m.groups()
        return rdb.format(n=n, k=k, j=j, p=p)
    module, _, param = key.rpartition(".")
    return f"{modules.get(module, module)}.{param}"


def _esrgan_original_key(key: str, n_blocks: int) -> str:
    return _renamed(key, "model.1.sub.{n}.RDB{k}.conv{j}.0.{p}", {
        "conv_first": "model.0", "conv_body": f"model.1.sub.{n_blocks}", "conv_up1": "model.3",
        "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10",
    })


def _esrgan_renamed_key(key: str, n_blocks: int) -> str:
    return _renamed(key, "RRDB_trunk.{n}.RDB{k}.conv{j}.{p}", {
        "conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv",
    })


def _same_key(key: str, n_blocks: int) -> str:
    return key


_ESRGAN_ORIGINAL = _Layout("ESRGAN's original layout (architecture.py)", "rrdbnet",
                           re.compile(r"model\.1\.sub\.(\d+)\.RDB\d\..+"), _esrgan_original_key)
_ESRGAN_RENAMED = _Layout("ESRGAN's RRDBNet_arch.py layout", "rrdbnet", re.compile(r"RRDB_trunk\.(\d+)\..+"),
                          _esrgan_renamed_key)
_BASICSR_RRDBNET = _Layout("BasicSR / Real-ESRGAN RRDBNet layout", "rrdbnet", re.compile(r"body\.(\d+)\..+"),
                           _same_key, unshuffled=True)
_BASICSR_MSRRESNET = _Layout("BasicSR MSRResNet layout", "msrresnet", re.compile(r"body\.(\d+)\..+"), _same_key)


# --- reading a layout ----------------------------------------------------------------------------


def _plain_state(weights: Mapping[str, Any], source: Path, what: str) -> dict[str, torch.Tensor]:
    """`weights` as a state dict of tensors without DataParallel's `module.` prefix."""
    odd = [str(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd or not weights:
        found = f"entries that hold no tensor: {_few(odd)}" if odd else "no entries"
        raise CheckpointError(
            f"{source} looks like {what} but its weights have {found}. Expected a state dict of tensors only, as "
            "torch.save(net.state_dict()) writes it."
        )
    if all(k.startswith("module.") for k in weights):
        return {k[len("module."):]: v for k, v in weights.items()}
    return dict(weights)


def _tensor(state: Mapping[str, torch.Tensor], key: str, layout: _Layout, source: Path) -> torch.Tensor:
    value = state.get(key)
    if value is None or value.ndim != 4:
        found = "missing" if value is None else f"of shape {tuple(value.shape)}"
        raise CheckpointError(
            f"{source} looks like {layout.name} but its key {key} is {found} (expected a convolution's 4-D weight); "
            f"it does not hold that network whole. Its first keys: {_few(list(state))}."
        )
    return value


def _n_blocks(state: Mapping[str, torch.Tensor], layout: _Layout, source: Path) -> int:
    blocks = sorted({int(m.group(1)) for k in state if (m := layout.block.fullmatch(k))})
    if not blocks or blocks != list(range(len(blocks))):
        found = f"at indices {_few([str(b) for b in blocks], 8)}" if blocks else "none"
        raise CheckpointError(
            f"{source} looks like {layout.name} but its residual blocks are {found}; expected consecutive blocks "
            "from 0. The file is cut short or was saved by a modified copy of the code."
        )
    return len(blocks)


def _check_channels(channels: int, what: str, source: Path, layout: _Layout) -> None:
    if channels not in _DATA_CHANNELS:
        raise CheckpointError(
            f"{source} ({layout.name}) has {channels} {what} channels; translate-kit's data pipeline reads grey (1) "
            "or RGB (3) images only, so it cannot be converted into a usable checkpoint."
        )


def _check_original_stages(state: Mapping[str, torch.Tensor], source: Path) -> None:
    """The original layout's up-sampling stages: convolutions at 3 + 3k, then HR convolutions at
    2 + 3n and 4 + 3n for n stages; translate-kit's RRDBNet has two (x4)."""
    tops = [int(m.group(1)) for k in state if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
    last = max(tops, default=0)
    if last != 10 and last >= 4 and (last - 4) % 3 == 0:  # a whole network, with another number of stages
        stages = (last - 4) // 3
        raise CheckpointError(
            f"{source} is an ESRGAN RRDBNet in the original layout with {stages} up-sampling stage(s) (x{2 ** stages}: "
            f"its last convolution is model.{last}); translate-kit's RRDBNet up-samples x4 (two stages, last "
            "convolution model.10) and makes x2 and x1 by pixel-unshuffling the input, as Real-ESRGAN, so this file "
            "cannot be converted exactly."
        )


def _read_rrdbnet(state: Mapping[str, torch.Tensor], layout: _Layout, source: Path, taken: str) -> DetectedSR:
    n = _n_blocks(state, layout, source)
    first = _tensor(state, layout.key("conv_first.weight", n), layout, source)
    last = _tensor(state, layout.key("conv_last.weight", n), layout, source)
    growth = int(_tensor(state, layout.key("body.0.rdb1.conv1.weight", n), layout, source).shape[0])
    nf, c_first, c_out = int(first.shape[0]), int(first.shape[1]), int(last.shape[0])
    scale, c_in = 4, c_first
    if layout.unshuffled:  # Real-ESRGAN: conv_first sees out_channels * r^2 channels, r = 4 // scale
        factors = [r for r in _UNSHUFFLE_SCALE if c_first == c_out * r * r]
        if not factors:
            raise CheckpointError(
                f"{source} looks like {layout.name} but conv_first takes {c_first} input channels while conv_last "
                f"gives {c_out}: expected {c_out} (x4), {4 * c_out} (x2, input pixel-unshuffled by 2) or "
                f"{16 * c_out} (x1, by 4), as Real-ESRGAN's RRDBNet builds it."
            )
        scale, c_in = _UNSHUFFLE_SCALE[factors[0]], c_out
    _check_channels(c_in, "input", source, layout)
    _check_channels(c_out, "output", source, layout)
    return DetectedSR(source, layout.name, "rrdbnet", c_in, c_out, nf, n, growth, scale, taken)


def _read_msrresnet(state: Mapping[str, torch.Tensor], layout: _Layout, source: Path, taken: str) -> DetectedSR:
    n = _n_blocks(state, layout, source)
    first = _tensor(state, "conv_first.weight", layout, source)
    last = _tensor(state, "conv_last.weight", layout, source)
    up = _tensor(state, "upconv1.weight", layout, source)
    nf, c_in, c_out = int(first.shape[0]), int(first.shape[1]), int(last.shape[0])
    if "upconv2.weight" in state:
        scale = 4
    elif up.shape[0] in (4 * nf, 9 * nf):
        scale = 2 if up.shape[0] == 4 * nf else 3
    else:
        raise CheckpointError(
            f"{source} looks like {layout.name} but upconv1 gives {up.shape[0]} channels and there is no upconv2: "
            f"expected {4 * nf} (x2) or {9 * nf} (x3) for nf {nf}, or upconv2 as well (x4)."
        )
    if c_in != c_out:
        raise CheckpointError(
            f"{source} ({layout.name}) maps {c_in} -> {c_out} channels; MSRResNet adds its upsampled input to its "
            "output, so it needs as many channels out as in."
        )
    _check_channels(c_in, "image", source, layout)
    return DetectedSR(source, layout.name, "msrresnet", c_in, c_out, nf, n, 0, scale, taken)


def _remap(state: Mapping[str, torch.Tensor], layout: _Layout, detected: DetectedSR) -> dict[str, torch.Tensor]:
    """The file's weights under translate-kit's keys; every key used, every parameter filled, shapes equal."""
    with torch.device("meta"):  # the keys and shapes only, nothing allocated
        expected = detected.build().state_dict()
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    wrong: list[str] = []
    for key, like in expected.items():
        ref = layout.key(key, detected.n_blocks)
        tensor = state.get(ref)
        if tensor is None:
            missing.append(ref)
        elif tensor.shape != like.shape:
            wrong.append(f"{ref} {tuple(tensor.shape)} instead of {tuple(like.shape)}")
        else:
            out[key] = tensor.detach().to(like.dtype).clone()
    used = {layout.key(key, detected.n_blocks) for key in expected}
    unexpected = [k for k in state if k not in used]
    if missing or unexpected or wrong:
        problems = [f"{label} {_few(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise CheckpointError(
            f"{detected.source} does not fit the network its keys suggest ({detected.describe()}): "
            f"{'; '.join(problems)}. Expected every key of {layout.name} for that network and no other; the file is "
            "cut short or was saved by a modified copy of the code."
        )
    return out


def _imported(detected: DetectedSR, state: dict[str, torch.Tensor], *, data_root: str, run_name: str,
              notes: tuple[str, ...] = ()) -> ImportedWeights:
    recipe = {
        "run": {"name": run_name, "seed": 0},
        "data": {"dataset": "sr_images", "root": data_root, "scale": detected.scale, "load_size": 0,
                 "crop_size": _CROP_SIZE // detected.scale * detected.scale,  # x3: 126
                 "flip": True, "in_channels": detected.in_channels, "out_channels": detected.out_channels},
        "method": {"name": "sr_psnr", "pixel_loss": "l1"},
        "generator": detected.table(),
    }
    notes = (*notes, "Method sr_psnr (L1 loss): ready for tkit translate and tkit eval; to train on, set data.split "
             "(and sr_gan for an adversarial stage) in the recipe.")
    return ImportedWeights(recipe, {"G": state}, {"G": detected.describe()}, notes)


# --- the formats ---------------------------------------------------------------------------------


class ESRGANFormat:
    """xinntao/ESRGAN's RRDBNet files, original or renamed layout (see the module docstring)."""

    summary = ("ESRGAN's RRDBNet files, RRDB_ESRGAN_x4.pth and RRDB_PSNR_x4.pth (keys model.0.weight, "
               "model.1.sub.N.RDB1.conv1.0.weight, ..., or conv_first, RRDB_trunk.N.RDB1.conv1, trunk_conv, ...)")

    def recognises(self, weights: Mapping[str, Any]) -> bool:
        return any(isinstance(k, str) and k.removeprefix("module.").startswith(("model.1.sub.", "RRDB_trunk."))
                   for k in weights)

    def convert(self, weights: Mapping[str, Any], *, source: Path, data_root: str, run_name: str) -> ImportedWeights:
        state = _plain_state(weights, source, "an ESRGAN RRDBNet file")
        layout = _ESRGAN_RENAMED if any(k.startswith("RRDB_trunk.") for k in state) else _ESRGAN_ORIGINAL
        if layout is _ESRGAN_ORIGINAL:
            _check_original_stages(state, source)
        detected = _read_rrdbnet(state, layout, source, "")
        return _imported(detected, _remap(state, layout, detected), data_root=data_root, run_name=run_name)


class BasicSRFormat:
    """BasicSR's and Real-ESRGAN's RRDBNet and MSRResNet files (see the module docstring)."""

    summary = ("BasicSR / Real-ESRGAN files such as RealESRGAN_x4plus.pth and RealESRGAN_x2plus.pth (RRDBNet or "
               "MSRResNet weights, keys conv_first.weight, body.N..., at the top level or under params_ema / params)")

    def recognises(self, weights: Mapping[str, Any]) -> bool:
        if any(isinstance(weights.get(k), Mapping) for k in _PARAM_KEYS):
            return True
        keys = [k.removeprefix("module.") for k in weights if isinstance(k, str)]
        return "conv_first.weight" in keys and not any(k.startswith("RRDB_trunk.") for k in keys)

    def convert(self, weights: Mapping[str, Any], *, source: Path, data_root: str, run_name: str) -> ImportedWeights:
        taken = next((k for k in _PARAM_KEYS if k in weights), "")
        notes: tuple[str, ...] = ()
        if taken:
            inner = weights[taken]
            if not isinstance(inner, Mapping):
                raise CheckpointError(
                    f"{source} is a BasicSR file but its {taken!r} entry holds a {type(inner).__name__}, not a state "
                    "dict; expected {'params_ema': {key: tensor}} or {'params': {key: tensor}} as BasicSR saves it."
                )
            others = [k for k in _PARAM_KEYS if k in weights and k != taken]
            if others:
                notes = (f"Took the weights under {taken!r} (BasicSR's moving average); the file's "
                         f"{', '.join(repr(o) for o in others)} weights are not used.",)
            weights = inner
        state = _plain_state(weights, source, "a BasicSR / Real-ESRGAN file")
        if any(k.startswith("body.") and ".rdb1." in k for k in state):
            layout = _BASICSR_RRDBNET
            detected = _read_rrdbnet(state, layout, source, taken)
        elif "upconv1.weight" in state:
            layout = _BASICSR_MSRRESNET
            detected = _read_msrresnet(state, layout, source, taken)
        else:
            raise CheckpointError(
                f"{source} looks like a BasicSR / Real-ESRGAN file{f' ({taken})' if taken else ''} but holds neither "
                "RRDBNet (keys body.N.rdb1.conv1.weight, conv_up1, ...) nor MSRResNet (body.N.conv1.weight, upconv1, "
                f"...), the networks tkit convert reads; its first keys are {_few(list(state))}."
            )
        return _imported(detected, _remap(state, layout, detected), data_root=data_root, run_name=run_name,
                         notes=notes)


# --- registered components -----------------------------------------------------------------------


@register("weight_format")
def esrgan() -> ESRGANFormat:
    """xinntao/ESRGAN's RRDBNet files (original architecture.py layout and RRDBNet_arch.py layout)."""
    return ESRGANFormat()


@register("weight_format")
def basicsr() -> BasicSRFormat:
    """BasicSR's and Real-ESRGAN's RRDBNet and MSRResNet files (params_ema, params or top level)."""
    return BasicSRFormat()
