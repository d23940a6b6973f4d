"""Inference: translate images of any size with a trained checkpoint.

A checkpoint carries its resolved recipe, so `Translator.from_checkpoint` rebuilds exactly the
networks that were trained (no flag has to match the training run) and loads their weights (the
moving averages, when the run kept them). The translator takes images of any height and width and
returns outputs of that size times the method's scale (`Method.geometry`; 1 for pix2pix):

- inputs are converted to the channels the model was trained on (gray <-> RGB);
- each image is padded by reflection, centred (half the padding on each side, the odd pixel on
  the right/bottom), up to the method's `size_multiple` (a U-Net with 8 levels needs multiples
  of 256), and the output is cropped back (by scale times the padding). Where an image is smaller than its padding, which
  reflection cannot fill, the border pixels are replicated instead;
- very large images can be translated in tiles (`tile`, `overlap`), so memory stays bounded; an
  image that would not fit the device's memory at once is tiled automatically (`auto_tile`). In
  each overlap one tile fades out as the next fades in (a raised cosine over the middle half of
  the overlap; a tile's outer quarter counts not at all), so no seam shows. The result equals the
  untiled one only for a network whose receptive field reaches less than a quarter of the
  overlap; a U-Net sees nearly the whole tile, so its tiled output is close to, not equal to, the
  untiled one (see `Translator`);
- `mode="eval"` is deterministic (dropout off, batch norm with its running statistics);
  `mode="paper"` is pix2pix's test time (dropout on, batch norm with the image's own statistics),
  seeded per image with `seed` so that a run can be repeated;
- a multimodal method (`InputSpec.multimodal`: its `translate` draws a latent code) gives many
  outputs per input: `translate_samples` draws sample `i` of every image with `seed + i`, in a
  private random state; `bind` gives a translator whose method follows a style image
  (`StyleConditioned`) or uses named options (`Configurable`, `InputSpec.options`).

Example:
    >>> from translate_kit.inference import Translator, translate_files
    >>> translator = Translator.from_checkpoint(Path("runs/pix2pix_facades"), device="cpu")  # doctest: +SKIP
    >>> image = torch.randint(0, 256, (3, 300, 517), dtype=torch.uint8)
    >>> translator(image).shape  # doctest: +SKIP
    torch.Size([3, 300, 517])
    >>> translate_files(translator, ["photos/*.jpg"], Path("out"))  # doctest: +SKIP
    [PosixPath('out/1.png'), PosixPath('out/2.png')]
    >>> styled = translator.bind(options={"feature_cluster": "3"})  # doctest: +SKIP
    >>> [len(outputs) for outputs in styled.translate_samples([image], samples=4)]  # doctest: +SKIP
    [4]
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from translate_kit.accel import accelerate, compiled_nets, eval_copy
from translate_kit.build import autocast_dtype, build_method, select_device, uses_channels_last
from translate_kit.data.io import IMAGE_EXTENSIONS, list_images, natural_key, read_image, to_channels
from translate_kit.data.jitter import to_unit_range
from translate_kit.data.video import VIDEO_EXTENSIONS, VideoWriter, iter_video
from translate_kit.errors import CheckpointError, DataError, InferenceError, TranslateKitError, did_you_mean
from translate_kit.memory import available_bytes, peak_bytes
from translate_kit.method import InputSpec, Method, describe_inputs, private_rng, test_time, translate_sequence
from translate_kit.pages import save_png, to_uint8
from translate_kit.recipe import Recipe, load_recipe
from translate_kit.tiling import axis_windows, pad_centred, tile_starts
from translate_kit.train.checkpoint import read_model

if TYPE_CHECKING:
    from translate_kit.registry import Registry

__all__ = [
    "VIDEO_EXTENSIONS",
    "Translator",
    "axis_windows",
    "expand_inputs",
    "parse_options",
    "tile_starts",
    "translate_files",
    "translate_video",
]
# axis_windows and tile_starts live in translate_kit.tiling; they stay importable from here.

Mode = Literal["paper", "eval"]
_PROBE_SIDE = 512  # side of the forward pass that measures a generator's bytes per pixel (auto_tile)
# Share of the available memory an untiled image may use: the CPU's count (live tensors) misses the
# allocator's own overhead and other programs need memory too; CUDA's is the allocator's exact peak.
_MEMORY_SHARE = {"cpu": 0.5, "cuda": 0.8}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as `to_channels` uses for uint8 images


def _check_channels(have: int, channels: int, what: str) -> None:
    """Raise unless `have` channels equal `channels` or convert to them (gray <-> RGB)."""
    if have != channels and {have, channels} != {1, 3}:
        wanted = {1: "gray (1 channel)", 3: "RGB (3 channels)"}.get(channels, f"{channels} channels")
        raise DataError(
            f"{what} has {have} channel(s), but the model takes {channels}; only gray (1) and RGB (3) images are "
            f"converted. Convert it to {wanted} first (dropping any alpha channel)."
        )


def _convert_channels(x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """`(B, C, H, W)` uint8 or float -> `channels` channels, converting gray <-> RGB only."""
    have = x.shape[1]
    _check_channels(have, channels, what)
    if have == channels:
        return x
    if x.dtype == torch.uint8:
        return to_channels(x, channels)  # the same conversion the training data went through
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)  # the weights sum to 1: [-1, 1] maps onto itself


def _same_kind(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype


def parse_options(spec: InputSpec, values: Mapping[str, Any], *, model: str = "This model") -> dict[str, Any]:
    """Check `values` against the options a model declares (`InputSpec.options`) and convert
    them to their types (strings such as `"3"` from a command line, or typed values).

    Raises:
        InferenceError: an option the model does not declare (with a near name and the list of
            those it has), or a value the option does not take.

    Example:
        >>> from translate_kit.method import InferenceOption
        >>> spec = InputSpec(options={"strength": InferenceOption("how strong", type=float, default=1.0)})
        >>> parse_options(spec, {"strength": "0.5"})
        {'strength': 0.5}
    """
    declared = spec.options
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declared:
            if not declared:
                raise InferenceError(f"{model} takes no options, so {name}={value} cannot be used; translate without "
                                     "--option.")
            listed = "; ".join(f"{n} ({o.describe()})" for n, o in declared.items())
            raise InferenceError(f"{model} has no option {name!r}.{did_you_mean(name, declared)} Its options: "
                                 f"{listed}.")
        try:
            parsed[name] = declared[name].parse(value, name=name)
        except ValueError as exc:
            raise InferenceError(f"Option {exc} ({name}: {declared[name].describe()}).") from None
    return parsed


class Translator:
    """Translate images with a method's generator; see the module docstring.

    Build one with `Translator.from_checkpoint`; the constructor takes an already loaded method.

    Args:
        method: a method whose networks hold trained weights (moved to `device` here).
        recipe: the recipe it was built from (channels and precision come from it).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        mode: "eval" (deterministic) or "paper" (dropout on, batch norm with each image's own
            statistics, as pix2pix tests; the network then sees one image at a time, since batch
            statistics would otherwise mix the images of a batch).
        seed: paper mode: image `i` of a call is translated with dropout seeded by `seed + i`, from
            a private copy of the random state (the global one is left as it was). A multimodal
            method (`InputSpec.multimodal`): sample `s` of every image is drawn with `seed + s`
            (see `translate_samples`), each image (and each of its tiles) on its own. None: the
            draws come from the global random state. Eval mode of a method that is not multimodal
            draws no random numbers.
        batch_size: images (of the same size) or tiles run through the network at once.
        tile: translate images whose padded size exceeds `tile` pixels in tiles of `tile` x `tile`
            (a multiple of `size_multiple`); None: whole images.
        overlap: minimum overlap of neighbouring tiles in pixels. Tile offsets stay multiples of
            `size_multiple`, so that the network's stride grid lines up with the untiled one's;
            the actual overlap can therefore be larger.
        auto_tile: with `tile` None, translate an image in tiles anyway when it would not fit: when
            its padded pixels (times the batch) times the generator's measured bytes per pixel
            exceed half the memory available on the CPU (80 % of a CUDA device's free memory).
            The bytes per pixel are measured once, on the first large image, by a forward pass at
            512 pixels (`translate_kit.memory.peak_bytes`); tiles are then the largest multiple
            of `size_multiple` that fits. `notify` is told once.
        notify: called with one line of text when images are first tiled automatically.
        compile: run the generator through `torch.compile` with inductor's freezing (weights as
            constants: batch norm folded, convolution weights pre-packed, element-wise work
            fused). The first image of each new size waits for a compilation (seconds to a minute
            on a CPU); then translation is faster (about 1.5x on a 2-core CPU at 256 px,
            docs/benchmarks.md). Worth it for many images.

    Attributes:
        spec: what the method takes (`describe_inputs`, without a palette): whether it is
            multimodal, takes a style image or named options.
        geometry: the method's `Geometry`: output scale, and the input sizes it takes.
        size_multiple: padded sizes are multiples of this (the generator's stride product).
        min_size: padded sizes are at least this.
        in_channels: channels the model takes; 1- and 3-channel inputs are converted to it.

    Tiling gives the untiled result exactly only for a network whose receptive field reaches less
    than a quarter of the overlap (see `axis_windows`). A U-Net sees nearly the whole tile, so its
    tiled output is close but not equal: on a 300x517 image with the 5-level test U-Net, a mean
    difference of 0.2 grey levels (max 9) for 256-pixel tiles overlapping by 64, 1.6 (max 15) for
    128-pixel tiles (tests/test_translate.py). Use the largest tiles that fit in memory. In paper
    mode every tile also normalises with its own statistics.
    """

    def __init__(
        self,
        method: Method,
        recipe: Recipe,
        *,
        device: str | torch.device = "auto",
        mode: Mode = "eval",
        seed: int | None = None,
        batch_size: int = 1,
        tile: int | None = None,
        overlap: int = 64,
        compile: bool = False,
        auto_tile: bool = True,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in ("paper", "eval"):
            raise InferenceError(f"Expected mode 'paper' or 'eval', got {mode!r}.")
        if batch_size < 1:
            raise InferenceError(f"Expected batch_size >= 1, got {batch_size}.")
        self.recipe, self.mode, self.seed, self.batch_size = recipe, mode, seed, batch_size
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.in_channels = recipe.data.in_channels
        self.spec = describe_inputs(method, channels=self.in_channels)
        self.geometry = method.geometry()
        self.size_multiple, self.min_size, self.scale = (
            self.geometry.size_multiple, self.geometry.min_size, self.geometry.scale,
        )
        if tile is not None:
            m = self.size_multiple
            if tile < max(m, self.min_size) or tile % m:
                hint = self.geometry.padded(max(tile, self.min_size))
                raise InferenceError(
                    f"Tile size {tile} does not fit this model, which needs sizes that are multiples of {m} and at "
                    f"least {max(m, self.min_size)}; use such a size, e.g. {hint}."
                )
            if not 0 <= overlap < tile:
                raise InferenceError(f"Expected 0 <= overlap < tile ({tile}), got overlap {overlap}.")
        elif overlap < 0:
            raise InferenceError(f"Expected overlap >= 0, got {overlap}.")
        self.tile, self.overlap = tile, overlap
        self.compile, self.auto_tile, self.notify = compile, auto_tile, notify
        self._bytes_per_pixel: float | None = None  # measured on the first large image (auto_tile)
        self._told = False

        self.channels_last = uses_channels_last(recipe.train.memory_format, self.device)
        self.autocast_dtype = autocast_dtype(recipe.train.precision, self.device)
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        accelerate(method, self.device)
        self.method = method.to(self.device, memory_format=fmt)
        self.checkpoint: Path | None = None  # set by from_checkpoint
        self.averaged = False  # translating with moving averages of the weights (from_checkpoint)
        self._folded: tuple[tuple[tuple[int, int], ...], Method] | None = None  # see _runner
        self.step: int | None = None  # optimisation steps of the loaded weights

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        *,
        device: str = "auto",
        mode: Mode = "eval",
        registry: Registry | None = None,
        pm: Any | None = None,
        use_ema: bool = True,
        run_files: bool = True,
        **options: Any,
    ) -> Translator:
        """Load a checkpoint file, or the newest checkpoint of a run folder.

        The networks are rebuilt from the recipe stored in the checkpoint, so the architecture
        always matches the weights.

        Args:
            path: a `step_*.pt` file, a run folder, or a safetensors export (its `.safetensors` or
                `.json` file, or the folder holding `model.safetensors.json`; see `translate_kit.train.checkpoint`).
            device: "auto", "cpu", "cuda", "cuda:N" or "mps".
            mode: "eval" or "paper" (see the class docstring).
            registry: the components to build from (default: from `pm`).
            pm: the plugin manager whose registry is used when `registry` is None (default: all
                installed plugins).
            use_ema: translate with the moving averages of the weights (`train.ema_decay`) when
                the checkpoint has them; False: the trained weights themselves.
            run_files: let the method read the files it keeps in the run folder
                (`Method.load_run_files`); False for a tool that is about to make them anew.
            **options: `seed`, `batch_size`, `tile`, `overlap`, `compile`, `auto_tile`, `notify`
                (see the class docstring).

        Raises:
            CheckpointError: the file is missing, not a translate-kit checkpoint, its recipe does not
                build with the installed plugins, or its weights do not fit the networks.
        """
        saved = read_model(path)
        file = saved.path
        if registry is None:
            from translate_kit.plugins import get_plugin_manager
            from translate_kit.registry import Registry

            registry = Registry.from_plugin_manager(pm if pm is not None else get_plugin_manager())
        try:
            # No registry here: the dataset the run trained on need not be installed to translate.
            recipe = dataclasses.replace(load_recipe(saved.recipe), source=f"{file} (stored recipe)")
            # Building initialises weights randomly; keep the caller's random state as it was.
            with torch.random.fork_rng(devices=[]):
                method = build_method(recipe, registry)
        except TranslateKitError as exc:
            raise CheckpointError(f"Cannot rebuild the networks of {file}: {exc}") from None
        weights = {**saved.nets, **(saved.ema if use_ema else {})}
        try:
            # A training checkpoint holds every network; an export or a converted reference
            # checkpoint may hold only those `translate` runs. The rest keep their initial weights.
            missing = [name for name in method.translate_nets if name not in weights]
            if missing:
                raise KeyError(f"no weights for network(s) {', '.join(missing)}")
            for name, state in weights.items():
                method.nets[name].load_state_dict(state)
            method.load_extra_state(saved.method_state)
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"The weights in {file} do not fit the networks its recipe describes ({first}). The checkpoint "
                "is damaged, or a plugin changed its architecture since it was written."
            ) from None
        if run_files:
            method.load_run_files(file.parent.parent if file.parent.name == "checkpoints" else file.parent)
        translator = cls(method, recipe, device=device, mode=mode, **options)
        translator.checkpoint = file
        translator.step = saved.step
        translator.averaged = bool(use_ema and saved.ema) or saved.averaged
        return translator

    @classmethod
    def from_recipe(
        cls, path: Path, *, registry: Registry, device: str = "auto", mode: Mode = "eval", **options: Any
    ) -> Translator:
        """A recipe's method with fresh weights (seeded by `run.seed`), for evaluating what needs no
        training (a parameter-free baseline such as bicubic upsampling) or an untrained model.

        Raises:
            RecipeError: the recipe does not load or build.
        """
        recipe = load_recipe(path, registry=registry)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            method = build_method(recipe, registry)
        return cls(method, recipe, device=device, mode=mode, **options)

    def bind(self, *, style: torch.Tensor | None = None, options: Mapping[str, Any] | None = None) -> Translator:
        """A translator with this one's settings whose method shares these networks and follows
        a style image, or uses named options.

        Args:
            style: one image `(C, H, W)`, uint8 or float in [-1, 1], of any size, gray or RGB:
                the method's `with_style` gets it as `(1, C_out, H, W)` in [-1, 1] on the device.
            options: values of the options the method declares (`InputSpec.options`), as strings
                (`{"feature_cluster": "3"}`, from a command line) or typed values.

        Raises:
            InferenceError: a style image for a method that takes none, options for one that
                declares none, an unknown option or a value it does not take.
            DataError: a style image that is not an image or whose channels do not convert.
        """
        method, model = self.method, f"The model ({type(self.method).__name__})"
        if options:
            values = parse_options(self.spec, options, model=model)
            try:
                method = method.with_options(**values)  # type: ignore[attr-defined] - Configurable, checked above
            except ValueError as exc:
                given = ", ".join(f"{k}={v}" for k, v in options.items())
                raise InferenceError(f"--option {given}: {exc}") from None
        if style is not None:
            if not self.spec.style_image:
                raise InferenceError(f"{model} takes no style image; translate without --style (methods that take "
                                     "one are StyleConditioned, such as SPADE with its image encoder).")
            if not isinstance(style, torch.Tensor) or style.ndim != 3 or min(style.shape[-2:]) < 1:
                shape = tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__
                raise DataError(f"The style image: expected an image tensor of shape (C, H, W), got {shape}.")
            styled = _convert_channels(style[None].to(self.device), self.recipe.data.out_channels, "The style image")
            styled = to_unit_range(styled) if styled.dtype == torch.uint8 else styled.float()
            method = method.with_style(styled)  # type: ignore[attr-defined] - StyleConditioned, see describe_inputs
        bound = copy.copy(self)
        bound.method = method.to(self.device)
        bound.spec = describe_inputs(method, channels=self.in_channels)
        bound._folded = None
        return bound

    # ------------------------------------------------------------------------------------------
    # Translation

    def translate_samples(
        self, images: Sequence[torch.Tensor], samples: int, *, names: Sequence[str] | None = None, first_index: int = 0
    ) -> list[list[torch.Tensor]]:
        """`samples` outputs of each `(C, H, W)` image from a multimodal method.

        Sample `s` of every image is drawn with `seed + s` in a private random state (the
        caller's is left as it was), so sample `s` of two images shares its random draws (a
        latent code that does not depend on the image is the same) and a run can be repeated.
        With `seed` None the draws come from the global random state.

        Returns:
            Per image, its `samples` uint8 outputs, in order.

        Raises:
            InferenceError: `samples` < 1, or > 1 for a method that is not multimodal.
        """
        self._check_samples(samples)
        drawn = [self.translate_batch(images, names=names, first_index=first_index, sample=s) for s in range(samples)]
        return [list(outputs) for outputs in zip(*drawn)]

    def _check_samples(self, samples: int) -> None:
        if samples < 1:
            raise InferenceError(f"Expected samples >= 1, got {samples}.")
        if samples > 1 and not self.spec.multimodal:
            raise InferenceError(
                f"The model ({type(self.method).__name__}) is not multimodal: it gives one output per input, so "
                f"{samples} samples would be {samples} copies. Ask for 1 sample (a multimodal method draws a latent "
                "code in translate and says so in input_spec)."
            )

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Translate images; outputs have the inputs' height and width.

        Args:
            images: uint8 `(C, H, W)` or `(B, C, H, W)` in [0, 255], or float in [-1, 1]; or a
                sequence of `(C, H, W)` images of any sizes. C is the model's channel count, or
                1 / 3 (converted gray <-> RGB).

        Returns:
            uint8 outputs on the CPU, shaped like the input: `(C_out, H, W)`, `(B, C_out, H, W)`,
            or a list of `(C_out, H_i, W_i)`.

        Raises:
            DataError: no images, a wrong shape or dtype, or channels that cannot be converted.
        """
        if isinstance(images, torch.Tensor):
            if images.ndim == 3:
                return self.translate_batch([images])[0]
            if images.ndim == 4:
                if images.shape[0] == 0:
                    raise DataError("No images to translate: the batch is empty.")
                return torch.stack(self.translate_batch(list(images)))
            raise DataError(f"Expected images of shape (C, H, W) or (B, C, H, W), got {tuple(images.shape)}.")
        images = list(images)
        if not images:
            raise DataError("No images to translate: the list is empty.")
        return self.translate_batch(images)

    def translate_batch(
        self, images: Sequence[torch.Tensor], *, names: Sequence[str] | None = None, first_index: int = 0,
        sample: int = 0,
    ) -> list[torch.Tensor]:
        """Translate `(C, H, W)` images (any sizes); runs of equal-sized images share a batch.

        Args:
            images: uint8 or [-1, 1] float images.
            names: what to call each image in errors (e.g. "Image photos/1.jpg"); default
                "Input image i".
            first_index: the index of the first image for paper-mode seeding (image i gets
                `seed + first_index + i`), so a stream translated in chunks gets the same noise as
                one call.
            sample: for a multimodal method, which sample to draw: every image is seeded with
                `seed + sample` (see `translate_samples`).
        """
        names = list(names) if names is not None else [f"Input image {first_index + i}" for i in range(len(images))]
        for image, name in zip(images, names):
            if not isinstance(image, torch.Tensor) or image.ndim != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise DataError(f"{name}: expected an image tensor of shape (C, H, W), got {shape}.")
            if image.dtype != torch.uint8 and not image.is_floating_point():
                raise DataError(f"{name}: expected uint8 in [0, 255] or float in [-1, 1], got dtype {image.dtype}.")
            if min(image.shape[-2:]) < 1:
                raise DataError(f"{name} is empty (shape {tuple(image.shape)}).")
            _check_channels(image.shape[0], self.in_channels, name)  # fail before any work
        outputs: list[torch.Tensor] = []
        start = 0
        with torch.inference_mode(), test_time(self.method, self.mode):
            while start < len(images):
                end = start + 1
                while end - start < self.batch_size and end < len(images) and _same_kind(images[start], images[end]):
                    end += 1
                chunk = torch.stack(list(images[start:end]))
                outputs.extend(self._translate_chunk(chunk, first_index + start, sample))
                start = end
        return outputs

    def translate_sequence(
        self, frames: Iterable[torch.Tensor], *, first_output: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        """Translate the frames of one video in order, through the method's recurrence when it has
        one (`SequenceTranslator`: vid2vid), else frame by frame (`translate_sequence`).

        Every frame is padded (centred, as images are) to the sizes the model takes and its output
        cropped back; frames are never tiled (the recurrence needs whole frames) and must share one
        size. Paper mode seeds frame i with `seed + i`, as images.

        Args:
            frames: uint8 `(C, H, W)` or float in [-1, 1], one size.
            first_output: frame 0's output (uint8 or float `(C_out, H, W)`), given; None: generated.

        Yields:
            uint8 `(C_out, s H, s W)` on the CPU, one per frame, as each is made.

        Raises:
            DataError: a frame of another size, shape or channel count.
        """
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        if not isinstance(first, torch.Tensor) or first.ndim != 3:
            raise DataError(f"Frame 0: expected an image tensor of shape (C, H, W), got "
                            f"{getattr(first, 'shape', type(first).__name__)}.")
        height, width = first.shape[-2:]
        ph, pw = self.geometry.padded(height), self.geometry.padded(width)
        top, left = (ph - height) // 2, (pw - width) // 2  # pad_centred's offsets

        def padded(i: int, frame: Any) -> torch.Tensor:
            name = f"Frame {i}"
            if not isinstance(frame, torch.Tensor) or frame.ndim != 3:
                raise DataError(f"{name}: expected an image tensor of shape (C, H, W), got "
                                f"{getattr(frame, 'shape', type(frame).__name__)}.")
            _check_channels(frame.shape[0], self.in_channels, name)
            if tuple(frame.shape[-2:]) != (height, width):
                raise DataError(f"{name} is {frame.shape[-2]}x{frame.shape[-1]}, but the video's first frame is "
                                f"{height}x{width}; the frames of a video share one size.")
            x = pad_centred(self._prepare(frame[None], self.device), ph, pw)[0]
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

        given = None
        if first_output is not None:
            s = self.scale
            if first_output.ndim != 3 or tuple(first_output.shape[-2:]) != (s * height, s * width):
                raise DataError(f"The given first frame is {tuple(first_output.shape)}; expected (C, {s * height}, "
                                f"{s * width}), the video's frames times the model's scale.")
            given = first_output[None].to(self.device)
            given = to_unit_range(given) if given.dtype == torch.uint8 else given.float()
            given = pad_centred(given, s * ph, s * pw)[0]
        all_frames = (padded(i, f) for i, f in enumerate(itertools.chain([first], frames)))
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with torch.inference_mode(), test_time(self.method, self.mode), autocast:
            outputs = translate_sequence(self._runner(), all_frames, first_output=given)
            for i in itertools.count():
                seed = self.seed + i if self.mode == "paper" and self.seed is not None else None
                with private_rng(self.device) if seed is not None else contextlib.nullcontext():
                    if seed is not None:
                        torch.manual_seed(seed)
                    y = next(outputs, None)
                if y is None:
                    return
                s = self.scale
                yield to_uint8(y.float()[0, :, s * top : s * (top + height), s * left : s * (left + width)])

    def _prepare(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 or float `(B, C, H, W)` -> float32 [-1, 1] with the model's channels, on `device`."""
        x = _convert_channels(x.to(device), self.in_channels, "input")
        return to_unit_range(x) if x.dtype == torch.uint8 else x.float()

    def _translate_chunk(self, x: torch.Tensor, first_index: int, sample: int = 0) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        ph, pw = self.geometry.padded(height), self.geometry.padded(width)
        tile = self.tile if self.tile is not None or not self.auto_tile else self._automatic_tile(ph, pw, len(x))
        if tile is not None and max(ph, pw) > tile:
            # The whole image stays where it is (the CPU for files); only tiles visit the device.
            x = self._prepare(x, x.device)
            outputs = []
            for i in range(len(x)):
                seed = self._seed(first_index + i, sample)
                if self.spec.multimodal:  # every tile draws the same numbers: one latent code per image
                    outputs.append(self._tiled(x[i : i + 1], ph, pw, tile, seed)[0])
                else:
                    outputs.append(self._seeded(seed, self._tiled, x[i : i + 1], ph, pw, tile)[0])
            return outputs
        padded, (top, left) = pad_centred(self._prepare(x, self.device), ph, pw)
        if self._alone:
            parts = [self._seeded(self._seed(first_index + i, sample), self._forward, padded[i : i + 1])
                     for i in range(len(x))]
            y = torch.cat(parts)
        else:
            y = self._forward(padded)
        s = self.scale
        return list(to_uint8(y[..., s * top : s * (top + height), s * left : s * (left + width)]))

    @property
    def _alone(self) -> bool:
        """Whether each image (and tile) goes through the network on its own: in paper mode (batch
        statistics of one image, as the paper tests) and for a seeded multimodal method (its draws
        then do not depend on the batch)."""
        return self.mode == "paper" or (self.spec.multimodal and self.seed is not None)

    def _seed(self, index: int, sample: int) -> int | None:
        """The seed of image `index`'s sample `sample`: `seed + sample` for a multimodal method,
        `seed + index` in paper mode, None (no seeding) otherwise."""
        if self.seed is None:
            return None
        if self.spec.multimodal:
            return self.seed + sample
        return self.seed + index if self.mode == "paper" else None

    def _seeded(self, seed: int | None, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        if seed is None:
            return fn(*args)
        with private_rng(self.device):
            torch.manual_seed(seed)
            return fn(*args)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The method on padded float `(B, C, H, W)`; returns float32 on the device."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            y = self._runner().translate(x)
        return y.float()

    def _runner(self) -> Method:
        """The method `_forward` runs. In eval mode it is a copy whose batch norms are folded into
        the convolutions before them (the same function with a pass over each feature map fewer),
        remade whenever the weights change (the key is every tensor's identity and in-place version
        counter, so loading weights or re-estimating statistics invalidates it)."""
        if self.mode != "eval" and not self.compile:
            return self.method
        names = self.method.translate_nets
        key = tuple(
            # Inference tensors (a model built under torch.inference_mode) keep no version counter
            # and cannot be changed in place either: their identity is enough.
            (id(t), 0 if t.is_inference() else t._version)
            for n in names
            for t in (*self.method.nets[n].parameters(), *self.method.nets[n].buffers())
        )
        if self._folded is None or self._folded[0] != key:
            runner = eval_copy(self.method) if self.mode == "eval" else self.method
            self._folded = (key, compiled_nets(runner) if self.compile else runner)
        return self._folded[1]

    def _automatic_tile(self, ph: int, pw: int, count: int) -> int | None:
        """The tile size for `count` padded `ph` x `pw` images that would not fit the device's
        memory at once, or None when they fit (see `auto_tile` in the class docstring)."""
        probe = self.geometry.padded(max(self.min_size, _PROBE_SIDE))
        per_pass = 1 if self._alone else count  # paper mode runs one image at a time
        pixels = ph * pw * per_pass
        if pixels <= 4 * probe * probe:  # small images: not worth measuring
            return None
        free = available_bytes(self.device)
        if free is None:
            return None
        budget = free * _MEMORY_SHARE.get(self.device.type, 0.5)
        if self._bytes_per_pixel is None:
            x = torch.zeros(1, self.in_channels, probe, probe, device=self.device)
            self._runner()  # the eval-mode copy of the weights is made before, not counted as activations
            # As translation runs: no autograd graph (whose saved tensors would count), and paper
            # mode's dropout must not move the caller's random stream.
            with private_rng(self.device), torch.inference_mode():
                self._bytes_per_pixel = peak_bytes(lambda: self._forward(x), self.device) / probe**2
        if self._bytes_per_pixel * pixels <= budget:
            return None
        m = self.size_multiple
        side = math.isqrt(int(budget / (self._bytes_per_pixel * (1 if self._alone else self.batch_size))))
        tile = max(side // m * m, self.geometry.padded(self.min_size))
        if not self._told and self.notify is not None:
            self._told = True
            self.notify(
                f"A {pw}x{ph} input (padded) would need about {self._bytes_per_pixel * pixels / 2**30:.1f} GiB on "
                f"{self.device}, more than the {budget / 2**30:.1f} GiB it can use, so large images are translated in "
                f"{tile}x{tile} tiles blended over {min(self.overlap, tile // 2)} pixels (--tile sets the size, "
                "--no-auto-tile turns this off)."
            )
        return tile

    def _tiled(self, x: torch.Tensor, ph: int, pw: int, tile: int, seed: int | None = None) -> torch.Tensor:
        """One image `(1, C, H, W)` float, translated tile by tile and blended; returns uint8.

        Tiles are placed in input pixels; their outputs, `scale` times larger, are blended in
        output pixels with windows over the scaled overlaps. With `seed`, every tile is drawn
        from that seed (a multimodal method's latent code is then the same in all of them)."""
        height, width = x.shape[-2:]
        padded, (top, left) = pad_centred(x, ph, pw)
        m, s = self.size_multiple, self.scale
        th, tw = min(tile, ph), min(tile, pw)
        overlap = min(self.overlap, tile // 2)  # an automatic tile may be smaller than the set overlap
        # Offsets stay multiples of size_multiple: the stride grid then matches the untiled one.
        step_h, step_w = (max(m, (t - overlap) // m * m) for t in (th, tw))
        ys, xs = tile_starts(ph, th, step_h), tile_starts(pw, tw, step_w)
        wy = dict(zip(ys, (w.to(x.device) for w in axis_windows([s * y for y in ys], s * th))))
        wx = dict(zip(xs, (w.to(x.device) for w in axis_windows([s * x0 for x0 in xs], s * tw))))
        positions = [(y, x0) for y in ys for x0 in xs]
        per_batch = 1 if self._alone else self.batch_size
        out: torch.Tensor | None = None
        weight = torch.zeros(1, 1, s * ph, s * pw, device=x.device)
        for start in range(0, len(positions), per_batch):
            chosen = positions[start : start + per_batch]
            tiles = torch.cat([padded[..., y : y + th, x0 : x0 + tw] for y, x0 in chosen])
            y_tiles = self._seeded(seed, self._forward, tiles).to(x.device)
            if out is None:
                out = torch.zeros(1, y_tiles.shape[1], s * ph, s * pw, device=x.device)
            for k, (y, x0) in enumerate(chosen):
                w = wy[y][:, None] * wx[x0][None, :]
                out[..., s * y : s * (y + th), s * x0 : s * (x0 + tw)] += y_tiles[k] * w
                weight[..., s * y : s * (y + th), s * x0 : s * (x0 + tw)] += w
        assert out is not None
        out = out / weight
        return to_uint8(out[..., s * top : s * (top + height), s * left : s * (left + width)])


# ----------------------------------------------------------------------------------------------
# Files


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files, folders (images directly inside) and glob patterns, in order and
    without repeats. Patterns (`"imgs/*.png"`, `"**/*.jpg"`) are expanded here, so they work when
    the shell left them quoted; they select files with an image extension.

    Raises:
        DataError: no inputs, an input that does not exist, or a folder or pattern with no images.
    """
    if not inputs:
        raise DataError("No inputs given: pass image files, folders or glob patterns such as 'photos/*.jpg'.")
    found: list[Path] = []
    seen: set[Path] = set()
    extensions = ", ".join(IMAGE_EXTENSIONS)
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                paths = list_images(path)
            except DataError:
                raise DataError(f"Input folder {path} holds no images (looked for {extensions}).") from None
        elif path.is_file():
            paths = [path]
        elif any(c in str(item) for c in "*?["):
            matches = [Path(p) for p in glob.glob(str(item), recursive=True)]
            images = (p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            paths = sorted(images, key=natural_key)
            if not paths:
                raise DataError(f"Pattern {str(item)!r} matches no image file (looked for {extensions}).")
        else:
            raise DataError(f"Input {path} does not exist.")
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                found.append(p)
    return found


def _output_paths(files: Sequence[Path], out_dir: Path, samples: int = 1) -> list[list[Path]]:
    """Per input, `<stem>.png` in `out_dir` (`<stem>_<i>.png` for each of `samples` > 1), with
    `_1`, `_2`, ... after the stem when names repeat."""
    inputs = {p.resolve() for p in files}
    used: set[str] = set()  # lower case: a.png and A.png are one file on macOS and Windows
    paths = []
    for file in files:
        n = 0
        while True:
            stem = file.stem if n == 0 else f"{file.stem}_{n}"
            names = [f"{stem}.png"] if samples == 1 else [f"{stem}_{i}.png" for i in range(samples)]
            if not any(name.lower() in used for name in names):
                break
            n += 1
        used.update(name.lower() for name in names)
        targets = [out_dir / name for name in names]
        for target in targets:
            if target.resolve() in inputs:
                raise DataError(
                    f"Writing {target} would overwrite the input image of that name; choose another output folder."
                )
        paths.append(targets)
    return paths


def translate_files(
    translator: Translator,
    inputs: Sequence[str | Path],
    out_dir: Path,
    *,
    samples: int = 1,
    on_image: Callable[[Path, Path], None] | None = None,
) -> list[Path]:
    """Translate image files into PNGs named `<input stem>.png` in `out_dir`.

    Images are read, translated and written `translator.batch_size` at a time, so any number of
    files fits in memory. Existing files in `out_dir` are replaced, but never an input image.

    Args:
        translator: the model.
        inputs: image files, folders (the images directly inside) and glob patterns.
        out_dir: created if missing.
        samples: outputs per input from a multimodal model, written `<stem>_<i>.png` for i = 0,
            1, ... (see `Translator.translate_samples`: sample i is drawn with `seed + i`).
        on_image: called as `on_image(input, output)` after each output is written.

    Returns:
        The written files, in input order (the samples of an input together).

    Raises:
        DataError: see `expand_inputs`; an unreadable image or one with unusable channels (the
            message names the file); an output that would overwrite an input.
        InferenceError: `samples` > 1 for a model that is not multimodal.
    """
    files = expand_inputs(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"Output folder {out_dir} is a file; choose a folder.")
    targets = _output_paths(files, out_dir, samples)
    translator._check_samples(samples)  # before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for start in range(0, len(files), translator.batch_size):
        chunk = files[start : start + translator.batch_size]
        images = [read_image(path) for path in chunk]
        names = [f"Image {p}" for p in chunk]
        drawn = translator.translate_samples(images, samples, names=names, first_index=start)
        for source, paths, outputs in zip(chunk, targets[start : start + len(chunk)], drawn):
            for target, output in zip(paths, outputs):
                save_png(output, target)
                written.append(target)
                if on_image is not None:
                    on_image(source, target)
    return written


def translate_video(
    translator: Translator,
    source: Path,
    out_dir: Path,
    *,
    fps: float = 25.0,
    first_frame: Path | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[list[Path], Path]:
    """Translate a video, a file (mp4 and other FFmpeg formats) or a folder of frames in natural
    order, with the model's recurrence (`Translator.translate_sequence`): frames are read, translated
    and written one at a time, as `out_dir/frames/<n>.png` and `out_dir/<source stem>.mp4` of the same
    frame count and frame rate (a folder's frames play at `fps`).

    Video files are read and written through `translate_kit.data.video` (PyAV, the `video` extra).

    Args:
        translator: the model.
        source: a video file or a folder of frames.
        out_dir: created if missing.
        fps: frame rate of a folder of frames (a file keeps its own).
        first_frame: an image used as frame 0's output (the model continues from it); None: generated.
        on_frame: called with each frame's index after it is written.

    Returns:
        The frame files, and the video file.

    Raises:
        DataError: the source is missing or not a video, PyAV is missing, or frames differ in size.
    """
    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        frames: Iterable[torch.Tensor] = (read_image(p) for p in list_images(source))
        rate: float | Fraction = fps
    elif source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        frames, rate = iter_video(source, default_rate=fps)
    else:
        raise DataError(f"Video input {source} is neither a folder of frames nor a video file "
                        f"({', '.join(VIDEO_EXTENSIONS)}).")
    given = read_image(first_frame) if first_frame is not None else None
    frame_dir = out_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with VideoWriter(out_dir / f"{source.stem}.mp4", rate) as video:
        for i, y in enumerate(translator.translate_sequence(frames, first_output=given)):
            y = y.expand(3, -1, -1)  # a grey model's frames as RGB, as the video holds them
            target = frame_dir / f"{i:05d}.png"
            save_png(y, target)
            written.append(target)
            video.write(y)
            if on_frame is not None:
                on_frame(i)
    if not written:
        raise DataError(f"Video input {source} holds no frame.")
    return written, video.path
