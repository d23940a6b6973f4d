"""Recipes: TOML files that select components and settings, loaded into typed, validated configs.

A recipe has three core tables, `[run]`, `[data]` and `[train]`, which map onto the frozen
dataclasses below, a `[method]` table, and one table per component the method builds
(`[generator]`, `[discriminator]`, or whatever tables the method's registration declares: an
`[encoder]`, a second discriminator), whose `name` selects a registered factory and whose other
keys are that factory's keyword arguments. `[data]` mixes both: its `dataset` key names a dataset
component, and keys that are not `DataConfig` fields go to that dataset's factory (`root`,
`direction`, ...). `[train.optimizers.<group>]` sub-tables give one optimiser group its own
settings (`OptimizerSettings`).

Everything is checked at load time, so a typo fails before any data is read:

    recipe = load_recipe("recipes/pix2pix_facades.toml", ["train.epochs=5"], registry=registry)

Overrides (`--set table.key=value`, or a dotted path into a sub-table:
`--set train.optimizers.D.lr=4e-4`) are parsed as TOML values (`5`, `2e-4`, `true`, `[0.5, 0.9]`,
`"text"`), with a bare word taken as a string, and checked like the file's values. There is no
inheritance and no interpolation: a new recipe is a copied file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from translate_kit.errors import RecipeError, did_you_mean
from translate_kit.validation import coerce, describe

if TYPE_CHECKING:
    from translate_kit.registry import Registry

__all__ = [
    "CORE_TABLES",
    "DataConfig",
    "OptimizerSettings",
    "Recipe",
    "RunConfig",
    "TrainConfig",
    "dump_toml",
    "load_recipe",
    "parse_override",
    "size_hw",
]

# A side for square images, or (height, width): what data.load_size and data.crop_size hold.
ImageSize = int | tuple[int, int]


def size_hw(size: ImageSize | Sequence[int]) -> tuple[int, int]:
    """`data.load_size` / `data.crop_size` as `(height, width)`: an int is a square's side.

    Example:
        >>> size_hw(256), size_hw((256, 512)), size_hw([32, 64])
        ((256, 256), (256, 512), (32, 64))
    """
    if isinstance(size, bool):
        raise TypeError(f"Expected an int or (height, width), got {size!r}")
    if isinstance(size, int):
        return size, size
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in size
    ):
        return int(size[0]), int(size[1])
    raise TypeError(f"Expected an int or (height, width), got {size!r}")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """[run]: naming, placement and seeding of a run."""

    name: str = "run"  # the run folder is <dir>/<name>
    dir: str = "runs"  # where run folders go, relative to the working directory
    seed: int = 0  # seeds Python's and torch's generators; data order and jitter follow from it


@dataclass(frozen=True, slots=True)
class DataConfig:
    """[data]: which dataset, and how images are prepared. Other keys go to the dataset factory."""

    dataset: str = "aligned"  # registry name of the dataset component
    # Images are resized once, when first decoded, to load_size: an int for a square, or
    # [height, width] (SPADE's Cityscapes: [256, 512]); 0 keeps each image's stored size
    # (super-resolution crops patches of images of any size on the device).
    load_size: ImageSize = 286
    # Then randomly cropped on the device to crop_size, an int or [height, width] no larger than
    # load_size (the paper's jitter: 286 -> 256); equal to load_size: no crop. Evaluation and
    # `tkit translate` resize test images to it. Read both through `load_hw` and `crop_hw`.
    crop_size: ImageSize = 256
    flip: bool = True  # random horizontal flip, the same for input and target
    in_channels: int = 3  # input images are converted to this many channels (1 or 3)
    out_channels: int = 3  # target images likewise
    # Keep decoded, resized uint8 images in memory after the first read. "device": decode them all
    # once into one uint8 tensor per key on the training device (a GPU's memory), batches indexed
    # there with no DataLoader (falls back to pinned host memory, said once, when it does not fit).
    cache: bool | Literal["device"] = True
    num_workers: int = 0  # DataLoader worker processes when cache is off
    # An unreadable image (corrupt, truncated, empty, no partner): "fail" stops with its name;
    # "skip" reads every item once before training, drops the bad ones and reports them.
    on_error: Literal["fail", "skip"] = "fail"
    # The input's palette when inputs are label maps (a registered palette, e.g. "facades"): what
    # `tkit serve` offers to paint with. "": inputs are ordinary images.
    palette: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # the dataset factory's keyword arguments

    @property
    def load_hw(self) -> tuple[int, int]:
        """`load_size` as (height, width); (0, 0) keeps stored sizes."""
        return size_hw(self.load_size)

    @property
    def crop_hw(self) -> tuple[int, int]:
        """`crop_size` as (height, width), the one form code should read.

        Example:
            >>> DataConfig(load_size=[256, 512], crop_size=[256, 512]).crop_hw
            (256, 512)
            >>> DataConfig().crop_hw
            (256, 256)
        """
        return size_hw(self.crop_size)

    @property
    def square_crop(self) -> bool:
        """Whether crops are square (`crop_size` an int, or [s, s])."""
        height, width = self.crop_hw
        return height == width


@dataclass(frozen=True, slots=True)
class OptimizerSettings:
    """[train.optimizers.<group>]: one optimiser group's own settings; a key left out falls back to
    the method's default for the group (`Method.optimizer_defaults`), then to [train]."""

    # adam (default), adamw (decoupled weight decay) or rmsprop (DualGAN's and WGAN's critics)
    optimizer: Literal["adam", "adamw", "rmsprop"] | None = None
    lr: float | None = None  # default: train.lr
    betas: tuple[float, float] | None = None  # default: train.betas (Adam and AdamW only)
    weight_decay: float | None = None  # default: 0
    alpha: float | None = None  # rmsprop's smoothing constant of the squared gradients; default 0.99 (torch's)

    def over(self, base: OptimizerSettings) -> OptimizerSettings:
        """These settings, with `base`'s where these leave a key unset."""
        return OptimizerSettings(**{
            f.name: getattr(base, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in dataclasses.fields(self)
        })


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """[train]: optimisation, schedule, precision and bookkeeping."""

    epochs: int = 100  # epochs at the initial learning rate (pix2pix: 100)
    decay_epochs: int = 100  # then epochs of linear decay towards 0 (pix2pix: 100)
    batch_size: int = 1  # pix2pix: 1
    lr: float = 2e-4  # Adam learning rate of every optimiser group (pix2pix: 2e-4)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (pix2pix: 0.5, 0.999)
    # Per optimiser group (the method's names, e.g. G and D): [train.optimizers.D] lr = 4e-4.
    optimizers: Mapping[str, OptimizerSettings] = field(default_factory=dict)
    # The learning-rate schedule over the epochs: "linear" (pix2pix's: constant for `epochs`, then
    # linear decay over `decay_epochs`), "cosine" (constant for `epochs`, then half a cosine to 0
    # over `decay_epochs`), or "step" (multiplied by `gamma` at each epoch in `milestones`).
    schedule: Literal["linear", "cosine", "step"] = "linear"
    milestones: tuple[int, ...] = ()  # "step": epochs at which the rate is multiplied by gamma
    gamma: float = 0.5  # "step": the factor
    # Exponential moving average of the translate networks' weights, updated after every step
    # (BasicSR and others use 0.999); samples, translate, eval and export use it. 0: off.
    ema_decay: float = 0.0
    max_steps: int = 0  # stop after this many optimisation steps in total; 0: run all epochs
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 (or fp16) on CUDA, fp32 elsewhere
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # auto: channels_last on CUDA
    compile: bool = False  # torch.compile the networks
    # Capture the whole optimisation step as one CUDA graph and replay it (docs/benchmarks.md): "auto"
    # does where it can (CUDA, a method with a static step, fused Adam, no fp16 scaler, one process)
    # and says in one line why not where it cannot; "off" never does.
    cuda_graphs: Literal["auto", "off"] = "auto"
    # Where a NaN/inf loss or gradient is detected and its update skipped: "host" waits for each
    # update's check; "device" leaves it to fused Adam and reads the flags every log_every steps
    # (exact counts, known later; needs Adam/AdamW and no fp16). "auto": "device" on CUDA if possible.
    nonfinite_check: Literal["auto", "host", "device"] = "auto"
    log_every: int = 50  # steps between logged means (progress bar, run page, logger hooks)
    checkpoint_every: int = 1  # epochs between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept in the run folder
    sample_every: int = 1  # epochs between sample pages
    num_samples: int = 4  # training images shown on the sample page
    max_nonfinite_steps: int = 10  # stop after this many updates in a row with a NaN/inf loss (each is skipped)
    # Several processes (torchrun): batch norm takes its statistics over the global batch, as one
    # process would (torch's SyncBatchNorm, CUDA only). false: each process normalises its own
    # batch_size / world_size images, which is a different model; networks without batch norm
    # are unaffected, and one process ignores the key.
    sync_batchnorm: bool = True
    # Validation while training (docs/reliability.md): every `eval_every` steps (0: never) the
    # `eval_split` split (its first `eval_images` images; 0: all) is translated and scored as
    # `tkit eval` does; the scores are logged, drawn on the run page, and the weights with the best
    # `best_metric` so far are kept as best.pt ("max"/"min": which way is better; "auto": known
    # from the metric). `eval_segmenter` (a run folder) adds the FCN-score, `eval_fid_weights` (the
    # FID Inception file) FID and KID.
    eval_every: int = 0
    eval_split: str = "val"
    eval_images: int = 0
    best_metric: str = "psnr"
    best_mode: Literal["auto", "max", "min"] = "auto"
    eval_segmenter: str = ""
    eval_fid_weights: str = ""


CORE_TABLES = {"run": RunConfig, "data": DataConfig, "train": TrainConfig}
_SET_BY_METHOD = ("in_channels", "out_channels", "num_classes")


@dataclass(frozen=True, slots=True)
class Recipe:
    """A validated recipe. `components` maps each component table ("method" first, then
    "generator", "discriminator", ... as the method declares them) to its table,
    `{"name": ..., **options}`; `source` says where it came from, for messages."""

    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    components: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "<recipe>"

    def where(self, table: str) -> str:
        """`"recipes/x.toml, [table]"`: the prefix of messages about a table."""
        return f"{self.source}, [{table}]"

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain TOML-able data; `load_recipe(recipe.to_dict())` gives it back."""
        data = {k: v for k, v in _fields(self.data).items() if k != "options"}
        data.update(self.data.options)
        out: dict[str, Any] = {"run": _fields(self.run), "data": data}
        for table, body in self.components.items():
            out[table] = dict(body)
        out["train"] = _fields(self.train)
        optimizers = {group: {k: v for k, v in _fields(settings).items() if v is not None}
                      for group, settings in self.train.optimizers.items()}
        out["train"]["optimizers"] = {group: body for group, body in optimizers.items() if body}
        if not out["train"]["optimizers"]:
            del out["train"]["optimizers"]
        return out

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())

    def with_defaults(self, registry: Registry) -> dict[str, Any]:
        """`to_dict()` plus every component option the recipe leaves at its default.

        Options whose default is None are left out (TOML has no null), and so are the counts the
        trainer and the method set (channels follow [data], a segmenter's classes its labels).
        """
        out = self.to_dict()
        method = registry.get("method", self.components["method"]["name"])
        tables = [("data", "dataset", self.data.dataset), ("method", "method", method.name)]
        tables += [(t, method.tables[t], body["name"]) for t, body in self.components.items() if t != "method"]
        for table, kind, name in tables:
            for option in registry.get(kind, name).options:
                if option.required or option.default is None or option.name in _SET_BY_METHOD:
                    continue
                out[table].setdefault(option.name, _plain(option.default))
        return out


def _fields(config: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split `"table.key=value"` into (table, key, value), the value parsed as a TOML value. The key
    may be a dotted path into sub-tables (`train.optimizers.D.lr=4e-4` gives key `optimizers.D.lr`).

    Example:
        >>> parse_override("train.betas=[0.5, 0.9]")
        ('train', 'betas', [0.5, 0.9])
        >>> parse_override("data.root=../shared/data/facades")
        ('data', 'root', '../shared/data/facades')
    """
    path, sep, raw = text.partition("=")
    table, dot, key = path.strip().partition(".")
    if not sep or not dot or not table or not key or "" in key.split("."):
        raise RecipeError(f"--set {text!r}: expected table.key=value, e.g. --set train.epochs=5.")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as a path: take it as a string
    return table, key, value


def load_recipe(
    source: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    registry: Registry | None = None,
) -> Recipe:
    """Load, override and validate a recipe.

    Args:
        source: a TOML file, or an already parsed mapping (e.g. from a checkpoint).
        overrides: `"table.key=value"` strings, applied in order after the file.
        registry: when given, component names and their options are checked too.

    Raises:
        RecipeError: the file is missing or not TOML, or a table, key or value is wrong; the message
            names the file, the table, the key, the value and the valid choices.
    """
    if isinstance(source, Mapping):
        raw, origin = _copy_tables(source), "<recipe>"
    else:
        path = Path(source)
        origin = str(path)
        if not path.is_file():
            raise RecipeError(f"Recipe file {path} does not exist. List the shipped recipes with `tkit recipes list`.")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RecipeError(f"{path} is not valid TOML: {exc}. See docs/recipes.md for the format.") from None

    set_by: dict[tuple[str, str], str] = {}  # (table, key) -> the --set text, for messages
    for text in overrides:
        table, key, value = parse_override(text)
        *parents, last = [table, *key.split(".")]
        node = raw
        for depth, name in enumerate(parents):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                at = ".".join(parents[: depth + 1])
                raise RecipeError(f"--set {text}: {at!r} is not a table in {origin}.")
        node[last] = value
        set_by[(table, key.split(".")[0])] = f"--set {text}"

    def where(table: str, key: str | None = None) -> str:
        if key is not None and (table, key) in set_by:
            return set_by[(table, key)]
        return f"{origin}, [{table}]"

    for table, value in raw.items():
        if not isinstance(value, dict):
            raise RecipeError(f"{origin}: {table!r} must be a table ([{table}]), got {value!r}.")

    data_table = dict(raw.get("data", {}))
    data_fields = {f.name for f in dataclasses.fields(DataConfig)} - {"options"}
    options = {k: data_table.pop(k) for k in list(data_table) if k not in data_fields}
    if "options" in raw.get("data", {}):
        raise RecipeError(f"{where('data')}: write dataset options directly in [data], not under 'options'.")
    train_table = dict(raw.get("train", {}))
    optimizer_tables = train_table.pop("optimizers", {})
    if not isinstance(optimizer_tables, dict) or not all(isinstance(v, dict) for v in optimizer_tables.values()):
        raise RecipeError(
            f"{where('train', 'optimizers')}, key 'optimizers': expected sub-tables per optimiser group, such as "
            f"[train.optimizers.D] with lr = 4e-4, got {optimizer_tables!r}."
        )
    run = _build_config(RunConfig, raw.get("run", {}), "run", where)
    data = _build_config(DataConfig, data_table, "data", where)
    train = _build_config(TrainConfig, train_table, "train", where)
    optimizers = {
        group: _build_config(OptimizerSettings, body, f"train.optimizers.{group}",
                             lambda t, k=None: set_by.get(("train", "optimizers")) or f"{origin}, [{t}]")
        for group, body in optimizer_tables.items()
    }
    data = dataclasses.replace(data, options=options)
    train = dataclasses.replace(train, optimizers=optimizers)
    _check_ranges(run, data, train, where)

    if "method" not in raw:
        raise RecipeError(f"{origin}: missing table [method]; it names the training method, e.g. name = \"pix2pix\".")
    # [method] first, then the method's component tables in the file's order.
    components = {"method": dict(raw["method"])}
    components.update((t, dict(v)) for t, v in raw.items() if t not in CORE_TABLES and t != "method")
    if registry is not None:
        dataset_table = {"name": data.dataset, **options}
        _check_component(registry, "dataset", dataset_table, where("data"), set_by, "data", data_fields)
        if data.palette:  # a label-map input: the palette must be registered (plugins add more)
            at = set_by.get(("data", "palette")) or f"{where('data')}, key 'palette'"
            registry.get("palette", data.palette, where=at)
        try:
            registry.check_method_tables(components, lambda table: where(table))
        except RecipeError as exc:
            overridden = [v for (t, _), v in set_by.items() if t in components]
            hint = f" (overrides: {', '.join(overridden)})" if overridden else ""
            raise RecipeError(str(exc) + hint) from None
    return Recipe(run=run, data=data, train=train, components=components, source=origin)


def _copy_tables(source: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy as plain dicts: overrides write into nested tables, never into the caller's."""
    return {k: _copy_tables(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in source.items()}


def _build_config(cls: type, table: Mapping[str, Any], name: str, where: Any) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("options", "optimizers")]
    values = {}
    for key, value in table.items():
        if key not in names:
            described = ", ".join(f"{n}: {describe(hints[n])}" for n in names)
            raise RecipeError(
                f"{where(name, key)}: unknown key {key!r}.{did_you_mean(key, names)} Valid keys: {described}."
            )
        try:
            values[key] = coerce(value, hints[key])
        except TypeError as exc:
            raise RecipeError(f"{where(name, key)}, key {key!r}: {exc}.") from None
    return cls(**values)


def _check_ranges(run: RunConfig, data: DataConfig, train: TrainConfig, where: Any) -> None:
    def need(ok: bool, table: str, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise RecipeError(f"{where(table, key)}, key {key!r}: expected {rule}, got {value!r}.")

    need(0 <= run.seed < 2**32, "run", "seed", run.seed, "an integer in [0, 2**32)")
    need(bool(run.name) and "/" not in run.name and run.name not in (".", ".."), "run", "name", run.name,
         "a folder name without '/'")
    load, crop = data.load_hw, data.crop_hw
    shown_load, shown_crop = _plain(data.load_size), _plain(data.crop_size)
    if isinstance(data.load_size, int):
        need(data.load_size >= 0, "data", "load_size", shown_load,
             "a positive integer, [height, width] of positive integers, or 0 to keep stored sizes")
    else:
        need(min(load) > 0, "data", "load_size", shown_load,
             "[height, width] of positive integers (or one integer for a square, 0 to keep stored sizes)")
    need(min(crop) > 0, "data", "crop_size", shown_crop,
         "a positive integer, or [height, width] of positive integers")
    need(load == (0, 0) or (crop[0] <= load[0] and crop[1] <= load[1]), "data", "crop_size", shown_crop,
         f"a crop no larger than data.load_size ({shown_load}) in height and width")
    need(data.in_channels in (1, 3), "data", "in_channels", data.in_channels, "1 or 3")
    need(data.out_channels in (1, 3), "data", "out_channels", data.out_channels, "1 or 3")
    need(data.num_workers >= 0, "data", "num_workers", data.num_workers, "0 or more")
    need(train.epochs >= 0, "train", "epochs", train.epochs, "0 or more")
    need(train.decay_epochs >= 0, "train", "decay_epochs", train.decay_epochs, "0 or more")
    need(train.epochs + train.decay_epochs > 0, "train", "epochs", train.epochs, "epochs + decay_epochs > 0")
    need(train.batch_size >= 1, "train", "batch_size", train.batch_size, "1 or more")
    need(train.lr > 0 and math.isfinite(train.lr), "train", "lr", train.lr, "a positive number")
    need(all(0 <= b < 1 for b in train.betas), "train", "betas", list(train.betas), "two numbers in [0, 1)")
    need(train.max_steps >= 0, "train", "max_steps", train.max_steps, "0 (no limit) or more")
    for key in ("log_every", "checkpoint_every", "keep_checkpoints", "sample_every"):
        need(getattr(train, key) >= 1, "train", key, getattr(train, key), "1 or more")
    need(train.max_nonfinite_steps >= 1, "train", "max_nonfinite_steps", train.max_nonfinite_steps, "1 or more")
    need(train.num_samples >= 0, "train", "num_samples", train.num_samples, "0 or more")
    need(train.eval_every >= 0, "train", "eval_every", train.eval_every, "0 (no validation) or more")
    need(train.eval_images >= 0, "train", "eval_images", train.eval_images, "0 (the whole split) or more")
    need(0 <= train.ema_decay < 1, "train", "ema_decay", train.ema_decay, "a number in [0, 1) (0: no EMA)")
    need(0 < train.gamma <= 1, "train", "gamma", train.gamma, "a number in (0, 1]")
    need(list(train.milestones) == sorted(set(train.milestones)) and all(m > 0 for m in train.milestones), "train",
         "milestones", list(train.milestones), "increasing positive epochs")
    need(train.schedule == "step" or not train.milestones, "train", "milestones", list(train.milestones),
         'no milestones unless schedule = "step" (they would be ignored)')
    for group, settings in train.optimizers.items():
        key = f"optimizers.{group}"
        if settings.lr is not None:
            need(settings.lr > 0 and math.isfinite(settings.lr), "train", key, settings.lr, "lr > 0")
        if settings.betas is not None:
            need(all(0 <= b < 1 for b in settings.betas), "train", key, list(settings.betas), "betas in [0, 1)")
        if settings.weight_decay is not None:
            need(settings.weight_decay >= 0, "train", key, settings.weight_decay, "weight_decay >= 0")


def _check_component(
    registry: Registry,
    kind: str,
    table: Mapping[str, Any],
    where: str,
    set_by: Mapping[tuple[str, str], str],
    recipe_table: str,
    also_valid: set[str],
) -> None:
    try:
        registry.check(kind, table, where=where)
    except RecipeError as exc:
        overridden = [v for (t, _), v in set_by.items() if t == recipe_table]
        hint = f" (overrides: {', '.join(overridden)})" if overridden else ""
        message = str(exc)
        if also_valid and "Valid keys:" in message:
            message = message.rstrip(".") + f"; and the [data] keys {', '.join(sorted(also_valid))}."
        raise RecipeError(message + hint) from None


def dump_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Write tables of plain values (str, int, float, bool, arrays of them) as TOML.

    Example:
        >>> print(dump_toml({"train": {"lr": 0.0002, "betas": [0.5, 0.999]}}), end="")
        [train]
        lr = 0.0002
        betas = [0.5, 0.999]
    """
    lines: list[str] = []
    for table, body in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{table}]")
        for key, value in body.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"Cannot write {value!r} ({type(value).__name__}) as TOML")
