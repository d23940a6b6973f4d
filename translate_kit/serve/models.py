"""The models `tkit serve` offers: loading, what each takes, checked uploads, guarded translation.

Nothing here knows the web framework, so every rule a request meets (a size limit, an image that
is not one, an option the model does not have) is a `RequestError` carrying its HTTP status,
testable without a server. Uploads are decoded in memory and nothing is written to disk.

Example:
    >>> image_size(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + (517).to_bytes(4, "big")
    ...            + (300).to_bytes(4, "big"))
    (517, 300)
    >>> image_size(b"GIF89a" + (40).to_bytes(2, "little") + (24).to_bytes(2, "little"))
    (40, 24)
    >>> image_size(b"not an image") is None
    True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from translate_kit.data.io import decode_image_bytes, gif_frames, image_size
from translate_kit.errors import DataError, TranslateKitError
from translate_kit.inference import Translator
from translate_kit.method import InputSpec, describe_inputs

if TYPE_CHECKING:
    from translate_kit.eval.labels import Palette
    from translate_kit.registry import Registry

__all__ = [
    "Limits",
    "RequestError",
    "ServedModel",
    "decode_upload",
    "encode_png",
    "load_models",
    "model_names",
    "served_model",
]

Mode = Literal["paper", "eval"]
MB = 1024 * 1024


class RequestError(TranslateKitError):
    """A request the server refuses; `status` is its HTTP status (413 too large, 415 not an
    image, 404 no such model, 422 an option the model does not take)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask of the server.

    Attributes:
        max_upload_bytes: largest request body (the image, a style image and the options).
        max_pixels: largest output, in pixels (width x height x scale²), so an upscaling model
            refuses smaller inputs than a same-size one.
        tile: side, in output pixels, of the largest square translated in one pass; larger images
            go through the network in overlapping tiles (`Translator`'s `tile`), so memory stays
            bounded.
        max_samples: most outputs of one request to a multimodal model.
    """

    max_upload_bytes: int = 20 * MB
    max_pixels: int = 4096 * 4096
    tile: int = 1024
    max_samples: int = 8

    def __post_init__(self) -> None:
        if min(self.max_upload_bytes, self.max_pixels, self.tile, self.max_samples) < 1:
            raise ValueError(f"Expected every limit >= 1, got {self}")

    def info(self) -> dict[str, int]:
        return {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                "max_samples": self.max_samples}


# ------------------------------------------------------------------------------------------------
# Uploads


def decode_upload(data: bytes, *, what: str, max_pixels: int, scale: int = 1) -> torch.Tensor:
    """Decode an uploaded image to uint8 `(C, H, W)`, C = 1 (gray) or 3 (RGB), in memory.

    Alpha is dropped, 16-bit samples keep their top 8 bits and an animation keeps its first frame,
    as `read_image` does for files.

    Args:
        data: the file's bytes.
        what: what to call it in messages ("The image").
        max_pixels: the largest output (width x height x scale²) allowed.
        scale: the model's output scale.

    Raises:
        RequestError: 415 for an empty upload or one that is not a PNG, JPEG, GIF or WebP image;
            413 for an image whose output would exceed `max_pixels`.
    """
    if not data:
        raise RequestError(f"{what} is empty (0 bytes); choose an image file.", 415)
    size = image_size(data)
    if size is None:
        raise RequestError(f"{what} is not a PNG, JPEG, GIF or WebP image; convert it to PNG and try again.", 415)
    width, height = size
    frames = gif_frames(data)
    if frames is not None and frames > 1:  # every frame would be decoded: the pixel limit would not hold
        raise RequestError(f"{what} is an animated GIF ({frames} frames); send a single image (PNG).", 415)
    if width * height * scale * scale > max_pixels:
        output = f" (its output {width * scale} x {height * scale})" if scale > 1 else ""
        raise RequestError(
            f"{what} is {width} x {height} pixels{output}, over this server's limit of {max_pixels:,} output "
            f"pixels (--max-pixels). Resize it, or restart the server with a larger limit.", 413,
        )
    damaged = RequestError(f"{what} cannot be decoded: the file is truncated or damaged. Save it again as PNG.", 415)
    if width * height == 0:
        raise damaged
    try:
        return decode_image_bytes(data, what)
    except DataError:  # the decoder's own message names its C++ source, not the problem
        raise damaged from None


def encode_png(image: torch.Tensor) -> bytes:
    """A uint8 `(C, H, W)` image as PNG bytes."""
    from torchvision.io import encode_png as encode

    return encode(image.cpu().contiguous()).numpy().tobytes()


# ------------------------------------------------------------------------------------------------
# Models


@dataclass(eq=False)
class ServedModel:
    """One model the server offers: a loaded translator, what it takes, and the locks that keep
    requests apart.

    A `Translator` is not thread-safe, so one request at a time runs through a model (`lock`).
    Seeded translation (paper mode, a multimodal model) sets torch's global random state, so it
    also holds `rng_lock`, which every model of a server shares.

    Attributes:
        name: what the page and the API call it.
        translator: the loaded model (eval mode, untiled); one translator per mode is made from it.
        spec: what it takes (`describe_inputs`).
        source: the run folder or file it was loaded from.
        tile: tile side in input pixels (a size the model takes); larger images go in tiles.
    """

    name: str
    translator: Translator
    spec: InputSpec
    source: Path | None = None
    tile: int | None = None
    rng_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _translators: dict[str, Translator] = field(default_factory=dict, init=False, repr=False)

    def info(self) -> dict[str, Any]:
        """The model as GET /api/models lists it."""
        spec, translator = self.spec, self.translator
        palette = spec.palette
        return {
            "name": self.name,
            "source": str(self.source) if self.source is not None else None,
            "step": translator.step,
            "input": spec.kind,
            "channels": spec.channels,
            "palette": None if palette is None else {"names": list(palette.names),
                                                     "colors": [list(c) for c in palette.colors]},
            "modes": list(spec.modes),
            "default_mode": spec.default_mode,
            "multimodal": spec.multimodal,
            "style_image": spec.style_image,
            "scale": spec.scale,
            # The painting canvas: the training crop. canvas_size stays one number (a square's side;
            # for a [height, width] crop its width) for clients that draw square canvases.
            "canvas_size": translator.recipe.data.crop_hw[1],
            "canvas_height": translator.recipe.data.crop_hw[0],
            "canvas_width": translator.recipe.data.crop_hw[1],
        }

    def _translator(self, mode: Mode) -> Translator:
        """The translator of `mode`, made once from the loaded method (called under `lock`)."""
        if mode not in self._translators:
            self._translators[mode] = self._make(self.translator.method, mode)
        return self._translators[mode]

    def _make(self, method: Any, mode: Mode) -> Translator:
        base = self.translator
        overlap = min(64, self.tile // 4) if self.tile else 64
        return Translator(method, base.recipe, device=base.device, mode=mode, tile=self.tile, overlap=overlap)

    def translate(
        self,
        image: torch.Tensor,
        *,
        mode: Mode | None = None,
        seed: int = 0,
        samples: int = 1,
        style: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Translate one uint8 `(C, H, W)` image; one uint8 output per sample.

        Sample `i` is seeded with `seed + i` when the output depends on random numbers (paper mode,
        a multimodal model), so a request can be repeated. Safe to call from several threads.

        Raises:
            RequestError: 422 for a mode, a number of samples or a style image the model does not take,
                or an image whose channels do not convert.
        """
        spec = self.spec
        mode = mode or spec.default_mode
        if mode not in spec.modes:
            raise RequestError(f"Model {self.name!r} has no {mode!r} mode; choose {' or '.join(spec.modes)}.", 422)
        if samples != 1 and not spec.multimodal:
            raise RequestError(f"Model {self.name!r} is not multimodal: it gives one output per image, so ask "
                               "for 1 sample.", 422)
        if style is not None and not spec.style_image:
            raise RequestError(f"Model {self.name!r} takes no style image; send the image alone.", 422)
        seeded = mode == "paper" or spec.multimodal
        with self.lock, self.rng_lock if seeded else contextlib.nullcontext():
            translator = self._translator(mode)
            translator.seed = seed  # sample i: seed + i, in a private random state (Translator.translate_samples)
            try:
                if style is not None:  # a method bound to this style, for this request only
                    translator = translator.bind(style=style)
                return translator.translate_samples([image], samples)[0]
            except DataError as exc:
                raise RequestError(str(exc), 422) from None


def model_names(paths: Sequence[Path]) -> list[str]:
    """A name per run folder or checkpoint file: the folder's name (`run/checkpoints/step_9.pt`:
    `run-step_9`), with `-2`, `-3`, ... where names repeat."""
    names: list[str] = []
    for path in paths:
        path = Path(path).resolve()
        if path.is_file():
            base = f"{path.parent.parent.name}-{path.stem}" if path.parent.name == "checkpoints" else path.stem
        else:
            base = path.name
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def resolve_palette(name: str, registry: Registry, *, where: str = "data.palette") -> Palette | None:
    """The palette `data.palette` names, from the registry's palettes; None for ""."""
    return registry.get("palette", name, where=where).factory() if name else None


def served_model(
    name: str, translator: Translator, registry: Registry, *, limits: Limits = Limits(),
    source: Path | None = None, rng_lock: threading.Lock | None = None,
) -> ServedModel:
    """Offer a loaded translator: its `InputSpec` from its recipe and method, its tile size.

    Raises:
        UnknownComponentError: the recipe's `data.palette` is not registered (a plugin is missing).
    """
    recipe, method = translator.recipe, translator.method
    palette = resolve_palette(recipe.data.palette, registry, where=f"{recipe.source}, [data], key 'palette'")
    spec = describe_inputs(method, channels=recipe.data.in_channels, palette=palette)
    geometry = translator.geometry
    tile = geometry.padded(max(1, limits.tile // geometry.scale))  # in input pixels
    return ServedModel(name, translator, spec, source=source, tile=tile, rng_lock=rng_lock or threading.Lock())


def load_models(
    paths: Sequence[Path],
    *,
    registry: Registry,
    device: str = "auto",
    use_ema: bool = True,
    limits: Limits = Limits(),
    on_load: Callable[[ServedModel], None] | None = None,
) -> list[ServedModel]:
    """Load every run folder or checkpoint once, at start, so a broken one fails before serving.

    Raises:
        CheckpointError: a path holds no loadable checkpoint (see `Translator.from_checkpoint`).
    """
    rng_lock = threading.Lock()
    models = []
    for name, path in zip(model_names(paths), paths):
        translator = Translator.from_checkpoint(Path(path), device=device, registry=registry, use_ema=use_ema)
        model = served_model(name, translator, registry, limits=limits, source=Path(path), rng_lock=rng_lock)
        models.append(model)
        if on_load is not None:
            on_load(model)
    return models
