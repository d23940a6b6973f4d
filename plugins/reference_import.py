"""Import checkpoints of the reference pix2pix/CycleGAN code (`tkit convert`).

The reference PyTorch implementation (junyanz/pytorch-CycleGAN-and-pix2pix, `models/networks.py`)
saves each network as a bare state dict, `<epoch>_net_G.pth` and `<epoch>_net_D.pth` for pix2pix,
`<epoch>_net_G_A.pth`, `_G_B`, `_D_A`, `_D_B` for CycleGAN. This plugin reads such files and writes
one ordinary translate-kit checkpoint (recipe + weights) that `tkit translate`, `tkit eval` and
`translate_kit.inference.Translator.from_checkpoint` take unchanged. How a file's architecture is
read from its keys, and how its keys map onto translate-kit's networks, is `reference_layouts`.

Other single-file layouts come from plugins, as components of the kind "weight_format": a factory
registered with `@register("weight_format")` returns a `WeightFormat`, which says whether it
recognises a loaded file and turns it into recipe tables and state dicts (`ImportedWeights`).
`tkit convert` asks every registered format about a SOURCE file before reading it as a reference
pix2pix/CycleGAN network; the format that recognises it is used, and `import_weights` builds and
checks the checkpoint, as `convert` does for the reference networks. translate-kit's own formats
(ESRGAN's and BasicSR / Real-ESRGAN's super-resolution networks) are in `sr_import`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Protocol, cast

import typer
from translate_kit_plugins.reference_layouts import (
    DetectedNet,
    NormName,
    check_channels,
    check_norm,
    detect,
    detect_file,
    dropout_for,
    find_reference_files,
    load_reference_state_dict,
    remap_state_dict,
    same_architecture,
)

from translate_kit.api import (
    CheckpointError,
    PluginError,
    Recipe,
    Registry,
    TranslateKitError,
    atomic_save,
    build_method,
    checkpoint_dict,
    cli_command,
    get_plugin_manager,
    hookimpl,
    load_recipe,
    session,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "Conversion",
    "ImportedWeights",
    "RecognisedWeights",
    "WeightConversion",
    "WeightFormat",
    "convert",
    "import_weights",
    "recognise_weights",
    "save_conversion",
    "translate_kit_add_commands",
]


@dataclass
class Conversion:
    """The result of `convert`: a checkpoint ready to save, and what was found on the way.

    Attributes:
        checkpoint: the translate-kit checkpoint dict (`save_conversion` writes it).
        recipe: the validated recipe stored in it.
        method: "pix2pix" or "cyclegan".
        converted: translate-kit network name ("G", "D", "G_A", ...) -> what was detected in its file.
        fresh: networks no file was given for; they keep their fresh initialisation.
        notes: choices the weights could not tell (dropout, the identity loss), in words.
    """

    checkpoint: dict[str, Any]
    recipe: Recipe
    method: str
    converted: dict[str, DetectedNet]
    fresh: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)




def convert(
    generator: Path,
    *,
    discriminator: Path | None = None,
    generator_b: Path | None = None,
    discriminator_b: Path | None = None,
    norm: NormName | None = None,
    dropout: bool | None = None,
    data_root: str = "data",
    direction: Literal["AtoB", "BtoA"] = "AtoB",
    run_name: str = "converted",
    converted_from: Path | None = None,
    registry: Registry | None = None,
) -> Conversion:
    """Convert reference state dicts into a translate-kit checkpoint (not yet written).

    With `generator` alone (plus an optional `discriminator`) the method is pix2pix; with
    `generator_b` too it is CycleGAN (`generator` is G_A, A -> B; `discriminator` is D_A, which
    judges B images; `discriminator_b` is D_B). Networks without a file keep their fresh
    initialisation and are listed in `Conversion.fresh`.

    Args:
        generator: the reference G (or G_A) file.
        discriminator: the reference D (or D_A) file.
        generator_b: CycleGAN's G_B file.
        discriminator_b: CycleGAN's D_B file.
        norm: insist on this norm; None reads it from the weights.
        dropout: generator dropout; None reads it from the weights (ResNet) or takes the
            reference's default for the method (U-Net: pix2pix on, CycleGAN off).
        data_root: `data.root` of the recipe (used by `tkit eval` and for training).
        direction: `data.direction` of the recipe (the reference's `--direction`).
        run_name: `run.name` of the recipe.
        converted_from: recorded as the checkpoint's "converted_from" (default: `generator`).
        registry: the components to build with (default: all installed plugins).

    Raises:
        CheckpointError: a file is unreadable, of an unknown layout, of the wrong kind, or the
            networks do not fit together (channels, architectures).
    """
    import torch

    if registry is None:
        registry = Registry.from_plugin_manager(get_plugin_manager())
    cyclegan = generator_b is not None
    method = "cyclegan" if cyclegan else "pix2pix"
    if discriminator_b is not None and not cyclegan:
        raise CheckpointError("--D-B is CycleGAN's second discriminator; it needs --G-B (and SOURCE as G_A) as well.")
    files: dict[str, Path | None] = (
        {"G_A": generator, "G_B": generator_b, "D_A": discriminator, "D_B": discriminator_b}
        if cyclegan else {"G": generator, "D": discriminator}
    )
    found: dict[str, tuple[dict[str, torch.Tensor], DetectedNet]] = {}
    for role, path in files.items():
        result = detect_file(path, "generator" if role.startswith("G") else "discriminator", role)
        if result is not None:
            found[role] = result
    for _, detected in found.values():
        check_norm(detected, norm)

    notes: list[str] = []
    g = found["G_A" if cyclegan else "G"][1]
    check_channels(g, g.in_channels, "input")
    check_channels(g, g.out_channels, "output")
    c_in, c_out = g.in_channels, g.out_channels
    if cyclegan:
        g_b = found["G_B"][1]
        same_architecture(g, g_b, "generator")
        if (g_b.in_channels, g_b.out_channels) != (c_out, c_in):
            raise CheckpointError(
                f"G_B ({g_b.source}) maps {g_b.in_channels} -> {g_b.out_channels} channels, but G_A ({g.source}) maps "
                f"{c_in} -> {c_out}; G_B must map B back to A ({c_out} -> {c_in}). Are the files swapped or from two "
                "runs?"
            )
    # Which D sees how many channels: pix2pix's D the (input, output) pair; CycleGAN's D_A B images, D_B A images.
    d_inputs = {"D_A": c_out, "D_B": c_in} if cyclegan else {"D": c_in + c_out}
    for role, channels in d_inputs.items():
        if role in found and found[role][1].in_channels != channels:
            d = found[role][1]
            seen = "the input beside the output" if role == "D" else f"{'B' if role == 'D_A' else 'A'} images"
            raise CheckpointError(
                f"{role} ({d.source}) takes {d.in_channels} channels, but it must judge {seen} of the generator "
                f"{g.source} ({channels} channels). Is it from another run?"
            )
    ds = [found[r][1] for r in d_inputs if r in found]
    if len(ds) == 2:
        same_architecture(ds[0], ds[1], "discriminator")

    g_dropout = dropout_for(g, dropout, method, notes)
    if ds:
        d_table = ds[0].table()
    else:  # the reference's default --netD basic with --ndf 64, sharing the generator's --norm
        d_table = {"name": "patchgan", "n_layers": 3, "ndf": 64, "norm": norm or g.norm}
    method_table: dict[str, Any]
    if cyclegan:
        method_table = {"name": "cyclegan", "lambda_a": 10.0, "lambda_b": 10.0, "lambda_identity": 0.5,
                        "pool_size": 50, "gan_mode": "lsgan"}
        if c_in != c_out:
            method_table["lambda_identity"] = 0.0
            notes.append(f"The identity loss is off (lambda_identity 0): A has {c_in} channels and B {c_out}.")
    else:
        method_table = {"name": "pix2pix", "lambda_l1": 100.0, "gan_mode": "vanilla"}
    recipe_dict = {
        "run": {"name": run_name, "seed": 0},
        "data": {"dataset": "unaligned" if cyclegan else "aligned", "root": data_root,
                 **({} if cyclegan else {"direction": direction}), "in_channels": c_in, "out_channels": c_out},
        "method": method_table,
        "generator": g.table(dropout=g_dropout),
        "discriminator": d_table,
    }
    if cyclegan and direction == "BtoA":
        # The unaligned dataset has no direction; swapping the domains is the user's job.
        notes.append("--direction is ignored for CycleGAN: G_A maps A to B; swap SOURCE and --G-B to go the other way.")
    try:
        recipe = load_recipe(recipe_dict, registry=registry)
        recipe = dataclasses.replace(recipe, source=f"the recipe converted from {converted_from or generator}")
        # Networks without a file keep a fresh initialisation; seed it so a conversion is repeatable,
        # without touching the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            built = build_method(recipe, registry)
    except TranslateKitError as exc:
        raise CheckpointError(f"The networks read from {converted_from or generator} do not build: {exc}") from None

    converted: dict[str, DetectedNet] = {}
    for role, (state, detected) in found.items():
        net = built.nets[role]
        net.load_state_dict(remap_state_dict(state, net, detected), strict=True)
        converted[role] = detected
    fresh = [name for name in built.nets if name not in converted]
    checkpoint = checkpoint_dict(
        recipe.to_dict(),
        {name: net.state_dict() for name, net in built.nets.items()},
        method_state=built.extra_state(),
        state={"epoch": 0, "epoch_step": 0, "step": 0, "nonfinite_total": 0, "nonfinite_in_row": 0},
        training={"converted_from": str(converted_from or generator)},
    )
    return Conversion(checkpoint, recipe, method, converted, fresh, notes)


# ------------------------------------------------------------------------------------------------
# Other weight formats (components of the kind "weight_format")


@dataclass(frozen=True)
class ImportedWeights:
    """What a `WeightFormat` read from a file: a recipe and the weights of the networks it builds.

    Attributes:
        recipe: the complete recipe tables (run, data, method, component tables), as a TOML file
            would give them; `import_weights` validates them and builds the method.
        nets: network name (the method's, e.g. "G") -> state dict in that network's own keys;
            every key must fit (`load_state_dict(strict=True)`). Networks left out keep a fresh,
            seeded initialisation and are reported as such.
        described: network name -> one line on what was read, e.g. "RRDBNet x4, nf 64, 23 blocks".
        notes: what the weights could not tell or what was chosen among several, in words.
    """

    recipe: dict[str, Any]
    nets: dict[str, dict[str, torch.Tensor]]
    described: dict[str, str]
    notes: tuple[str, ...] = ()


class WeightFormat(Protocol):
    """A single-file weight layout that `tkit convert` reads: what a "weight_format" factory returns.

    A plugin registers a factory without options, e.g.
    `@register("weight_format") def my_format() -> MyFormat: return MyFormat()`; its name is
    the format's name in messages.

    Attributes:
        summary: one phrase naming the files and their marker keys, for the message about a file no
            format recognises, e.g. "ESRGAN's RRDBNet files (keys model.0.weight, model.1.sub.N...)".
    """

    summary: str

    def recognises(self, weights: Mapping[str, Any]) -> bool:
        """Whether the loaded file claims to be of this format (its marker keys). Cheap; never raises.

        Recognise liberally: a file that claims the format but does not fit it should reach
        `convert`, whose error names what is wrong, rather than fall through to other layouts.
        """
        ...

    def convert(self, weights: Mapping[str, Any], *, source: Path, data_root: str, run_name: str) -> ImportedWeights:
        """Read the architecture from `weights` and rename them onto translate-kit's networks.

        Args:
            weights: the object `torch.load(source, weights_only=True)` returned.
            source: the file, for messages.
            data_root: `data.root` of the recipe.
            run_name: `run.name` of the recipe.

        Raises:
            CheckpointError: the file claims the format but does not fit it; the message names
                `source`, what was found and what is expected.
        """
        ...


@dataclass(frozen=True)
class RecognisedWeights:
    """A loaded file and the one weight format that recognises it (`recognise_weights`)."""

    source: Path
    format_name: str
    format: WeightFormat
    weights: Mapping[str, Any]


@dataclass
class WeightConversion:
    """The result of `import_weights`: a checkpoint ready to save (`save_conversion`), and what was read.

    Attributes:
        checkpoint: the translate-kit checkpoint dict.
        recipe: the validated recipe stored in it.
        format_name: the weight format that read the file.
        imported: what the format returned.
        fresh: networks of the method the file holds no weights for.
    """

    checkpoint: dict[str, Any]
    recipe: Recipe
    format_name: str
    imported: ImportedWeights
    fresh: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.recipe.components["method"]["name"])


def _weight_formats(registry: Registry) -> dict[str, WeightFormat]:
    return {name: registry.create("weight_format", name) for name in registry.names("weight_format")}


def _read_weights(path: Path) -> Mapping[str, Any] | None:
    """The file as `torch.load(weights_only=True)` gives it, or None when that is not a dict of a
    foreign format (unreadable, not a dict, a translate-kit checkpoint): the reference path reads
    the file again and says what is wrong with it."""
    import torch

    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for corrupt or foreign files
        return None
    if not isinstance(weights, Mapping) or weights.get("format") == "translate-kit/checkpoint":
        return None
    return weights


def recognise_weights(source: Path, registry: Registry) -> RecognisedWeights | None:
    """Load `source` and find the registered weight format that recognises it.

    Returns:
        The file and its format, or None when no format recognises it (or it cannot be loaded as
        a dict): then it is read as a reference pix2pix/CycleGAN network.

    Raises:
        CheckpointError: two formats recognise the file (two plugins claim the same layout).
    """
    formats = _weight_formats(registry)
    if not formats or not Path(source).is_file():
        return None
    weights = _read_weights(Path(source))
    if weights is None:
        return None
    matches = [name for name, fmt in formats.items() if fmt.recognises(weights)]
    if len(matches) > 1:
        plugins = ", ".join(f"{name!r} (plugin {registry.get('weight_format', name).plugin!r})" for name in matches)
        raise CheckpointError(
            f"{source} is recognised by several weight formats: {plugins}; each claims its keys, so which one "
            "reads it is ambiguous. Disable one plugin with TRANSLATE_KIT_DISABLE_PLUGINS=<name>."
        )
    if not matches:
        return None
    return RecognisedWeights(Path(source), matches[0], formats[matches[0]], weights)


def _no_format_fits(source: Path, registry: Registry) -> str:
    """The sentence added to a reference-path error about a file no layout at all recognises."""
    formats = _weight_formats(registry)
    if not formats or _read_weights(source) is None:  # unreadable: the error says so, the formats are beside the point
        return ""
    try:
        detect(load_reference_state_dict(source), source)
    except CheckpointError:  # not a reference network either: name the other formats too
        summaries = "; ".join(f"{name}: {fmt.summary}" for name, fmt in formats.items())
        return f" Nor is it in one of the other weight formats tkit convert reads ({summaries})."
    return ""


def import_weights(
    recognised: RecognisedWeights,
    *,
    data_root: str = "data",
    run_name: str = "converted",
    registry: Registry | None = None,
) -> WeightConversion:
    """Convert a recognised weight file into a translate-kit checkpoint (not yet written).

    The format reads the architecture and renames the weights; this builds the recipe's method
    (seeded, so networks without weights are repeatable), loads the weights strictly and makes
    the checkpoint, so every format's result is checked the same way.

    Args:
        recognised: the file and its format (`recognise_weights`).
        data_root: `data.root` of the recipe.
        run_name: `run.name` of the recipe.
        registry: the components to build with (default: all installed plugins).

    Raises:
        CheckpointError: the file does not fit its format, or its network does not build.
        PluginError: the format returned weights that do not fit the network its own recipe builds.
    """
    import torch

    if registry is None:
        registry = Registry.from_plugin_manager(get_plugin_manager())
    source, name = recognised.source, recognised.format_name
    imported = recognised.format.convert(recognised.weights, source=source, data_root=data_root, run_name=run_name)
    try:
        recipe = load_recipe(imported.recipe, registry=registry)
        recipe = dataclasses.replace(recipe, source=f"the recipe converted from {source}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.run.seed)
            built = build_method(recipe, registry)
    except TranslateKitError as exc:
        raise CheckpointError(f"The network read from {source} (weight format {name}) does not build: {exc}") from None
    for net_name, state in imported.nets.items():
        if net_name not in built.nets:
            raise PluginError(
                f"Weight format {name!r} gave weights for network {net_name!r}, but method "
                f"{recipe.components['method']['name']!r} has only {', '.join(built.nets)}."
            )
        try:
            built.nets[net_name].load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:400]
            raise PluginError(
                f"Weight format {name!r} read {source} but its weights for {net_name} do not fit the network its "
                f"own recipe builds: {first}"
            ) from None
    checkpoint = checkpoint_dict(
        recipe.to_dict(),
        {net_name: net.state_dict() for net_name, net in built.nets.items()},
        method_state=built.extra_state(),
        state={"epoch": 0, "epoch_step": 0, "step": 0, "nonfinite_total": 0, "nonfinite_in_row": 0},
        training={"converted_from": str(source)},
    )
    fresh = [net_name for net_name in built.nets if net_name not in imported.nets]
    return WeightConversion(checkpoint, recipe, name, imported, fresh)


def save_conversion(conversion: Conversion | WeightConversion, output: Path, *, overwrite: bool = False) -> Path:
    """Write the converted checkpoint atomically; refuse to replace a file unless `overwrite`."""
    output = Path(output)
    if output.is_dir():
        raise CheckpointError(
            f"{output} is a folder; OUTPUT names the checkpoint file to write, e.g. {output / 'converted.pt'}."
        )
    if output.exists() and not overwrite:
        raise CheckpointError(f"{output} exists; pass --overwrite to replace it, or choose another OUTPUT.")
    atomic_save(conversion.checkpoint, output)
    return output


# ------------------------------------------------------------------------------------------------
# The command


class _Norm(str, Enum):
    auto = "auto"
    batch = "batch"
    instance = "instance"
    none = "none"


class _Direction(str, Enum):
    AtoB = "AtoB"
    BtoA = "BtoA"


def _run_name(output: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", output.stem).strip("._")
    return stem or "converted"


@cli_command
def convert_command(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="A reference generator file (latest_net_G.pth; latest_net_G_A.pth with --G-B), a reference "
            "checkpoint folder (checkpoints/NAME) holding <epoch>_net_G.pth [+ _D], or _G_A, _G_B [+ _D_A, _D_B]; "
            "or one weight file of another format a plugin reads (kind weight_format in tkit plugins list), such "
            "as ESRGAN's RRDB_ESRGAN_x4.pth or BasicSR / Real-ESRGAN's RealESRGAN_x4plus.pth.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(help="The translate-kit checkpoint file to write, e.g. converted/facades.pt.",
                       show_default=False),
    ],
    d: Annotated[
        Optional[Path],
        typer.Option("--D", "--D-A", help="pix2pix/CycleGAN: the reference discriminator (pix2pix's D, CycleGAN's "
                     "D_A).",
                     show_default=False),
    ] = None,
    g_b: Annotated[
        Optional[Path],
        typer.Option("--G-B", help="CycleGAN: G_B (B -> A); with it SOURCE is G_A and the method is cyclegan.",
                     show_default=False),
    ] = None,
    d_b: Annotated[
        Optional[Path], typer.Option("--D-B", help="CycleGAN: D_B (judges A images).", show_default=False)
    ] = None,
    epoch: Annotated[str, typer.Option(help="pix2pix/CycleGAN, with a folder SOURCE: convert <EPOCH>_net_*.pth.")
    ] = "latest",
    norm: Annotated[
        _Norm,
        typer.Option(help="pix2pix/CycleGAN: auto reads the norm from the weights (always possible); otherwise a "
                     "check: fail unless the weights are of this norm."),
    ] = _Norm.auto,
    dropout: Annotated[
        Optional[bool],
        typer.Option("--dropout/--no-dropout", help="pix2pix/CycleGAN: generator dropout. Default: read from ResNet "
                     "weights; for a U-Net the reference's default (pix2pix on, CycleGAN off).", show_default=False),
    ] = None,
    data_root: Annotated[
        str, typer.Option(help="data.root of the written recipe (for tkit eval or training); a relative path is "
                          "stored absolute, as training stores it, so the model evaluates from any directory.")
    ] = "data",
    direction: Annotated[
        _Direction, typer.Option(help="pix2pix: data.direction of the written recipe (the reference's --direction).")
    ] = _Direction.AtoB,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Convert reference pix2pix/CycleGAN checkpoints (*_net_G.pth ...), or a weight file of another format
    (ESRGAN, BasicSR / Real-ESRGAN super-resolution networks), into a translate-kit checkpoint.

    The architecture is read from the weights; the result works with tkit translate and tkit eval.
    """
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    data_root = os.path.abspath(os.path.expanduser(data_root))  # as a run keeps it (see absolute_data_root)
    g_a = source
    if source.is_dir():
        found = find_reference_files(source, epoch)
        g_a = found.get("G", found.get("G_A", source))
        d = d or found.get("D", found.get("D_A"))
        g_b = g_b or found.get("G_B")
        d_b = d_b or found.get("D_B")
    if output.exists() and not overwrite:  # before the work, so a typo costs nothing
        raise CheckpointError(f"{output} exists; pass --overwrite to replace it, or choose another OUTPUT.")
    registry = session(ctx).registry
    recognised = None if source.is_dir() else recognise_weights(source, registry)
    if recognised is not None:
        given = {"--D": d is not None, "--G-B": g_b is not None, "--D-B": d_b is not None,
                 "--epoch": epoch != "latest", "--norm": norm is not _Norm.auto, "--dropout": dropout is not None,
                 "--direction": direction is not _Direction.AtoB}
        refused = [option for option, used in given.items() if used]
        if refused:
            raise CheckpointError(
                f"{source} is a file of weight format {recognised.format_name} ({recognised.format.summary}); "
                f"{'option' if len(refused) == 1 else 'options'} {', '.join(refused)} "
                f"{'is' if len(refused) == 1 else 'are'} for reference pix2pix/CycleGAN checkpoints only. Leave "
                f"{'it' if len(refused) == 1 else 'them'} out."
            )
        imported = import_weights(recognised, data_root=data_root, run_name=_run_name(output), registry=registry)
        save_conversion(imported, output, overwrite=overwrite)
        console.print(f"Converted to [bold]{escape(str(output))}[/] (method {imported.method}, step 0; weight "
                      f"format {imported.format_name}):")
        for name, line in imported.imported.described.items():
            console.print(f"  {name:<4} <- {escape(str(source))}: {escape(line)}")
        for name in imported.fresh:
            console.print(f"  {name:<4} not in the file: freshly initialised; train it before relying on it.")
        for note in imported.imported.notes:
            console.print(f"  [yellow]Note:[/] {escape(note)}")
        console.print(f"Translate with: tkit translate {escape(str(output))} IMAGES --out DIR")
        return
    try:
        conversion = convert(
            g_a, discriminator=d, generator_b=g_b, discriminator_b=d_b,
            norm=None if norm is _Norm.auto else cast(NormName, norm.value), dropout=dropout, data_root=data_root,
            direction=cast(Literal["AtoB", "BtoA"], direction.value), run_name=_run_name(output),
            converted_from=source, registry=registry,
        )
    except CheckpointError as exc:
        hint = _no_format_fits(source, registry) if source.is_file() else ""
        if not hint:
            raise
        raise CheckpointError(f"{exc}{hint}") from None
    save_conversion(conversion, output, overwrite=overwrite)

    console.print(f"Converted to [bold]{escape(str(output))}[/] (method {conversion.method}, step 0):")
    for name, detected in conversion.converted.items():
        console.print(f"  {name:<4} <- {escape(str(detected.source))}: {escape(detected.describe())}")
    for name in conversion.fresh:
        table = conversion.recipe.components["generator" if name.startswith("G") else "discriminator"]
        options = ", ".join(f"{k} {v}" for k, v in table.items() if k != "name")
        console.print(
            f"  {name:<4} not given: freshly initialised {table['name']} ({escape(options)}); train it before "
            "relying on it."
        )
    for note in conversion.notes:
        console.print(f"  [yellow]Note:[/] {escape(note)}")
    console.print(f"Translate with: tkit translate {escape(str(output))} IMAGES --out DIR")


@hookimpl
def translate_kit_add_commands(app: typer.Typer) -> None:
    """Add `tkit convert`."""
    app.command(name="convert")(convert_command)
