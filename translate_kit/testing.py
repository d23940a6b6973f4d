"""A test kit for plugin authors: pytest fixtures and the contract checks translate-kit's own
suite runs over every registered component and recipe.

Enable it in a plugin's `conftest.py` (as tox does with `tox.pytest`):

    pytest_plugins = ["translate_kit.testing"]

and test a component against the same contract the first-party ones meet:

    from translate_kit.testing import check_generator

    def test_my_generator(tkit_registry, device):
        check_generator(tkit_registry, "my_unet", device=device)

Fixtures:
    device: the `torch.device` to test on: `--device cuda` (or TRANSLATE_KIT_TEST_DEVICE) reruns a
        suite on a GPU; tests skip when the device is absent. Default cpu.
    dtype: the floating dtype of network checks: `--dtype bfloat16` (or TRANSLATE_KIT_TEST_DTYPE);
        default float32.
    tkit_pm: a plugin manager with translate-kit's own plugins and those of the distributions
        named by `--tkit-plugins` (default: none), never any other installed entry point, so an
        unrelated installed plugin cannot change a suite's results. Register your module with
        `get_plugin_manager(..., plugins=[module])` on top when it is not installed.
    tkit_registry: the registry of `tkit_pm`.
    tiny_facades: a folder of 10 synthetic facade pairs, 32x32 (pix2pix A|B layout, splits train/val/test).

Checks (each raises AssertionError with what broke):
    check_generator, check_discriminator, check_segmenter, check_loss: build the component at a
        tiny size (its registration's `tiny` options), run it forward on the smallest input it
        takes, check shapes and finiteness, and that a backward pass reaches its parameters.
    check_method: train a recipe for a few steps on tiny data, check that the weights moved, that
        a resumed run ends bit for bit where a straight one does, and that the trained model
        translates an image of an odd size to the method's scale.

Helpers:
    RecordingContext: a `StepContext` for a method's unit tests, which records each update's group
        and loss and steps nothing, so a test compares the losses with a hand computation on the
        networks as built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from translate_kit.adversarial import ENERGY, LOGITS, MULTISCALE_LOGITS
from translate_kit.method import Geometry, net_geometry, test_time
from translate_kit.registry import Registry

__all__ = [
    "FIRST_PARTY",
    "RecordingContext",
    "check_discriminator",
    "check_generator",
    "check_loss",
    "check_method",
    "check_segmenter",
    "first_party_plugin_manager",
    "quick_overrides",
    "tiny_recipe",
]

FIRST_PARTY = "translate-kit"  # the distribution whose entry points are translate-kit's own plugins


class RecordingContext:
    """A `StepContext` that records each `update(group, loss)` and steps nothing (no backward, no
    optimiser), so the networks keep the weights the losses were computed with.

    Args:
        step: the step the method sees (`ctx.step`: schedules such as n_critic read it).
        epoch: the epoch it sees.
        require_grad: refuse a loss that has no gradient (nothing to optimise); False for a
            method tested on parameter-free stand-ins.

    Attributes:
        updates: `(group, loss)` per update, in order; the losses keep their graphs.

    Example:
        >>> ctx = RecordingContext(step=3)
        >>> ctx.update("critic", torch.tensor(0.5, requires_grad=True))
        True
        >>> ctx.groups, ctx.losses["critic"].item()
        (['critic'], 0.5)
    """

    def __init__(self, step: int = 0, epoch: int = 0, *, require_grad: bool = True) -> None:
        self.step, self.epoch, self.require_grad = step, epoch, require_grad
        self.updates: list[tuple[str, torch.Tensor]] = []

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def update(self, group: str, loss: torch.Tensor) -> bool:
        if self.require_grad and not loss.requires_grad:
            raise AssertionError(f"The loss of group {group!r} has no gradient to optimise")
        self.updates.append((group, loss))
        return True

    @property
    def groups(self) -> list[str]:
        """The updated groups, in order."""
        return [group for group, _ in self.updates]

    @property
    def losses(self) -> dict[str, torch.Tensor]:
        """Each group's last loss."""
        return dict(self.updates)


