"""The method contract: how a training method (pix2pix, CycleGAN, ...) meets the core.

A method owns its networks and losses, prepares its batches and does one optimisation step on a
batch. The core owns everything around it: the device, precision, optimisers and their
schedules, checkpoints, logging, distribution, inference and export. So that any family fits
without the core knowing which it is, a method declares:

- **its networks**, in `self.nets` (an `nn.ModuleDict`), each with a **role** in `self.roles`:
  `"translate"` (what `translate` runs: inference, export, EMA and sample pages use these),
  `"adversary"` (discriminators, trained only) or `"auxiliary"` (trained helpers that inference
  does not need, such as a flow network used only by a loss);
- **its optimisers**: `optimizer_groups()` names the networks each one updates, and
  `optimizer_defaults()` may give a group its own optimiser, learning rate, betas or weight decay
  (SPADE's two time-scale rates); a recipe's `[train.optimizers.<group>]` table overrides both;
- **its batches**: `prepare_batch(batch, spec)` turns what the data loader gives (uint8 images
  of the recipe's dataset, or anything else the dataset yields: a clip, a domain label) into the
  tensors `training_step` takes, on the device. The default is pix2pix's paired jitter. After it,
  `batch["A"]` is the input of `translate` and `batch["B"]` its target: sample pages and
  benchmarks rely on these two keys;
- **its starting weights**: `warm_start()` loads them when a run starts fresh (another run's);
- **its evaluation**: `eval_protocol()` says whether `tkit eval` resizes images first and how it
  scores them (RGB or luma, a shaved border);
- **its geometry**: `geometry()` says how `translate` maps sizes (the output scale, 4 for a
  ×4 super-resolution model; the sizes the input may have), from the networks' own declarations
  (`SizeConstrained`, `Upscaling`) unless the method overrides it;
- **one step**: `training_step(batch, ctx)` runs its forward passes under `ctx.autocast()` and
  calls `ctx.update(group, loss)` once per optimiser group; the context does the precision-aware
  backward, skips non-finite losses, steps the optimiser and zeroes gradients, so no method
  touches AMP or DDP; it returns the scalars to log (detached tensors);
- **inference**: `translate(x)`; extra inference modes go through declared sub-protocols
  (`PixelClassifier` for a segmenter, `StyleConditioned` for a style image, `Configurable` for
  named inference options), never through methods the core guesses at; `load_run_files(run_dir)`
  reads what a plugin command stored beside the checkpoints (pix2pixHD's feature clusters);
- **its inputs, for people**: `input_spec(default)` says what a tool that offers the model
  (`tkit serve`) should ask for: an image or a label map to paint with a palette, the modes, a
  seed and several samples for a multimodal model, a style image, named options of `translate`
  (`InferenceOption`, offered as `tkit translate --option NAME=VALUE`). The core derives the default
  from the recipe and the geometry (`describe_inputs`); a method returns it, or a
  `dataclasses.replace` of it.

The rule for networks: the core may replace entries of `self.nets` by wrappers (DDP, torch.compile,
SyncBatchNorm, an exponential moving average for sample pages and inference) between calls, so a
method reads its networks through `self.nets[...]` at call time and keeps no other reference.

A method factory receives a `Parts` as its positional-only first argument and builds its
components from the recipe's tables through it:

    @register_method(tables={"generator": "generator", "discriminator": "discriminator"})
    def pix2pix(parts: Parts, /, *, lambda_l1: float = 100.0) -> Pix2Pix:
        return Pix2Pix(parts.generator(), parts.discriminator(in_channels=6), lambda_l1=lambda_l1)
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from translate_kit.errors import PluginError
from translate_kit.recipe import OptimizerSettings, size_hw

if TYPE_CHECKING:
    from translate_kit.eval.labels import Palette

__all__ = [
    "BatchSpec",
    "Configurable",
    "EvalProtocol",
    "Geometry",
    "InferenceOption",
    "InputSpec",
    "Method",
    "OptimizerSettings",
    "Parts",
    "PixelClassifier",
    "Role",
    "SizeConstrained",
    "StepContext",
    "StyleConditioned",
    "Upscaling",
    "describe_inputs",
    "frozen",
    "net_geometry",
    "private_rng",
    "test_time",
]

Role = Literal["translate", "adversary", "auxiliary"]
ROLES: tuple[str, ...] = ("translate", "adversary", "auxiliary")


@dataclass(frozen=True, slots=True)
class Geometry:
    """How a translation maps sizes.

    Attributes:
        scale: output height and width are `scale` times the input's (1 for pix2pix, 4 for a
            ×4 super-resolution model).
        size_multiple: input height and width must be multiples of this.
        min_size: and at least this.

    Example:
        >>> Geometry(scale=2, size_multiple=8, min_size=16).padded(20)
        24
    """

    scale: int = 1
    size_multiple: int = 1
    min_size: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1 or self.size_multiple < 1 or self.min_size < 0:
            raise ValueError(f"Expected scale >= 1, size_multiple >= 1 and min_size >= 0, got {self}")

    def padded(self, length: int) -> int:
        """The smallest input length the translation takes that is at least `length`."""
        m = self.size_multiple
        return -(-max(length, self.min_size) // m) * m

    def fits(self, length: int) -> bool:
        return length >= self.min_size and length % self.size_multiple == 0


@runtime_checkable
class SizeConstrained(Protocol):
    """A network that takes only some input sizes (a U-Net: multiples of 2^levels)."""

    size_multiple: int  # input height and width must be multiples of this
    min_size: int  # and at least this


@runtime_checkable
class Upscaling(Protocol):
    """A network whose output is larger than its input (super-resolution)."""

    scale: int  # output height and width = scale x the input's


def net_geometry(net: nn.Module) -> Geometry:
    """What a network declares through `SizeConstrained` and `Upscaling` (nothing: `Geometry()`)."""
    sized = isinstance(net, SizeConstrained)
    return Geometry(
        scale=int(net.scale) if isinstance(net, Upscaling) else 1,
        size_multiple=int(net.size_multiple) if sized else 1,
        min_size=int(net.min_size) if sized else 0,
    )


@dataclass(frozen=True, slots=True)
class EvalProtocol:
    """How `tkit eval` presents a method's images and scores them (`Method.eval_protocol`).

    Attributes:
        resize: True: every image is resized to `data.crop_size` first, pix2pix's test-time
            preprocessing; False: images keep their stored size and are evaluated one at a time
            (`prepare_batch` then gets `spec.crop_size = None`), the super-resolution convention.
        color: per-pixel metrics on every channel ("rgb") or on the luma ("y", ITU-R BT.601 as
            MATLAB's `rgb2ycbcr`).
        shave: pixels cut from every border before scoring (super-resolution: the scale).
    """

    resize: bool = True
    color: Literal["rgb", "y"] = "rgb"
    shave: int = 0


OptionValue = int | float | str | bool
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True, slots=True)
class InferenceOption:
    """A named option of a method's `translate`, declared in `InputSpec.options`: what a tool
    offers (`tkit translate --option NAME=VALUE`, `--list-options`) and hands to
    `Configurable.with_options` once it is parsed and checked here.

    Attributes:
        help: one line: what the option does, and what happens without it.
        type: the value's type: int, float, str or bool.
        default: the value used when the option is not given, for listings; None: the method's
            own behaviour, which `help` describes.
        choices: for a str option, the values it takes (empty: any; the method checks it).

    Example:
        >>> cluster = InferenceOption("the feature cluster of every instance", type=int)
        >>> cluster.parse("3", name="feature_cluster")
        3
        >>> cluster.parse("three", name="feature_cluster")
        Traceback (most recent call last):
        ...
        ValueError: feature_cluster=three: expected an int, got 'three'
    """

    help: str
    type: type[int] | type[float] | type[str] | type[bool] = str
    default: OptionValue | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in (int, float, str, bool):
            raise ValueError(f"Expected type int, float, str or bool, got {self.type!r}")
        if self.choices and self.type is not str:
            raise ValueError(f"Expected choices only for a str option, got choices for {self.type.__name__}")
        if self.default is not None:
            self.parse(self.default, name="default")  # a default the option itself would refuse is a bug

    def parse(self, value: OptionValue, *, name: str) -> OptionValue:
        """`value` as the option's type: a string (`"3"`, `"true"`) is converted, a value of the
        type is checked (an int is a float too); `name` is for the message.

        Raises:
            ValueError: a value of another type, or a str outside `choices`; the message names the
                option, the value and what it takes.
        """
        kind = self.type.__name__
        if isinstance(value, str) and self.type is not str:
            text = value.strip()
            try:
                if self.type is bool:
                    if text.lower() not in _TRUE + _FALSE:
                        raise ValueError
                    return text.lower() in _TRUE
                return self.type(text)
            except ValueError:
                article = "an" if kind == "int" else "a"
                raise ValueError(f"{name}={value}: expected {article} {kind}, got {value!r}") from None
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ValueError(f"{name}={value!r}: expected {kind}, got {type(value).__name__}")
        if self.choices and value not in self.choices:
            raise ValueError(f"{name}={value}: expected one of {', '.join(self.choices)}")
        return value

    def describe(self) -> str:
        """`int, default 3: help` / `one of a, b: help`, for listings."""
        kind = f"one of {', '.join(self.choices)}" if self.choices else self.type.__name__
        default = "" if self.default is None else f", default {self.default}"
        return f"{kind}{default}: {self.help}"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a model takes at inference, for tools that offer it to people (`Method.input_spec`).

    Attributes:
        kind: "image" (any picture, uploaded) or "label_map" (a colour map of `palette`'s classes,
            which a person can paint).
        channels: channels of the input images (`data.in_channels`); gray and RGB convert.
        palette: the classes and colours of a label map; None for images.
        modes: the test-time modes that differ for this model, the default first: "eval"
            (deterministic), and "paper" where a translate network has dropout or batch norm.
        multimodal: `translate` draws random numbers (a latent code) for each image, so one input
            has many outputs: a tool offers a seed and several samples.
        style_image: the output can follow a style image (the method is `StyleConditioned`).
        scale: outputs are `scale` times the input's height and width.
        options: named options of `translate` (the method is `Configurable`), by name: a Python
            identifier each, so `NAME=VALUE` is unambiguous.

    Example:
        >>> InputSpec(modes=("paper", "eval"), scale=4).default_mode
        'paper'
    """

    kind: Literal["image", "label_map"] = "image"
    channels: int = 3
    palette: Palette | None = None
    modes: tuple[Literal["paper", "eval"], ...] = ("eval",)
    multimodal: bool = False
    style_image: bool = False
    scale: int = 1
    options: Mapping[str, InferenceOption] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "label_map"):
            raise ValueError(f"Expected kind 'image' or 'label_map', got {self.kind!r}")
        if (self.kind == "label_map") != (self.palette is not None):
            raise ValueError(f"Expected a palette exactly when kind is 'label_map', got kind {self.kind!r} "
                             f"and palette {self.palette!r}")
        if self.kind == "label_map" and self.channels != 3:
            raise ValueError(f"Expected 3 channels for a colour label map, got {self.channels}")
        if not self.modes or len(set(self.modes)) != len(self.modes) or not set(self.modes) <= {"paper", "eval"}:
            raise ValueError(f"Expected modes from 'paper' and 'eval', each once, got {self.modes!r}")
        if self.channels < 1 or self.scale < 1:
            raise ValueError(f"Expected channels >= 1 and scale >= 1, got {self.channels} and {self.scale}")
        for name, option in self.options.items():
            if not (isinstance(name, str) and name.isidentifier()) or not isinstance(option, InferenceOption):
                raise ValueError(f"Expected options as identifier -> InferenceOption, got {name!r}: {option!r}")

    @property
    def default_mode(self) -> Literal["paper", "eval"]:
        """The mode a tool starts in: the first of `modes`."""
        return self.modes[0]


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """How the core wants a batch prepared (see `Method.prepare_batch`).

    Attributes:
        device: where the prepared tensors go.
        crop_size: the crops, as the recipe's `data.crop_size` gives them: a square's side, or
            (height, width); None: whole images (evaluation at stored sizes, see
            `EvalProtocol.resize`). Read it as `crop_hw`, which is always (height, width).
        flip: random horizontal flips allowed (`data.flip`).
        channels_last: image tensors in channels-last memory format (the networks' format).
        train: True for a training step (random crop and flip); False for samples, evaluation and
            benchmarks of inference (a deterministic centre crop, no flip).

    Example:
        >>> BatchSpec(torch.device("cpu"), crop_size=(256, 512)).crop_hw
        (256, 512)
        >>> BatchSpec(torch.device("cpu"), crop_size=32).crop_hw
        (32, 32)
    """

    device: torch.device
    crop_size: int | tuple[int, int] | None
    flip: bool = True
    channels_last: bool = False
    train: bool = True

    def __post_init__(self) -> None:
        if self.crop_size is not None:
            try:
                height, width = size_hw(self.crop_size)
            except TypeError:
                raise ValueError(f"Expected crop_size None, an int or (height, width), got {self.crop_size}") from None
            if min(height, width) < 1:
                raise ValueError(f"Expected a positive crop_size, got {self.crop_size!r}")
            if not isinstance(self.crop_size, int):  # a list from TOML: a tuple, hashable and comparable
                object.__setattr__(self, "crop_size", (height, width))

    @property
    def crop_hw(self) -> tuple[int, int] | None:
        """The crop as (height, width); None: whole images."""
        return None if self.crop_size is None else size_hw(self.crop_size)


