"""Export a trained model for deployment: safetensors weights, or an ONNX graph.

A training checkpoint holds everything needed to continue a run: all networks (discriminators
too), optimiser states, random states. Deployment needs only the networks `translate` runs (the
method's networks with the role "translate") and the recipe that rebuilds them:

- `format="safetensors"` writes `NAME.safetensors` (tensors only, no pickle; keys `"<net>.<key>"`)
  and beside it `NAME.safetensors.json` (format marker, resolved recipe, network names, step);
  the format itself lives in `translate_kit.train.checkpoint` with the checkpoint format.
  `tkit translate` and `Translator.from_checkpoint` accept either file, or the folder holding
  `model.safetensors` and its JSON.
- `format="onnx"` writes `NAME.onnx`, the eval-mode translation (dropout off, batch norm with its
  running statistics) of float32 `(B, C_in, H, W)` images in [-1, 1] to `(B, C_out, s H, s W)` in
  [-1, 1] (`s` the method's scale), with dynamic batch, height and width (multiples of the
  method's `size_multiple`), and `NAME.onnx.json` beside it so a deployment knows channels, value
  range, size multiple and scale. pix2pix's paper-mode test time (dropout on, per-image batch
  statistics) is not exported: an ONNX graph is a fixed function.

Both hold the moving averages of the weights when the run kept them (`train.ema_decay`), unless
`use_ema=False` (`tkit export --no-ema`).

    paths = export_model(Path("runs/facades"), Path("out/model.safetensors"), fmt="safetensors")
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from translate_kit.errors import ExportError
from translate_kit.train.checkpoint import description_path, export_description, write_description, write_export

__all__ = ["export_model"]

Format = Literal["safetensors", "onnx"]


def _describe(translator: Any, fmt: str, source: Path) -> dict[str, Any]:
    """The JSON written beside an export: enough to rebuild, feed and read the model."""
    return export_description(
        translator.recipe.to_dict(),
        list(translator.method.translate_nets),
        fmt,
        source=str(source),
        step=translator.step,
        averaged_weights=translator.averaged,
        input={
            "channels": translator.in_channels,
            "range": [-1.0, 1.0],
            "layout": "NCHW float32",
            "size_multiple": translator.size_multiple,
            "min_size": translator.min_size,
        },
        output={"scale": translator.scale, "range": [-1.0, 1.0]},
    )


def export_model(
    checkpoint: Path,
    output: Path,
    *,
    fmt: Format = "safetensors",
    registry: Any | None = None,
    opset: int | None = None,
    dynamic: bool = True,
    example_size: int | None = None,
    use_ema: bool = True,
) -> list[Path]:
    """Export the inference networks of `checkpoint` (a file or run folder) to `output`.

    Args:
        checkpoint: a training checkpoint, a run folder, or an earlier export.
        output: the weights file to write (`.safetensors` or `.onnx`); the JSON description goes
            beside it, named `<output>.json` (`description_path`).
        fmt: "safetensors" or "onnx".
        registry: the components to rebuild the networks from (default: installed plugins).
        opset: ONNX opset (default: the exporter's).
        dynamic: ONNX: dynamic batch, height and width; False fixes the example's shape.
        example_size: ONNX: side of the square example image traced (default: the recipe's
            crop, (height, width) as `data.crop_hw`, over the scale, each side rounded up to the
            size multiple).
        use_ema: export the moving averages of the weights when the checkpoint has them.

    Returns:
        The files written: the weights (or graph) and the JSON description.

    Raises:
        CheckpointError: the checkpoint does not load or rebuild.
        ExportError: ONNX export without the `onnx`/`onnxscript` packages, or a network the
            exporter cannot trace.
    """
    from translate_kit.inference import Translator

    translator = Translator.from_checkpoint(checkpoint, device="cpu", mode="eval", registry=registry, use_ema=use_ema)
    output = Path(output)
    expected = ".safetensors" if fmt == "safetensors" else ".onnx"
    if output.suffix != expected:
        raise ExportError(f"Output {output} should end in {expected} for --format {fmt}.")
    if fmt not in ("safetensors", "onnx"):
        raise ExportError(f"Unknown export format {fmt!r}; use safetensors or onnx.")
    description = _describe(translator, fmt, translator.checkpoint or Path(checkpoint))
    written = [output, description_path(output)]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "safetensors":
            nets = {name: translator.method.nets[name].state_dict() for name in translator.method.translate_nets}
            write_export(nets, output, description)
        else:
            shape = _save_onnx(translator, output, opset=opset, dynamic=dynamic, example_size=example_size)
            if shape is not None:
                description["input"]["shape"] = shape  # a static graph takes this shape only
            write_description(description, written[1])
    except OSError as exc:
        for path in written:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
        raise ExportError(f"Cannot write {output}: {exc.strerror or exc}. Choose another --out.") from None
    return written


class _EvalTranslation(nn.Module):
    """`method.translate` as a module, for tracing."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.translate(images)


def _save_onnx(
    translator: Any, output: Path, *, opset: int | None, dynamic: bool, example_size: int | None
) -> list[int] | None:
    """Trace and write the graph; return the fixed input shape of a static export (None: dynamic)."""
    try:
        import onnx  # noqa: F401  (the exporter needs both; fail here with our message, not deep inside)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the optional packages onnx and onnxscript ({exc.name} is missing); install them "
            "with `pip install 'translate-kit[onnx]'`."
        ) from None
    multiple, channels = translator.size_multiple, translator.in_channels
    # The training crop's (height, width) at the input's scale, or a square of example_size.
    crop = (example_size, example_size) if example_size else translator.recipe.data.crop_hw
    sides = [-(-max(length // (1 if example_size else translator.scale), translator.min_size, 1) // multiple) * multiple
             for length in crop]
    batch = 1
    if dynamic:
        # Batch 2 and two multiples: torch.export specialises dimensions of size 1 to constants.
        sides, batch = [max(side, 2 * multiple) for side in sides], 2
    example = torch.zeros(batch, channels, *sides)
    module = _EvalTranslation(translator.method).eval()
    shapes = None
    if dynamic:
        from torch.export import Dim

        # Height and width as multiples of the generator's stride product: the exporter then
        # knows every reshape inside the network divides evenly.
        height = multiple * Dim("height_blocks", min=1, max=1 << 14)
        width = multiple * Dim("width_blocks", min=1, max=1 << 14)
        shapes = {"images": {0: Dim("batch", min=1, max=1 << 16), 2: height, 3: width}}
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=["images"],
                output_names=["translated"],
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; name the model and the way out
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " Try --static to export a fixed input size." if dynamic else ""
        raise ExportError(f"The ONNX exporter could not trace this model ({type(exc).__name__}: {first}).{hint}") from None
    program.save(str(tmp))  # disk errors surface as OSError: export_model reports them as such
    tmp.replace(output)
    return None if dynamic else list(example.shape)