# ------------------------------------------------------------------------------------------------
# pytest plugin: options and fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("translate_kit", "translate-kit test kit")
    group.addoption("--device", default=os.environ.get("TRANSLATE_KIT_TEST_DEVICE", "cpu"),
                    help="device the translate-kit checks run on (cpu, cuda, cuda:N, mps)")
    group.addoption("--dtype", default=os.environ.get("TRANSLATE_KIT_TEST_DTYPE", "float32"),
                    help="floating dtype of network checks (float32, float64, bfloat16, float16)")
    group.addoption("--tkit-plugins", default="", help="comma-separated distributions whose translate_kit entry "
                    "points the tkit_pm fixture loads besides translate-kit's own")


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    name = pytestconfig.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: CUDA is not available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        pytest.skip(f"--device {name}: MPS is not available")
    return dev


@pytest.fixture(scope="session")
def dtype(pytestconfig: pytest.Config) -> torch.dtype:
    name = pytestconfig.getoption("--dtype")
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise pytest.UsageError(f"--dtype {name}: expected a floating torch dtype such as float32 or bfloat16")
    return value


def first_party_plugin_manager(*distributions: str, plugins: Sequence[object] = ()) -> Any:
    """A plugin manager with translate-kit's own plugins, those of `distributions`, and `plugins`,
    ignoring `TRANSLATE_KIT_DISABLE_PLUGINS` and every other installed entry point."""
    from translate_kit.plugins import get_plugin_manager

    return get_plugin_manager(distributions=(FIRST_PARTY, *distributions), plugins=plugins, disabled=[])


@pytest.fixture(scope="session")
def tkit_pm(pytestconfig: pytest.Config) -> Any:
    extra = [d.strip() for d in pytestconfig.getoption("--tkit-plugins").split(",") if d.strip()]
    return first_party_plugin_manager(*extra)


@pytest.fixture(scope="session")
def tkit_registry(tkit_pm: Any) -> Registry:
    return Registry.from_plugin_manager(tkit_pm)


@pytest.fixture(scope="session")
def tiny_facades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from translate_kit.data.synth import write_synth_facades

    root = tmp_path_factory.mktemp("tiny_facades")
    write_synth_facades(root, count=10, size=32, seed=7)
    return root


def quick_overrides(root: Path, run_dir: Path, *, steps: int = 2) -> list[str]:
    """--set overrides that shrink a pix2pix-style recipe to a few steps on 32x32 images."""
    return [
        f'data.root="{Path(root).as_posix()}"',
        f'run.dir="{Path(run_dir).as_posix()}"',
        "data.load_size=36",
        "data.crop_size=32",
        "train.batch_size=2",
        f"train.max_steps={steps}",
        "train.log_every=1",
        "train.num_samples=2",
    ]


# ------------------------------------------------------------------------------------------------
# Components


def _tiny(registry: Registry, kind: str, name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**registry.get(kind, name).tiny, **(options or {})}


def _side(geometry: Geometry, at_least: int = 32) -> int:
    """The smallest square side >= `at_least` that `geometry` takes."""
    return geometry.padded(at_least)


def _check_finite(value: Any, what: str) -> None:
    tensors = [value] if isinstance(value, torch.Tensor) else list(_flatten(value))
    assert tensors, f"{what} returned no tensor"
    for t in tensors:
        assert torch.isfinite(t).all(), f"{what} returned non-finite values"


def _flatten(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)


def _check_backward(net: nn.Module, out: Any, what: str) -> None:
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not trainable:  # a parameter-free baseline (bicubic upsampling): nothing to reach
        return
    total = sum(t.float().mean() for t in _flatten(out))
    total.backward()
    reached = [n for n, p in trainable if p.grad is not None]
    assert not trainable or reached, f"{what}: the backward pass reached none of its parameters"
    for n, p in trainable:
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{what}: the gradient of {n} is not finite"


def check_generator(
    registry: Registry, name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    options: Mapping[str, Any] | None = None, batch: int = 2,
) -> nn.Module:
    """Build generator `name` at a tiny size and check forward shape, finiteness, backward.

    The input is the smallest square of at least 32 pixels the network takes (its
    `SizeConstrained` declaration); the output must be `(batch, out_channels, s H, s W)` with `s`
    its `Upscaling` scale. Its range is not checked: pix2pix's generators end in tanh, a
    super-resolution network's output is unbounded and its method clamps what `translate` returns.
    """
    device = torch.device(device)
    net = registry.create("generator", name, **{"in_channels": 3, "out_channels": 3, **_tiny(registry, "generator", name, options)})
    assert isinstance(net, nn.Module), f"generator {name!r} is a {type(net).__name__}, not an nn.Module"
    geometry = net_geometry(net)
    side = _side(geometry)
    net = net.to(device=device, dtype=dtype).train()
    x = torch.rand(batch, 3, side, side, device=device, dtype=dtype) * 2 - 1
    y = net(x)
    expected = (batch, 3, geometry.scale * side, geometry.scale * side)
    assert tuple(y.shape) == expected, f"generator {name!r}: {tuple(x.shape)} gave {tuple(y.shape)}, expected {expected}"
    _check_finite(y, f"generator {name!r}")
    _check_backward(net, y, f"generator {name!r}")
    return net