class StepContext(Protocol):
    """What the core hands to `Method.training_step`."""

    step: int  # optimisation steps done before this one
    epoch: int  # 0-based

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed precision for forward passes where the recipe asks for it; a no-op otherwise."""

    def update(self, group: str, loss: torch.Tensor) -> bool | torch.Tensor:
        """Backward `loss`, step optimiser `group`, zero its gradients; whether the update was applied
        (False: skipped, non-finite). With the device-side check (`train.nonfinite_check`) that is a
        0-dim bool tensor on the device, whose truth value waits for the step to finish."""


class Method(nn.Module):
    """Base class of training methods; see the module docstring for the contract."""

    nets: nn.ModuleDict
    # Role of every network in `nets`; set as a class attribute or in __init__.
    roles: Mapping[str, Role] = {}
    # How the sample pages run `translate`: "paper" (pix2pix's test time: dropout on, batch
    # statistics) or "eval" (deterministic; right for a segmenter).
    sample_mode: Literal["paper", "eval"] = "paper"
    # True promises that `training_step` does the same device work at every step: the same kernels
    # on tensors of the same shapes, no branch on `ctx.step`/`ctx.epoch` or on host random numbers,
    # no host read of a device value (`.item()`, `bool(tensor)`, `torch.unique`). Such a step can be
    # captured once as a CUDA graph and replayed (train/graphs.py, `train.cuda_graphs`).
    static_step: bool = False

    @property
    def translate_nets(self) -> tuple[str, ...]:
        """The networks `translate` runs, in `nets` order: what inference needs and export writes."""
        return tuple(name for name in self.nets if self.roles.get(name) == "translate")

    def optimizer_groups(self) -> dict[str, list[str]]:
        """Optimiser name -> the networks in `self.nets` it updates, in update order."""
        raise NotImplementedError

    def optimizer_defaults(self) -> dict[str, OptimizerSettings]:
        """Per group, settings that differ from the recipe's `train.lr`/`train.betas` (none here)."""
        return {}

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """Turn a loader batch into `training_step`'s input on `spec.device`.

        The default is pix2pix's: images `A` (input) and `B` (target), uint8 `(B, C, H, W)`, go
        to the device in [-1, 1], then get the same random crop and flip (`spec.train`) or the
        same centre crop. Other keys pass through unchanged.
        """
        from translate_kit.data.jitter import PairedJitter

        jitter = self.__dict__.get("_paired_jitter")
        if jitter is None or (jitter.crop_size, jitter.flip_enabled) != (spec.crop_size, spec.flip):
            jitter = self.__dict__["_paired_jitter"] = PairedJitter(spec.crop_size, spec.flip)
        return jitter.prepare(batch, spec)

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimisation step on a prepared batch; returns the scalars to log."""
        raise NotImplementedError

    def shared_copy(self, **attributes: Any) -> Method:
        """A copy of this method that shares its networks, with `attributes` set on the copy alone:
        what `with_style` and `with_options` return.

        The copy has its own tables of modules, buffers and parameters holding the same objects,
        so the networks (and training them) are shared, while an attribute set here, a plain value
        or a tensor that replaces a buffer, changes the copy only.

        Example:
            >>> class Toy(Method):
            ...     def __init__(self) -> None:
            ...         super().__init__()
            ...         self.nets, self.choice = nn.ModuleDict({"net": nn.Identity()}), 0
            >>> toy = Toy()
            >>> chosen = toy.shared_copy(choice=2)
            >>> chosen.choice, toy.choice, chosen.nets["net"] is toy.nets["net"]
            (2, 0, True)
        """
        clone = copy.copy(self)
        clone._modules, clone._buffers = dict(self._modules), dict(self._buffers)
        clone._parameters = dict(self._parameters)
        for name, value in attributes.items():
            setattr(clone, name, value)
        return clone

    def after_update(self, group: str) -> None:
        """Called by `ctx.update(group, loss)` right after that group's optimiser step, for a
        projection of the group's parameters that must follow every step: WGAN's and DualGAN's
        weight clipping, a re-normalisation. It is called after a skipped update too (a
        non-finite loss or gradient), so it must be safe to repeat on unchanged weights. Code
        written after `ctx.update` in `training_step` would run at the same point today, but not
        if the trainer ever defers or fuses the optimiser step; this is where the contract puts it.
        Nothing by default.
        """

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """Translate inputs `(B, C_in, H, W)` in [-1, 1] to outputs `(B, C_out, s H, s W)` in [-1, 1]
        (`s` the geometry's scale). The default runs the one network whose role is "translate"."""
        names = self.translate_nets
        if len(names) != 1:
            raise NotImplementedError(
                f"{type(self).__name__} has {len(names)} translate networks ({', '.join(names) or 'none'}); "
                "override translate() to say how they combine."
            )
        return self.nets[names[0]](x)

    def eval_protocol(self) -> EvalProtocol:
        """How `tkit eval` presents and scores this method's images (default: pix2pix's)."""
        return EvalProtocol()

    def geometry(self) -> Geometry:
        """Sizes `translate` takes and gives: combined from its networks' declarations (the
        least common multiple of their size multiples, the largest minimum and scale). Override
        it when networks are chained so that their sizes compose differently."""
        parts = [net_geometry(unwrap(self.nets[name])) for name in self.translate_nets]
        multiple = math.lcm(*(g.size_multiple for g in parts)) if parts else 1
        return Geometry(
            scale=max((g.scale for g in parts), default=1),
            size_multiple=multiple,
            min_size=max((g.min_size for g in parts), default=0),
        )

    def input_spec(self, default: InputSpec) -> InputSpec:
        """What `translate` takes, for tools that offer the model to people (`tkit serve`).

        `default` is what the core derives from the recipe and `geometry()` (`describe_inputs`):
        a label map when `data.palette` names one, else an image; the modes that differ; the
        scale. Return it, or `dataclasses.replace(default, multimodal=True)` to declare more.
        """
        return default

    def extra_state(self) -> dict[str, Any]:
        """State beyond the networks that a checkpoint must keep (e.g. an image pool); tensors
        and plain containers only (checkpoints load with `weights_only=True`)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `extra_state` returned."""

    def load_run_files(self, run_dir: Path) -> None:
        """Read what the method's plugin stored in a run folder after training (a file beside
        `checkpoints/`, such as pix2pixHD's feature clusters), when it is there.

        Inference calls it after loading the weights, with the checkpoint's run folder (`RUN`
        for `RUN/checkpoints/step_*.pt`, the file's own folder otherwise). The core reads no file
        a plugin writes; the method does, here. Default: nothing.
        """

    def warm_start(self) -> None:
        """Load starting weights, once, when a run starts fresh (default: nothing).

        The trainer calls it after building the networks and before it makes the optimisers and
        the moving averages; never on a resume, never for inference. A method that continues from
        another run (a GAN stage from its PSNR-oriented stage) reads that run here, not in its
        factory: inference rebuilds the method from the checkpoint's recipe and its own weights,
        so a checkpoint stays usable when the run it started from is gone.
        """


@runtime_checkable
class PixelClassifier(Protocol):
    """A method that labels pixels: what `tkit eval --segmenter` needs for the FCN-score."""

    palette: Palette  # the class names and colours

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices `(B, H, W)` of images `(B, C, H, W)` in [-1, 1]."""

    def decode_labels(self, label_images: torch.Tensor) -> torch.Tensor:
        """Class indices `(B, H, W)` (255: no label) of uint8 label images `(B, C, H, W)`."""


@runtime_checkable
class StyleConditioned(Protocol):
    """A method whose output can follow a style image (example-guided translation); it says so
    with `input_spec` (`style_image=True`)."""

    def with_style(self, style: torch.Tensor) -> Method:
        """A method that shares these networks and whose `translate` follows `style`, one image
        `(1, C_out, H, W)` in [-1, 1] of any size, on the networks' device."""


@runtime_checkable
class Configurable(Protocol):
    """A method whose `translate` takes named options; it declares them with `input_spec`
    (`InputSpec.options`), and tools (`tkit translate --option NAME=VALUE`) bind them here."""

    def with_options(self, **values: Any) -> Method:
        """A method that shares these networks and whose `translate` uses `values`: the options
        a caller gave, by name, each already parsed to its declared type (an option not given
        keeps its default). Raise `ValueError` for a value that cannot work (a cluster that does
        not exist), saying what would."""


class Parts(Protocol):
    """Builds components from the recipe's tables for a method factory."""

    def generator(self, **fixed: Any) -> nn.Module:
        """A new generator from the recipe's [generator] table. Its `in_channels` and
        `out_channels` default to the data's; `fixed` options are the method's requirements (the
        recipe may repeat them only with the same value)."""

    def discriminator(self, **fixed: Any) -> nn.Module:
        """A new discriminator from the recipe's [discriminator] table."""

    def segmenter(self, **fixed: Any) -> nn.Module:
        """A new segmenter from the recipe's [segmenter] table (`in_channels` from the data)."""

    def component(self, table: str, **fixed: Any) -> Any:
        """A new component from the recipe table `table`, of the kind the method's registration
        declares for it (`tables={...}`): an encoder, a flow network, a second discriminator."""

    def has(self, table: str) -> bool:
        """Whether the recipe holds the table: for components a method builds only when asked (a
        discriminator for a GAN stage, a degradation pipeline)."""

    def loss(self, name: str, **options: Any) -> nn.Module:
        """A loss component by registry name."""

    @property
    def in_channels(self) -> int:
        """Channels of the method's input images (after `data.direction`)."""

    @property
    def out_channels(self) -> int:
        """Channels of the target images."""

    @property
    def palette(self) -> Palette | None:
        """The registered palette `data.palette` names (the classes and colours of label-map
        inputs), or None when the recipe names none."""


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DDP wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or getattr(net, "module", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def describe_inputs(method: Method, *, channels: int, palette: Palette | None = None) -> InputSpec:
    """The method's `InputSpec`: the default from the recipe's data and the geometry, then the
    method's own say (`Method.input_spec`).

    Args:
        method: the method, built (its networks decide the modes).
        channels: the input channels (`data.in_channels`).
        palette: the palette `data.palette` names, resolved; None for image inputs.

    Raises:
        PluginError: `input_spec` returned something else than an `InputSpec`, or declared a style
            image for a method that is not `StyleConditioned`, or options for one that is not
            `Configurable`.
    """
    nets = [unwrap(method.nets[name]) for name in method.translate_nets]
    varies = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)  # what "paper" mode changes
    modes: tuple[Literal["paper", "eval"], ...] = ("eval",)
    if any(isinstance(m, varies) for net in nets for m in net.modules()):
        modes = ("paper", "eval") if method.sample_mode == "paper" else ("eval", "paper")
    default = InputSpec(kind="image" if palette is None else "label_map", channels=channels, palette=palette,
                        modes=modes, scale=method.geometry().scale)
    spec = method.input_spec(default)
    name = type(method).__name__
    # A plugin's mistake, said as one: a tool offering the model (`tkit serve`) stops with this line.
    if not isinstance(spec, InputSpec):
        raise PluginError(f"{name}.input_spec() must return an InputSpec, got {type(spec).__name__}; fix the "
                          "plugin that registers this method.")
    if spec.style_image and not isinstance(method, StyleConditioned):
        raise PluginError(f"{name}.input_spec() declares a style image, but {name} has no with_style(style); fix "
                          "the plugin that registers this method.")
    if spec.options and not isinstance(method, Configurable):
        raise PluginError(f"{name}.input_spec() declares options ({', '.join(spec.options)}), but {name} has no "
                          "with_options(**values); fix the plugin that registers this method.")
    return spec


def private_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A block whose random draws leave the caller's random streams as they were: the CPU's, and
    `device`'s when it is a CUDA device (samples, validation, seeded translations must not move
    the training's streams, or resumes would not be exact)."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


@contextlib.contextmanager
def frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Turn off gradients of `modules`' parameters inside the block (a GAN's D during the G step),
    restoring each parameter's previous flag afterwards."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextlib.contextmanager
