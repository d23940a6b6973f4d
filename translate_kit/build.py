"""From a recipe to a method, and the device and precision it runs with.

`build_method(recipe, registry)` is the one way a method comes into being: training, inference,
`tkit convert` and the tests all call it, so a method is built from the same tables with the same
checks everywhere. The method's factory gets a `RecipeParts` (the core side of `Parts`), which
builds each component from the recipe table the method asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from translate_kit.adversarial import AdversarialLoss
from translate_kit.errors import PluginError, RecipeError, TrainingError
from translate_kit.method import ROLES, Method, net_geometry, unwrap

if TYPE_CHECKING:
    from translate_kit.recipe import Recipe
    from translate_kit.registry import Registry

__all__ = ["RecipeParts", "autocast_dtype", "build_method", "check_sizes", "select_device", "uses_channels_last"]


def select_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; other names are checked for availability."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"Device {name!r} was asked for, but CUDA is not available here; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(f"Device {name!r} was asked for, but MPS is not available here; use --device cpu.")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device`; None means fp32 (no autocast).

    "auto" is bf16 on CUDA where the GPU has it, fp16 (with a grad scaler) on older GPUs, and fp32
    elsewhere; "bf16"/"fp16" are taken as asked, on any device.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def uses_channels_last(memory_format: str, device: torch.device) -> bool:
    """`train.memory_format`: "auto" is channels_last on CUDA (tensor cores want NHWC), else contiguous."""
    return memory_format == "channels_last" or (memory_format == "auto" and device.type == "cuda")


class RecipeParts:
    """Builds a method's components from the recipe's tables (the core side of `Parts`)."""

    def __init__(self, recipe: Recipe, registry: Registry) -> None:
        self.recipe, self.registry = recipe, registry
        self.method_spec = registry.get("method", recipe.components["method"]["name"], where=recipe.where("method"))

    @property
    def in_channels(self) -> int:
        return self.recipe.data.in_channels

    @property
    def out_channels(self) -> int:
        return self.recipe.data.out_channels

    @property
    def palette(self) -> Any:
        if not self.recipe.data.palette:
            return None
        where = f"{self.recipe.where('data')}, key 'palette'"
        return self.registry.get("palette", self.recipe.data.palette, where=where).factory()

    def component(self, table: str, **fixed: Any) -> Any:
        return self._build(table, {}, fixed)

    def has(self, table: str) -> bool:
        return table in self.recipe.components

    def _build(self, table_name: str, defaults: Mapping[str, Any], fixed: Mapping[str, Any]) -> Any:
        method = self.method_spec.name
        kind = self.method_spec.tables.get(table_name)
        if kind is None:
            declared = ", ".join(f"[{t}]" for t in self.method_spec.tables) or "none"
            raise PluginError(
                f"Method {method!r} (plugin {self.method_spec.plugin!r}) builds a component from a [{table_name}] "
                f"table, which its registration does not declare (declared: {declared}); add it to "
                f"@register_method(tables={{...}})."
            )
        table = self.recipe.components.get(table_name)
        if table is None:
            raise RecipeError(f"{self.recipe.source}: method {method!r} needs a [{table_name}] table with a name.")
        spec = self.registry.get(kind, table.get("name", ""), where=f"{self.recipe.where(table_name)}, name")
        accepted = {o.name for o in spec.options}
        # Channel counts follow the data unless the recipe says otherwise; the method's own
        # requirements (`fixed`) must not be contradicted.
        defaults = {k: v for k, v in defaults.items() if k in accepted and k not in table and k not in fixed}
        return self.registry.build(kind, {**table, **defaults}, where=self.recipe.where(table_name), fixed=fixed)

    def generator(self, **fixed: Any) -> nn.Module:
        defaults = {"in_channels": self.in_channels, "out_channels": self.out_channels}
        return self._build("generator", defaults, fixed)

    def discriminator(self, **fixed: Any) -> nn.Module:
        return self._build("discriminator", {}, fixed)

    def segmenter(self, **fixed: Any) -> nn.Module:
        return self._build("segmenter", {"in_channels": self.in_channels}, fixed)

    def loss(self, name: str, **options: Any) -> nn.Module:
        where = f"{self.recipe.where('method')}, loss"
        loss = self.registry.build("loss", {"name": name, **options}, where=where)
        if self.registry.get("loss", name).scores is not None and not isinstance(loss, AdversarialLoss):
            spec = self.registry.get("loss", name)
            raise PluginError(
                f"Loss {name!r} (plugin {spec.plugin!r}) is registered as an adversarial loss (scores=...), but "
                f"its factory returned a {type(loss).__name__} without the AdversarialLoss methods __call__ and "
                "penalty (translate_kit.adversarial)."
            )
        return loss


def build_method(recipe: Recipe, registry: Registry) -> Method:
    """Build the recipe's method (its networks with fresh weights) and check it keeps the contract.

    Raises:
        RecipeError, UnknownComponentError: a table names nothing registered or has a wrong option.
        PluginError: the method breaks the contract (a network without a role, no translate
            network, an optimiser group naming no network).
    """
    method = registry.build("method", recipe.components["method"], where=recipe.where("method"),
                            args=(RecipeParts(recipe, registry),))
    name = f"method {recipe.components['method']['name']!r}"
    if not isinstance(method, Method):
        raise PluginError(f"The factory of {name} returned a {type(method).__name__}, not a translate_kit Method.")
    nets = list(method.nets)
    unroled = [n for n in nets if method.roles.get(n) not in ROLES]
    if unroled:
        raise PluginError(
            f"{name} gives no role (one of {', '.join(ROLES)}) to network(s) {', '.join(unroled)}; set "
            "`roles` in the method: network name -> role, one entry per network in `nets`."
        )
    if not method.translate_nets:
        raise PluginError(f"{name} has no network with the role \"translate\"; translate() needs at least one.")
    for net_name, net in method.nets.items():
        declared = [a for a in ("size_multiple", "min_size") if hasattr(unwrap(net), a)]
        if len(declared) == 1:  # SizeConstrained needs both; one alone would be silently ignored
            missing = "min_size" if declared == ["size_multiple"] else "size_multiple"
            raise PluginError(
                f"Network {net_name} of {name} ({type(unwrap(net)).__name__}) declares {declared[0]} but not "
                f"{missing}; a network that constrains sizes declares both (SizeConstrained), e.g. min_size = 0 or "
                "size_multiple = 1 for no constraint."
            )
    groups = method.optimizer_groups()
    stray = sorted({n for members in groups.values() for n in members} - set(nets))
    if stray:
        raise PluginError(f"{name}'s optimizer_groups() name network(s) {', '.join(stray)} not in its nets ({', '.join(nets)}).")
    unknown = sorted(set(recipe.train.optimizers) - set(groups))
    if unknown:
        raise RecipeError(
            f"{recipe.where('train')}: [train.optimizers.{unknown[0]}] names no optimiser group of {name}; its groups "
            f"are {', '.join(groups)}."
        )
    return method


def check_sizes(method: Method, recipe: Recipe, *, training: bool = False) -> None:
    """Check `data.crop_size` against what the networks declare (`SizeConstrained`), now rather
    than inside the first step; for `training`, also that the model has something to train.

    The crop is the target's size: translate networks see it divided by the method's scale (a
    ×4 super-resolution generator gets crop / 4), the others (discriminators) see it whole. A
    (height, width) crop is checked side by side, and the message names the side that fails.
    """
    if training and not any(p.requires_grad for p in method.nets.parameters()):
        raise TrainingError(
            f"{recipe.where('method')}: the model has no trainable parameters (a baseline such as bicubic "
            f"upsampling), so there is nothing to train; score it with `tkit eval {recipe.source}`."
        )
    height, width = recipe.data.crop_hw
    square = height == width
    crop = height if square else f"[{height}, {width}]"
    scale = method.geometry().scale
    where = recipe.where("data")
    if height % scale or width % scale:
        raise RecipeError(f"{where}: crop_size {crop} is not a multiple of the method's output scale {scale}.")
    for name, net in method.nets.items():
        divisor = scale if method.roles.get(name) == "translate" else 1
        limits = net_geometry(unwrap(net))
        label = f"network {name} ({type(unwrap(net)).__name__})"
        for side_name, length in (("", height),) if square else (("height ", height), ("width ", width)):
            side = length // divisor
            if side % limits.size_multiple:
                raise RecipeError(
                    f"{where}: crop_size {crop} gives {label} inputs of {side_name}{side} pixels, but it needs sizes "
                    f"that are multiples of {limits.size_multiple}. Use a crop_size that fits, or a shallower network "
                    "(e.g. --set generator.num_downs=N for a U-Net)."
                )
            if side < limits.min_size:
                raise RecipeError(
                    f"{where}: crop_size {crop} gives {label} inputs of {side_name}{side} pixels, fewer than the "
                    f"{limits.min_size} it needs. Use a larger crop_size or a smaller network (e.g. fewer "
                    "discriminator n_layers)."
                )