def check_discriminator(
    registry: Registry, name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    options: Mapping[str, Any] | None = None, in_channels: int = 6, batch: int = 2,
) -> nn.Module:
    """Build discriminator `name` at a tiny size and check that its output is what its registration
    declares (`LOGITS`: one tensor per batch; `MULTISCALE_LOGITS`: a list of them; `ENERGY`: `(B,)`
    non-negative), finite, and that a backward pass reaches its parameters."""
    device = torch.device(device)
    spec = registry.get("discriminator", name)
    net = registry.create("discriminator", name, **{"in_channels": in_channels, **_tiny(registry, "discriminator", name, options)})
    side = _side(net_geometry(net))
    net = net.to(device=device, dtype=dtype).train()
    out = net(torch.rand(batch, in_channels, side, side, device=device, dtype=dtype) * 2 - 1)
    what = f"discriminator {name!r} (output {spec.output!r})"
    if spec.output == LOGITS:
        assert isinstance(out, torch.Tensor) and out.shape[0] == batch, f"{what}: expected one tensor of {batch} rows"
    elif spec.output == MULTISCALE_LOGITS:
        assert isinstance(out, (list, tuple)) and out, f"{what}: expected a non-empty list of tensors"
        assert all(o.shape[0] == batch for o in out), f"{what}: every scale must have {batch} rows"
    elif spec.output == ENERGY:
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (batch,), f"{what}: expected ({batch},) energies"
        assert (out >= 0).all(), f"{what}: energies must be non-negative"
    _check_finite(out, what)
    _check_backward(net, out, what)
    return net


def check_segmenter(
    registry: Registry, name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    options: Mapping[str, Any] | None = None, num_classes: int = 5, batch: int = 2,
) -> nn.Module:
    """Build segmenter `name` and check it gives `(B, num_classes, H, W)` logits at the input's size."""
    device = torch.device(device)
    net = registry.create("segmenter", name, **{"num_classes": num_classes, **_tiny(registry, "segmenter", name, options)})
    side = _side(net_geometry(net), 64)
    net = net.to(device=device, dtype=dtype).train()
    out = net(torch.rand(batch, 3, side, side, device=device, dtype=dtype) * 2 - 1)
    expected = (batch, num_classes, side, side)
    assert tuple(out.shape) == expected, f"segmenter {name!r}: gave {tuple(out.shape)}, expected {expected}"
    _check_finite(out, f"segmenter {name!r}")
    _check_backward(net, out, f"segmenter {name!r}")
    return net


