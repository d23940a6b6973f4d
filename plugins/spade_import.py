"""Import NVlabs/SPADE generators with `tkit convert`: the published Cityscapes, ADE20K and COCO-Stuff models.

One component of the kind "weight_format" (the extension point of `reference_import`), ``spade``,
reads a SPADE generator file, ``checkpoints/<name>/latest_net_G.pth`` (a bare state dict, as the
reference's ``util.save_network`` writes it), into the ``spade_generator`` of the ``spade`` plugin.

The module names are the same on both sides (``fc``, ``head_0``, ``G_middle_0``, ``G_middle_1``,
``up_0`` .. ``up_3``, ``up_4`` for "most", ``conv_img``; in each block ``conv_0``, ``conv_1``,
``norm_0`` / ``norm_1`` with ``mlp_shared.0``, ``mlp_gamma``, ``mlp_beta`` and, for batch norm,
``param_free_norm.running_mean`` / ``running_var`` / ``num_batches_tracked``; a learned shortcut's
``conv_s`` and ``norm_s``). Only spectral norm is stored differently: the reference used the
hook-based ``torch.nn.utils.spectral_norm``, translate-kit the parametrisation
(``torch.nn.utils.parametrizations.spectral_norm``):

==========================  ==========================================
reference                   translate-kit
==========================  ==========================================
``<conv>.weight_orig``      ``<conv>.parametrizations.weight.original``
``<conv>.weight_u``         ``<conv>.parametrizations.weight.0._u``
``<conv>.weight_v``         ``<conv>.parametrizations.weight.0._v``
==========================  ==========================================

Files already in the parametrised layout are read as they are. The stored u and v are kept, so in
eval mode (``tkit translate``, like the reference's ``test.py``) the converted network computes
exactly the reference's weights W / (u·W v); in training mode both run one power iteration per
forward (the two implementations order its two half-steps differently, so a trained-on network
drifts from where the reference would be by that iteration's difference).

**What the weights tell**: the label-map channels ``semantic_nc`` and SPADE's hidden width and
kernel (``mlp_shared.0.weight``), ``ngf`` (``head_0.conv_0``: 16·ngf), VAE mode (``fc`` linear:
z_dim from its input; a convolution otherwise), spectral norm (``weight_orig`` keys), the
parameter-free norm (running statistics: batch / sync-batch; none: instance), "most" (``up_4``).

**What they cannot tell**: "normal" from "more" (the extra up-sampling has no parameters), the
training crop and aspect ratio (VAE mode: only their product sh·sw, from ``fc``), and how
semantic_nc splits into classes, a don't-care class and an instance channel. These come, in
order, from the reference's ``opt.txt`` beside the file (written by its ``train.py``; read as text,
``opt.pkl`` is never unpickled), from the published setting with the same semantic_nc (below), or
from the reference's defaults ("normal", 256, 1), and the command's notes say which:

===========  ===========  ==================================  =====================  ===========
model        semantic_nc  = label_nc + don't-care + instance  upsampling             crop, w/h
===========  ===========  ==================================  =====================  ===========
Cityscapes   36           35 + 0 + 1                         more                   512, 2
ADE20K       151          150 + 1 + 0                         normal                 256, 1
COCO-Stuff   184          182 + 1 + 1                         normal                 256, 1
===========  ===========  ==================================  =====================  ===========

**The label maps.** The reference renumbers ids as it reads them: 255 (unknown) goes to the
don't-care channel, the last, in every dataset; its ADE20K dataset then subtracts 1, so the stored
unlabelled 0 goes last and 1..150 become 0..149. Here that channel is one more class (``label_nc``
classes + 1) and the written recipe's ``label_maps`` data renumber the same way: ``label_shift = 1``
for ADE20K (the options file's ``dataset_mode``, or the published setting), ``unknown_id = 255``
for the others with a don't-care class (COCO-Stuff). The weights cannot say how a user's files
are stored: this assumes the reference's own (ADEChallengeData2016's annotations), and the
command's notes say so.

Example:
    >>> from translate_kit_plugins.spade import spade_generator
    >>> state = spade_generator(in_channels=5, ngf=2, spade_hidden=8).state_dict()
    >>> reference = {k.replace("parametrizations.weight.original", "weight_orig")
    ...               .replace("parametrizations.weight.0._u", "weight_u")
    ...               .replace("parametrizations.weight.0._v", "weight_v"): v for k, v in state.items()}
    >>> detected, converted = read_spade_generator(reference, Path("latest_net_G.pth"))
    >>> print(detected.describe())
    SPADE generator, semantic_nc 5, ngf 2, num_upsampling_layers normal, spectral norm, SPADE syncbatch 3x3
    (hidden 8)
    >>> converted.keys() == state.keys()
    True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from translate_kit_plugins.reference_import import ImportedWeights
from translate_kit_plugins.spade import SPADEGenerator, up_samplings

from translate_kit.api import CheckpointError, register

__all__ = [
    "PUBLISHED",
    "DetectedSPADE",
    "PublishedSetting",
    "SPADEFormat",
    "read_reference_options",
    "read_spade_generator",
    "spade",
    "spade_recipe",
]

# The recipe's method and dataset: issue 14's SPADE method and label-map dataset.
_METHOD = "spade"
_DATASET = "label_maps"

# Hook-based spectral norm's suffixes (the reference's files) -> the parametrisation's.
_SPECTRAL_KEYS = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
}
_BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3", "up_4")
_OPTIONS_FILE = "opt.txt"
_OPTION_LINE = re.compile(r"^\s*(\w+): (.*?)\s*(?:\t\[default: .*\])?$")


def _few(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


@dataclass(frozen=True)
class PublishedSetting:
    """The reference's dataset options of a published model.

    Attributes:
        name: the model, in words.
        label_nc: classes.
        dontcare: one more channel for a don't-care class (``--contain_dontcare_label``).
        instance: one more channel for the instance-boundary map (not ``--no_instance``).
        num_upsampling_layers: "normal", "more" or "most".
        crop_size: image width.
        aspect_ratio: width / height.
        dataset_mode: the reference's name of its dataset (``--dataset_mode``), which decides how
            its label maps are renumbered as they are read.
    """

    name: str
    label_nc: int
    dontcare: bool
    instance: bool
    num_upsampling_layers: str
    crop_size: int
    aspect_ratio: float
    dataset_mode: str = ""

    @property
    def semantic_nc(self) -> int:
        return self.label_nc + self.dontcare + self.instance


# The reference's data/cityscapes_dataset.py, ade20k_dataset.py and coco_dataset.py defaults.
PUBLISHED = (
    PublishedSetting("Cityscapes", 35, False, True, "more", 512, 2.0, "cityscapes"),
    PublishedSetting("ADE20K", 150, True, False, "normal", 256, 1.0, "ade20k"),
    PublishedSetting("COCO-Stuff", 182, True, True, "normal", 256, 1.0, "coco"),
)


# --- what was read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectedSPADE:
    """A SPADE generator as read from a weight file (and its options file or published setting).

    Attributes:
        source: the file, for messages.
        semantic_nc: label-map channels.
        ngf: width unit.
        num_upsampling_layers: "normal", "more" or "most".
        use_vae: starts from z (``fc`` linear).
        z_dim: latent size (VAE mode; 256 otherwise, unused).
        norm: SPADE's parameter-free norm, "syncbatch" or "instance".
        spectral: spectral norm on the residual blocks.
        spade_kernel: SPADE's kernel size.
        spade_hidden: SPADE's shared channels.
        out_channels: image channels.
        crop_size: training image width.
        aspect_ratio: training width / height.
        setting: where num_upsampling_layers, crop_size and aspect_ratio came from, in words.
        split: how semantic_nc splits, (label_nc, don't-care, instance), when known.
        dataset_mode: the reference's dataset (options file, or the published setting), "" when unknown.
    """

    source: Path
    semantic_nc: int
    ngf: int
    num_upsampling_layers: str
    use_vae: bool
    z_dim: int
    norm: str
    spectral: bool
    spade_kernel: int
    spade_hidden: int
    out_channels: int
    crop_size: int
    aspect_ratio: float
    setting: str = ""
    split: tuple[int, bool, bool] | None = None
    dataset_mode: str = ""

    def options(self) -> dict[str, Any]:
        """The options of the ``spade_generator`` factory that builds this network."""
        return {
            "in_channels": self.semantic_nc, "out_channels": self.out_channels, "ngf": self.ngf,
            "num_upsampling_layers": self.num_upsampling_layers, "crop_size": self.crop_size,
            "aspect_ratio": self.aspect_ratio, "use_vae": self.use_vae, "z_dim": self.z_dim, "norm": self.norm,
            "spectral": self.spectral, "spade_kernel": self.spade_kernel, "spade_hidden": self.spade_hidden,
        }

    def table(self) -> dict[str, Any]:
        """The [generator] table."""
        return {"name": "spade_generator", **self.options()}

    @property
    def latent_cells(self) -> int:
        """sh·sw, the cells of the starting map at the training crop (what a VAE-mode fc makes per channel)."""
        sw = self.crop_size // 2 ** up_samplings(self.num_upsampling_layers)
        return sw * round(sw / self.aspect_ratio)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the training images: the starting map sh x sw times 2^num_up (the
        reference's "fixed" resize: width crop_size, height crop_size / aspect_ratio)."""
        up = 2 ** up_samplings(self.num_upsampling_layers)
        sw = self.crop_size // up
        return round(sw / self.aspect_ratio) * up, sw * up

    def build(self) -> SPADEGenerator:
        """The translate-kit network for these weights (on the current default device)."""
        options = self.options()
        return SPADEGenerator(options.pop("in_channels"), **options)

    def describe(self) -> str:
        """One line for the command's output."""
        parts = [f"SPADE generator, semantic_nc {self.semantic_nc}", f"ngf {self.ngf}",
                 f"num_upsampling_layers {self.num_upsampling_layers}"]
        if self.use_vae:
            parts.append(f"VAE (z_dim {self.z_dim}, crop {self.crop_size}, aspect ratio {self.aspect_ratio:g})")
        parts.append("spectral norm" if self.spectral else "no spectral norm")
        k = self.spade_kernel
        parts.append(f"SPADE {self.norm} {k}x{k} (hidden {self.spade_hidden})")
        if self.out_channels != 3:
            parts.append(f"{self.out_channels} output channels")
        return ", ".join(parts)


# --- reading -------------------------------------------------------------------------------------


def read_reference_options(path: Path) -> dict[str, str]:
    """The options of a reference ``opt.txt`` (``key: value`` lines, ``[default: ...]`` comments
    dropped), as strings; empty when the file is absent or unreadable.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "opt.txt").write_text(
        ...         "----------------- Options ---------------\\n"
        ...         "             aspect_ratio: 2.0                           \\t[default: 1.0]\\n"
        ...         "    num_upsampling_layers: more                          \\n")
        ...     read_reference_options(Path(tmp) / "opt.txt")
        {'aspect_ratio': '2.0', 'num_upsampling_layers': 'more'}
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _OPTION_LINE.match(line))}


def _plain_state(weights: Mapping[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """`weights` as a state dict of tensors, without DataParallel's `module.` prefix."""
    odd = [str(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd or not weights:
        found = f"entries that hold no tensor: {_few(odd)}" if odd else "no entries"
        raise CheckpointError(
            f"{source} looks like a SPADE generator but has {found}. Expected a state dict of tensors only, as the "
            "reference's util.save_network writes latest_net_G.pth."
        )
    if all(k.startswith("module.") for k in weights):
        return {k[len("module."):]: v for k, v in weights.items()}
    return dict(weights)


def _renamed(key: str) -> str:
    """A reference key in translate-kit's naming (spectral norm's hook keys -> the parametrisation's)."""
    module, _, name = key.rpartition(".")
    return f"{module}.{_SPECTRAL_KEYS[name]}" if module and name in _SPECTRAL_KEYS else key


def _weight(state: Mapping[str, torch.Tensor], module: str, ndim: int, source: Path) -> torch.Tensor:
    """The (possibly spectrally normalised) weight of `module`, of `ndim` dimensions."""
    names = (f"{module}.weight", f"{module}.weight_orig", f"{module}.{_SPECTRAL_KEYS['weight_orig']}")
    value = next((state[name] for name in names if name in state), None)
    if value is None or value.ndim != ndim:
        found = "missing" if value is None else f"of shape {tuple(value.shape)}"
        raise CheckpointError(
            f"{source} looks like a SPADE generator but the weight of {module} is {found} (expected a {ndim}-D "
            f"weight); it does not hold that network whole. Its first keys: {_few(list(state))}."
        )
    return value


def _published(semantic_nc: int) -> PublishedSetting | None:
    return next((p for p in PUBLISHED if p.semantic_nc == semantic_nc), None)


def _flag(options: Mapping[str, str], key: str) -> bool:
    return options.get(key, "False").strip().lower() == "true"


def _setting(
    source: Path, semantic_nc: int, most: bool, vae_cells: int | None, options: Mapping[str, str]
) -> tuple[str, int, float, str, tuple[int, bool, bool] | None, list[str]]:
    """num_upsampling_layers, crop_size, aspect_ratio, where they came from, the semantic_nc split
    and notes, from the options file, the published settings or the defaults."""
    notes: list[str] = []
    if options:
        where = f"{source.parent / _OPTIONS_FILE}"
        try:
            label_nc = int(options.get("label_nc", "182"))
            split = (label_nc, _flag(options, "contain_dontcare_label"), not _flag(options, "no_instance"))
            num_up = options.get("num_upsampling_layers", "normal")
            crop, aspect = int(options.get("crop_size", "512")), float(options.get("aspect_ratio", "1.0"))
        except ValueError as exc:
            raise CheckpointError(f"{where} is not a reference options file SPADE could write: {exc}.") from None
        if sum(split) != semantic_nc:
            raise CheckpointError(
                f"{where} gives label_nc {split[0]}, contain_dontcare_label {split[1]} and no_instance {not split[2]} "
                f"(semantic_nc {sum(split)}), but {source} takes {semantic_nc} label-map channels. Is the options file "
                "from another run?"
            )
        if (num_up == "most") != most:
            raise CheckpointError(
                f"{where} gives num_upsampling_layers {num_up!r}, but {source} "
                f"{'has' if most else 'has no'} block up_4, which 'most' and only 'most' has."
            )
        notes.append(f"num_upsampling_layers {num_up!r}, crop {crop} and aspect ratio {aspect:g} from {where}.")
        return num_up, crop, aspect, f"options of {where}", split, notes
    published = _published(semantic_nc)
    if published is not None and not most:
        split = (published.label_nc, published.dontcare, published.instance)
        notes.append(
            f"num_upsampling_layers {published.num_upsampling_layers!r}, crop {published.crop_size} and aspect ratio "
            f"{published.aspect_ratio:g} are the published {published.name} model's (semantic_nc {semantic_nc}); the "
            f"weights cannot tell 'normal' from 'more'. Put the run's {_OPTIONS_FILE} beside the file to read its own."
        )
        return (published.num_upsampling_layers, published.crop_size, published.aspect_ratio,
                f"the published {published.name} setting", split, notes)
    num_up = "most" if most else "normal"
    crop, aspect = 256, 1.0
    if vae_cells is not None:  # the starting map sh x sw: square, or twice as wide
        side = round(vae_cells**0.5)
        half = round((vae_cells / 2) ** 0.5)
        if side * side == vae_cells:
            crop = side * 2 ** up_samplings(num_up)
        elif 2 * half * half == vae_cells:
            crop, aspect = 2 * half * 2 ** up_samplings(num_up), 2.0
        else:
            raise CheckpointError(
                f"{source} is a VAE-mode SPADE generator whose starting map has {vae_cells} cells (fc's outputs / "
                f"16·ngf), neither square nor twice as wide as high; its crop size and aspect ratio cannot be "
                f"guessed. Put the run's {_OPTIONS_FILE} beside the file."
            )
    notes.append(
        f"num_upsampling_layers {num_up!r}, crop {crop} and aspect ratio {aspect:g} are assumed (no {_OPTIONS_FILE} "
        f"beside the file, and semantic_nc {semantic_nc} is no published model's); the weights cannot tell 'normal' "
        f"from 'more'. Put the run's {_OPTIONS_FILE} beside the file to read its own."
    )
    return num_up, crop, aspect, "assumed", None, notes


def _dataset_mode(semantic_nc: int, most: bool, options: Mapping[str, str]) -> str:
    """The reference's dataset: the options file's ``dataset_mode``, or the published model's (as `_setting`)."""
    if options:
        return options.get("dataset_mode", "").strip()
    published = _published(semantic_nc)
    return published.dataset_mode if published is not None and not most else ""


def _label_numbering(detected: DetectedSPADE) -> tuple[dict[str, int], str | None]:
    """The [data] options that renumber stored index maps as the reference's dataset did, and a note.

    The weights cannot tell how label maps are stored; this assumes the reference's own files:
    ADEChallengeData2016's annotations (0 unlabelled, 1..150), which its ADE20K dataset shifts
    down by one, the unlabelled 0 going to the last channel; and, with a don't-care channel, 255
    for unlabelled pixels, which every other reference dataset sends to that channel.
    """
    label_nc, dontcare, _ = detected.split or (detected.semantic_nc, False, False)
    if detected.dataset_mode == "ade20k":
        return {"label_shift": 1}, (
            "The label maps are taken as ADEChallengeData2016 stores them (0 unlabelled, 1..150): data.label_shift = "
            f"1 turns 1..150 into 0..149 and 0 into {label_nc}, the don't-care channel, as the reference's ADE20K "
            "dataset does. Maps already numbered 0..149 with 150 unlabelled need label_shift removed.")
    if dontcare:
        return {"unknown_id": 255}, (
            f"Stored id 255 (unlabelled) becomes the don't-care channel {label_nc} (data.unknown_id = 255), as the "
            "reference's datasets do.")
    return {}, None


def _detect(
    state: Mapping[str, torch.Tensor], source: Path, options: Mapping[str, str]
) -> tuple[DetectedSPADE, list[str]]:
    """The architecture read from the weights, completed by the options file or a published setting, and notes."""
    mlp = _weight(state, "head_0.norm_0.mlp_shared.0", 4, source)
    spade_hidden, semantic_nc, spade_kernel = int(mlp.shape[0]), int(mlp.shape[1]), int(mlp.shape[-1])
    width = int(_weight(state, "head_0.conv_0", 4, source).shape[0])
    if width % 16:
        raise CheckpointError(
            f"{source} looks like a SPADE generator but head_0.conv_0 gives {width} channels, not a multiple of 16 "
            "(16·ngf)."
        )
    ngf = width // 16
    fc = state.get("fc.weight")
    if fc is None or fc.ndim not in (2, 4):
        found = "missing" if fc is None else f"of shape {tuple(fc.shape)}"
        raise CheckpointError(
            f"{source} looks like a SPADE generator but fc.weight is {found}; expected a linear layer's 2-D weight "
            "(VAE mode) or a 3x3 convolution's 4-D weight (from the label map)."
        )
    use_vae = fc.ndim == 2
    z_dim = int(fc.shape[1]) if use_vae else 256
    vae_cells = int(fc.shape[0]) // width if use_vae and fc.shape[0] % width == 0 else None
    if use_vae and vae_cells is None:
        raise CheckpointError(
            f"{source} is a VAE-mode SPADE generator but fc gives {fc.shape[0]} outputs, not a multiple of 16·ngf = "
            f"{width}."
        )
    most = any(k.startswith("up_4.") for k in state)
    num_up, crop, aspect, setting, split, notes = _setting(source, semantic_nc, most, vae_cells, options)
    if options and _flag(options, "use_vae") != use_vae:
        notes.append(f"The options file says use_vae {_flag(options, 'use_vae')}; the weights say {use_vae} (fc), "
                     "which was taken.")
    detected = DetectedSPADE(
        source=source, semantic_nc=semantic_nc, ngf=ngf, num_upsampling_layers=num_up, use_vae=use_vae, z_dim=z_dim,
        norm="syncbatch" if "head_0.norm_0.param_free_norm.running_mean" in state else "instance",
        spectral=any(k.startswith("head_0.conv_0.") and k.endswith(("weight_orig", "original")) for k in state),
        spade_kernel=spade_kernel, spade_hidden=spade_hidden,
        out_channels=int(_weight(state, "conv_img", 4, source).shape[0]),
        crop_size=crop, aspect_ratio=aspect, setting=setting, split=split,
        dataset_mode=_dataset_mode(semantic_nc, most, options),
    )
    if use_vae and vae_cells != detected.latent_cells:
        raise CheckpointError(
            f"{source} is a VAE-mode SPADE generator whose fc makes a starting map of {vae_cells} cells, but crop "
            f"{crop} and aspect ratio {aspect:g} ({setting}) with num_upsampling_layers {num_up!r} make "
            f"{detected.latent_cells}. Is the options file from another run?"
        )
    return detected, notes


def _remap(state: Mapping[str, torch.Tensor], detected: DetectedSPADE) -> dict[str, torch.Tensor]:
    """The file's weights under translate-kit's keys; every key used, every entry filled, shapes equal."""
    # Built on the CPU, not on the meta device: spectral norm's start-up power iterations are slow
    # there (about a second), the CPU build takes 0.1 s at test sizes and 2 s at the published ones.
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        expected = detected.build().state_dict()
    renamed = {_renamed(k): k for k in state}
    out: dict[str, torch.Tensor] = {}
    missing, wrong = [], []
    for key, like in expected.items():
        ref = renamed.get(key)
        if ref is None:
            if key.endswith("num_batches_tracked"):  # files of torch < 0.4.1 lack it; it changes nothing in eval
                out[key] = torch.zeros((), dtype=like.dtype)
            else:
                missing.append(key)
        elif state[ref].shape != like.shape:
            wrong.append(f"{ref} {tuple(state[ref].shape)} instead of {tuple(like.shape)}")
        else:
            out[key] = state[ref].detach().to(like.dtype).clone()
    unexpected = [ref for key, ref in renamed.items() if key not in expected]
    if missing or unexpected or wrong:
        problems = [f"{label} {_few(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise CheckpointError(
            f"{detected.source} does not fit the network its keys suggest ({detected.describe()}): "
            f"{'; '.join(problems)}. Expected every key of the reference's SPADEGenerator for that network and no "
            "other; the file is cut short or was saved by a modified copy of the code."
        )
    return out


def read_spade_generator(
    weights: Mapping[str, Any], source: Path, options: Mapping[str, str] | None = None
) -> tuple[DetectedSPADE, dict[str, torch.Tensor]]:
    """Read a reference SPADE generator state dict: its architecture and its weights under translate-kit's keys.

    Args:
        weights: the state dict (``torch.load(latest_net_G.pth)``).
        source: the file, for messages and to find ``opt.txt`` beside it.
        options: the reference's options (``read_reference_options``); None reads ``opt.txt``
            beside `source` if there is one.

    Returns:
        What was detected, and a state dict that ``detected.build()`` loads strictly.

    Raises:
        CheckpointError: the file does not hold a whole SPADE generator, or disagrees with its options.
    """
    if options is None:
        options = read_reference_options(Path(source).parent / _OPTIONS_FILE)
    state = _plain_state(weights, Path(source))
    detected, _ = _detect(state, Path(source), options)
    return detected, _remap(state, detected)


def spade_recipe(detected: DetectedSPADE, *, data_root: str, run_name: str) -> dict[str, Any]:
    """The recipe tables of a converted SPADE generator: issue 14's ``spade`` method and label-map data.

    The [generator] table is the network read from the file; [data] takes the training images'
    size, [height, width] where it is not square (Cityscapes: [256, 512]; the generator itself
    takes any multiple of 2^num_up), and renumbers stored ids as the reference's dataset did
    (ADE20K: ``label_shift = 1``; with a don't-care class: ``unknown_id = 255``).
    """
    # The reference's don't-care class has a channel of its own, the last class (id label_nc): here
    # it is one more class, so index maps must give unlabelled pixels that id, as the reference's
    # datasets do after their remapping.
    label_nc, dontcare, instance = detected.split or (detected.semantic_nc, False, False)
    classes = label_nc + int(dontcare)
    method: dict[str, Any] = {"name": _METHOD, "label_nc": classes, "instances": instance, "use_vae": detected.use_vae}
    height, width = detected.image_size
    size: int | list[int] = width if height == width else [height, width]
    numbering, _ = _label_numbering(detected)
    recipe = {
        "run": {"name": run_name, "seed": 0},
        "data": {"dataset": _DATASET, "root": data_root, "load_size": size, "crop_size": size, "flip": False,
                 "layout": "folders", "labels": "index", "label_nc": classes, **numbering, "in_channels": 1,
                 "out_channels": detected.out_channels, **({"instances_dir": "instances"} if instance else {})},
        "method": method,
        "generator": detected.table(),
        # The reference's discriminator, so a converted model can also be trained further.
        "discriminator": {"name": "spade_multiscale"},
    }
    # The reference's encoder (latest_net_E.pth) is not converted, so the recipe has no [encoder]:
    # the model samples z, and refuses style images rather than encode them with random weights.
    return recipe


# --- the format ----------------------------------------------------------------------------------


class SPADEFormat:
    """NVlabs/SPADE generator files (see the module docstring)."""

    summary = ("NVlabs/SPADE generators, latest_net_G.pth of the published Cityscapes, ADE20K and COCO-Stuff models "
               "(keys fc.weight, head_0.conv_0.weight_orig, head_0.norm_0.mlp_shared.0.weight, G_middle_0..., "
               "conv_img.weight)")

    def recognises(self, weights: Mapping[str, Any]) -> bool:
        keys = {k.removeprefix("module.").split(".", 1)[0] for k in weights if isinstance(k, str)}
        return "head_0" in keys and ("G_middle_0" in keys or "conv_img" in keys)

    def convert(self, weights: Mapping[str, Any], *, source: Path, data_root: str, run_name: str) -> ImportedWeights:
        options = read_reference_options(Path(source).parent / _OPTIONS_FILE)
        state = _plain_state(weights, Path(source))
        detected, notes = _detect(state, Path(source), options)
        converted = _remap(state, detected)
        if detected.split is not None:
            label_nc, dontcare, instance = detected.split
            extra = ", a don't-care class" if dontcare else ""
            extra += ", an instance-boundary channel" if instance else ""
            notes.append(f"The label map: {label_nc} classes{extra} (semantic_nc {detected.semantic_nc}).")
        numbering_note = _label_numbering(detected)[1]
        if numbering_note is not None:
            notes.append(numbering_note)
        if detected.use_vae:
            notes.append("VAE mode: the generator draws z from N(0, I) unless given one; the reference's image encoder "
                         "(latest_net_E.pth) is not converted.")
        notes.append("Spectral norm's stored u and v are kept: in eval mode the network computes the reference's "
                     "weights exactly.")
        recipe = spade_recipe(detected, data_root=data_root, run_name=run_name)
        return ImportedWeights(recipe, {"G": converted}, {"G": detected.describe()}, tuple(notes))


@register("weight_format")
def spade() -> SPADEFormat:
    """NVlabs/SPADE generator files (latest_net_G.pth: Cityscapes, ADE20K, COCO-Stuff; VAE mode too)."""
    return SPADEFormat()