def test_time(module: nn.Module, mode: Literal["paper", "eval"] = "eval") -> Iterator[None]:
    """Put `module` in a test-time mode inside the block, restoring every submodule's mode after.

    Args:
        module: a network or a whole method.
        mode: "eval" is deterministic (dropout off, batch norm with its running statistics);
            "paper" is pix2pix's test time: dropout on and batch norm with the test batch's own
            statistics. The running statistics are left untouched in both modes.
    """
    modes = [(m, m.training) for m in module.modules()]
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [m.track_running_stats for m in norms]
    if mode == "eval":
        module.eval()
    elif mode == "paper":
        module.train()
        for m in norms:  # batch statistics, and no update of the running ones
            m.track_running_stats = False
    else:
        raise ValueError(f"Expected mode 'paper' or 'eval', got {mode!r}")
    try:
        yield
    finally:
        for m, flag in zip(norms, tracking):
            m.track_running_stats = flag
        for m, training in modes:
            m.training = training


# --- video: translation that carries state from frame to frame ---------------------------------------


@runtime_checkable
class SequenceTranslator(Protocol):
    """A method whose translation of a video carries state from frame to frame (vid2vid: each output
    is made from the previous outputs). Methods without it translate every frame on its own
    (`translate_sequence` below), so any method translates a video."""

    def translate_sequence(
        self, frames: Iterable[torch.Tensor], *, first_output: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        """Outputs `(B, C_out, H, W)` in [-1, 1], one per input frame `(B, C_in, H, W)` in [-1, 1], in
        order, each yielded before the next frame is read (a video of any length streams through).

        `first_output` is the output of frame 0, given (the reference's "given first frame"); the
        method continues from it. None: frame 0's output is generated too."""


def translate_sequence(
    method: Method, frames: Iterable[torch.Tensor], *, first_output: torch.Tensor | None = None
) -> Iterator[torch.Tensor]:
    """Translate a video frame by frame: through the method's own recurrence when it is a
    `SequenceTranslator`, else each frame alone with `translate` (pix2pix on a video).

    Args:
        method: any method, in the caller's test-time state.
        frames: input frames `(B, C_in, H, W)` in [-1, 1].
        first_output: frame 0's output, given; a method without recurrence returns it as frame 0's
            output and translates the others alone.

    Example:
        >>> class Negate(Method):
        ...     def translate(self, x):
        ...         return -x
        >>> [float(y) for y in translate_sequence(Negate(), [torch.ones(1, 1, 1, 1)] * 2)]
        [-1.0, -1.0]
    """
    if isinstance(method, SequenceTranslator):
        yield from method.translate_sequence(frames, first_output=first_output)
        return
    for i, x in enumerate(frames):
        yield first_output if i == 0 and first_output is not None else method.translate(x)


__all__ += ["SequenceTranslator", "translate_sequence"]