def check_loss(
    registry: Registry, name: str, *, device: torch.device | str = "cpu", options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build loss `name` and check it on tiny inputs.

    An adversarial loss (registered with `scores`) must satisfy `AdversarialLoss`, give finite
    scalars for real and fake, for D and G, on every output kind it scores, and a finite
    `penalty`; its gradient is checked against finite differences in float64. Any other loss is
    called as `loss(prediction, target)` on images and must give a finite scalar with a gradient.
    """
    from translate_kit.adversarial import AdversarialLoss

    device = torch.device(device)
    spec = registry.get("loss", name)
    loss = registry.create("loss", name, **_tiny(registry, "loss", name, options))
    if spec.scores is None:
        prediction = (torch.rand(2, 3, 32, 32, device=device) * 2 - 1).requires_grad_(True)
        value = loss.to(device)(prediction, torch.rand(2, 3, 32, 32, device=device) * 2 - 1)
        assert value.ndim == 0 and torch.isfinite(value), f"loss {name!r}: expected a finite scalar, got {value}"
        value.backward()
        assert prediction.grad is not None and torch.isfinite(prediction.grad).all(), f"loss {name!r}: no finite gradient"
        return loss
    assert isinstance(loss, AdversarialLoss), f"loss {name!r} declares scores={spec.scores} but lacks __call__/penalty"
    samples = {LOGITS: torch.randn(2, 1, 6, 6), MULTISCALE_LOGITS: [torch.randn(2, 1, 6, 6), torch.randn(2, 1, 3, 3)],
               ENERGY: torch.rand(2)}
    for output in spec.scores:
        if output not in samples:
            continue
        for real in (True, False):
            for for_d in (True, False):
                if not for_d and not real:
                    continue  # a generator's loss is always "look real"
                value = loss(samples[output], target_is_real=real, for_discriminator=for_d)
                assert value.ndim == 0 and torch.isfinite(value), f"loss {name!r} on {output}: not a finite scalar"
    scored = [kind for kind in spec.scores if kind in samples]
    if scored:  # float64 gradients against finite differences, on the first standard kind it scores
        inputs = [t.double().requires_grad_(True) for t in _flatten(samples[scored[0]])]
        as_given = inputs[0] if scored[0] != MULTISCALE_LOGITS else None

        def scored_loss(*xs: torch.Tensor) -> torch.Tensor:
            return loss(as_given if as_given is not None and len(xs) == 1 else list(xs), target_is_real=True)

        assert torch.autograd.gradcheck(scored_loss, tuple(inputs)), f"loss {name!r}: gradcheck on {scored[0]}"
    if LOGITS in spec.scores:  # a logit critic for the regulariser; other kinds bring their own
        penalty = loss.penalty(nn.Conv2d(3, 1, 3), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
        assert penalty.ndim == 0 and torch.isfinite(penalty), f"loss {name!r}: penalty is not a finite scalar"
    return loss


# ------------------------------------------------------------------------------------------------
# Methods, through recipes


def tiny_recipe(source: Any, registry: Registry, *, data_root: Path, run_dir: Path, steps: int = 2,
                overrides: Sequence[str] = ()) -> Any:
    """`source` (a recipe file or tables) made tiny: every component table with its registration's
    `tiny` options, `steps` steps of batch 2 on the images in `data_root`, at the smallest crop
    (at least 32 pixels) that every network of the method takes."""
    from translate_kit.build import build_method, check_sizes
    from translate_kit.errors import RecipeError
    from translate_kit.recipe import load_recipe

    base = load_recipe(source, registry=registry)
    method_spec = registry.get("method", base.components["method"]["name"])
    tiny = [f"{table}.{key}={_toml(value)}" for table, body in base.components.items() if table != "method"
            for key, value in registry.get(method_spec.tables[table], body["name"]).tiny.items()]
    quick = [f'data.root="{Path(data_root).as_posix()}"', f'run.dir="{Path(run_dir).as_posix()}"', "train.batch_size=2",
             f"train.max_steps={steps}", "train.log_every=1", "train.num_samples=1", "train.checkpoint_every=1000"]
    recipe = load_recipe(source, [*tiny, *quick, *overrides], registry=registry)
    with torch.random.fork_rng(devices=[]):
        method = build_method(recipe, registry)
    for crop in range(32, 1025):
        sized = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, load_size=crop, crop_size=crop))
        try:
            check_sizes(method, sized)
        except RecipeError:
            continue
        return load_recipe(source, [*tiny, *quick, f"data.load_size={crop}", f"data.crop_size={crop}", *overrides],
                           registry=registry)
    raise AssertionError(f"{source}: no crop size up to 1024 fits every network of the tiny method")


def _trainable(recipe: Any, registry: Registry) -> bool:
    from translate_kit.build import build_method

    with torch.random.fork_rng(devices=[]):
        method = build_method(recipe, registry)
    return any(p.requires_grad for p in method.parameters())


def _recipe_file(recipe: Any, folder: Path) -> Path:
    path = Path(folder) / "recipe.toml"
    path.write_text(recipe.to_toml(), encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    from translate_kit.recipe import dump_toml

    return dump_toml({"t": {"v": value}}).splitlines()[1].split(" = ", 1)[1]


def _inputs(trainer: Any, size: tuple[int, int], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 image of `size` and a [-1, 1] batch of one `side` x `side` image that the method
    takes: its own prepared input of the first training item (a photo, an upscaler's
    low-resolution image, a label map whose values must be class ids), resized by nearest neighbour,
    which keeps every value one of the item's."""
    from torch.utils.data import default_collate

    from translate_kit.data.jitter import from_unit_range, to_unit_range
    from translate_kit.method import BatchSpec

    spec = BatchSpec(torch.device("cpu"), trainer.recipe.data.crop_size, flip=False, train=False)
    with torch.random.fork_rng(devices=[]):
        prepared = trainer.method.prepare_batch(default_collate([trainer.dataset[0]]), spec)
    first = from_unit_range(prepared["A"][:1].float().cpu()).float()

    def resized(hw: tuple[int, int]) -> torch.Tensor:
        return torch.nn.functional.interpolate(first, size=hw, mode="nearest-exact").to(torch.uint8)

    return resized(size)[0], to_unit_range(resized((side, side)))


def check_method(
    source: Any, registry: Registry, pm: Any, *, data_root: Path, tmp_path: Path, device: torch.device | str = "cpu",
    overrides: Sequence[str] = (),
) -> None:
    """Train a recipe's method (made tiny with `tiny_recipe`) and check the contract end to end:
    two steps move the weights of every optimised network and log finite scalars; one step, a
    checkpoint and a resume end bit for bit where two straight steps do; the trained model
    translates a 37x45 image to the method's scale times that size."""
    from translate_kit.inference import Translator
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    device = str(device)
    straight_recipe = tiny_recipe(source, registry, data_root=data_root, run_dir=tmp_path / "straight", overrides=overrides)
    if not _trainable(straight_recipe, registry):  # an evaluation-only baseline: it translates, untrained
        translator = Translator.from_recipe(_recipe_file(straight_recipe, tmp_path), registry=registry, device=device)
        image = torch.randint(0, 256, (straight_recipe.data.in_channels, 37, 45), dtype=torch.uint8)
        s = translator.scale
        assert tuple(translator(image).shape[-2:]) == (37 * s, 45 * s), f"{source}: a 37x45 image gave a wrong size"
        return
    straight = Trainer(straight_recipe, registry=registry, pm=pm, device=device)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in straight.method.nets.items()}
    history = straight.fit()
    assert straight.state.step == 2, f"{source}: trained {straight.state.step} steps, expected 2"
    assert all(math.isfinite(v) for r in history for v in r.values()), f"{source}: non-finite logged scalars"
    optimised = {n for members in straight.method.optimizer_groups().values() for n in members}
    for name in optimised:
        now = list(straight.method.nets[name].parameters())
        if any(p.requires_grad for p in now):
            moved = any(not torch.equal(a, b.detach()) for a, b in zip(before[name], now))
            assert moved, f"{source}: two steps left the weights of network {name} unchanged"

    first_recipe = tiny_recipe(source, registry, data_root=data_root, run_dir=tmp_path / "resumed",
                               overrides=[*overrides, "train.max_steps=1"])
    Trainer(first_recipe, registry=registry, pm=pm, device=device).fit()
    run = Path(first_recipe.run.dir) / first_recipe.run.name
    resumed_recipe = load_recipe(first_recipe.to_dict(), ["train.max_steps=2"], registry=registry)
    resumed = Trainer(resumed_recipe, registry=registry, pm=pm, device=device, run_dir=run, resume=True)
    resumed.fit()
    for name, net in straight.method.nets.items():
        for (key, a), b in zip(net.state_dict().items(), resumed.method.nets[name].state_dict().values()):
            assert torch.equal(a, b), f"{source}: resuming changed {name}.{key} (not bit for bit the straight run)"
    if straight.ema is not None:
        assert resumed.ema is not None
        for name, averaged in straight.ema.state_dict().items():
            for key, a in averaged.items():
                b = resumed.ema.state_dict()[name][key]
                assert torch.equal(a, b), f"{source}: resuming changed the moving average of {name}.{key}"

    translator = Translator.from_checkpoint(straight.run_dir, device=device, registry=registry)
    side = translator.geometry.padded(max(40, translator.geometry.min_size))
    image, x = _inputs(straight, (37, 45), side)
    x = x.to(translator.device)
    # In the translator's test-time state (eval mode: running statistics), as `translator(...)` runs it: a
    # tiny crop can leave a batch-norm generator a 1x1 map, whose batch statistics do not exist.
    with torch.no_grad(), test_time(translator.method, translator.mode):
        y = translator.method.translate(x)  # generators may be unbounded; `translate` answers in [-1, 1]
    assert y.abs().max() <= 1, f"{source}: translate gave values outside [-1, 1] (max |y| {y.abs().max():.3g})"
    out = translator(image)
    s = translator.scale
    assert tuple(out.shape[-2:]) == (37 * s, 45 * s), f"{source}: a 37x45 image gave {tuple(out.shape)}"
