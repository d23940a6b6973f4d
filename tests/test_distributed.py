"""Training in several processes: two gloo processes on the CPU, started by torchrun.

Two launches of `python -m torch.distributed.run --nproc-per-node 2 --standalone` cover it:

- the user's path, `-m translate_kit train RECIPE`: a straight run of 3 steps;
- this file as the per-rank script (`_driver` below): the same run interrupted after 1 step and
  resumed with `tkit train --resume` (the CLI called in-process, inside one process group, to
  save a launch), then a run without randomness whose every rank dumps its weights, and an fp16
  run with a NaN loss on rank 1 only.

The tests compare what those left behind; the rest (batch split, SyncBatchNorm on CPU, the data
order) needs no second process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import RECIPES, quick_overrides

from translate_kit.build import build_method
from translate_kit.errors import RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint
from translate_kit.train.distributed import (
    Distributed,
    LaunchEnv,
    launch_env,
    parameter_fingerprints,
    process_device,
)

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="needs gloo"
)

RECIPE = RECIPES / "pix2pix_facades.toml"
TINY = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]
# Batch norm per process, dropout and jitter: every source of per-rank randomness is live.
# 8 images, global batch 4 (2 per rank): 2 steps per epoch; the lr drops after the first epoch.
RANDOM = TINY + [
    "train.batch_size=4", "train.sync_batchnorm=false", "train.epochs=1", "train.decay_epochs=2",
    "train.checkpoint_every=1",
]
# No randomness and no batch coupling (no normalisation, no dropout, no crop, no flip): two ranks
# with 2 images each must compute what one process computes with the 4 images. (Not instance norm:
# it makes the bias before it a no-op whose gradient is rounding noise, which Adam turns into
# full-size steps in random directions, different in every computation.)
DETERMINISTIC = TINY + [
    "generator.norm=none", "generator.dropout=0.0", "discriminator.norm=none",
    "data.load_size=32", "data.flip=false", "train.batch_size=4",
]
# Plugins these recipes do not use, left unloaded to start each process faster.
UNUSED_PLUGINS = "timm_unet,segmenters,segmentation,vgg,cyclegan,pix2pixhd,resnet,reference_import"


def torchrun(*args: str, env: dict[str, str] | None = None) -> None:
    """Run torchrun with 2 local processes; fail with both processes' output if it fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            # The limit only turns a hang (a rank waiting in a collective forever) into a failure;
            # no test measures time.
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: torchrun passes it on and kills its workers after its
            # --shutdown-timeout, instead of leaving them behind.
            proc.terminate()
            stdout, stderr = proc.communicate()
            pytest.fail(f"{' '.join(command)} hung\n{stdout[-4000:]}\n{stderr[-8000:]}")
    assert proc.returncode == 0, f"{' '.join(command)}\n{stdout[-4000:]}\n{stderr[-8000:]}"


VALIDATE = ["train.eval_every=2", "train.eval_split=test"]


def sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


@pytest.fixture(scope="module")
def launches(tiny_facades: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both launches; returns the folder holding `straight/`, `resumed/`, `plain/` and `nonfinite/`."""
    out = tmp_path_factory.mktemp("distributed")
    fast = {"TRANSLATE_KIT_DISABLE_PLUGINS": UNUSED_PLUGINS}
    torchrun(
        "-m", "translate_kit", "train", str(RECIPE), "--device", "cpu",
        *sets(quick_overrides(tiny_facades, out / "straight", steps=3) + RANDOM + VALIDATE), env=fast,
    )
    torchrun(__file__, str(tiny_facades), str(out), env=fast)
    return out


def test_ranks_hold_identical_weights_and_rank_0_alone_writes(launches: Path, registry) -> None:
    run = launches / "straight" / "pix2pix_facades"
    assert [p.name for p in checkpoint_paths(run / "checkpoints")] == ["step_000000002.pt", "step_000000003.pt"]
    ckpt = load_checkpoint(run / "checkpoints" / "step_000000003.pt")
    assert ckpt["state"]["world_size"] == 2 and set(ckpt["ranks"]) == {1}
    # Every rank's parameters, fingerprinted at the checkpoint: equal, and equal to the saved ones.
    rank0, rank1 = ckpt["replica_fingerprints"]
    assert rank0 == rank1
    assert rank0 == parameter_fingerprints(_nets_from(ckpt, registry))
    # Rank 1 has a random stream of its own (dropout, jitter), restored on resume.
    assert not torch.equal(ckpt["ranks"][1]["rng"]["torch"], ckpt["rng"]["torch"])
    # Hooks run on rank 0 only: one log record per step, not one per process.
    records = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert (run / "index.html").exists() and (run / "samples" / "epoch_0002" / "1.png").exists()
    # Every rank validated (with plain modules: no collective call, so none waited); rank 0 wrote.
    scores = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in scores] == [2] and (run / "best.pt").is_file()


def test_a_resumed_run_continues_exactly(launches: Path) -> None:
    straight = load_checkpoint(launches / "straight" / "pix2pix_facades" / "checkpoints" / "step_000000003.pt")
    resumed_dir = launches / "resumed" / "pix2pix_facades" / "checkpoints"
    # Interrupted after step 1, in the middle of the first epoch; resumed to step 3.
    assert [p.name for p in checkpoint_paths(resumed_dir)] == [
        "step_000000001.pt", "step_000000002.pt", "step_000000003.pt"
    ]
    resumed = load_checkpoint(resumed_dir / "step_000000003.pt")
    for key in ("nets", "optimizers", "schedulers", "state", "rng", "ranks", "replica_fingerprints"):
        _assert_same(straight[key], resumed[key], key)


def test_two_processes_compute_what_one_does_with_the_global_batch(launches, registry, pm, tiny_facades, tmp_path):
    from translate_kit.train.trainer import Trainer

    rank0, rank1 = (torch.load(launches / "plain" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    _assert_same(rank0, rank1, "weights")  # parameters and buffers, bit for bit
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path, steps=3) + DETERMINISTIC, registry=registry)
    one = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    one.fit()
    alone = {name: net.state_dict() for name, net in one.method.nets.items()}
    initial = _initial(recipe, registry)
    moved = 0.0
    for name, state in alone.items():
        for key, value in state.items():
            # Equal up to the order of float sums (one mean over 4 images, or two means over 2,
            # averaged), against steps of about lr = 2e-4 per weight.
            torch.testing.assert_close(rank0[name][key], value, rtol=0, atol=1e-6, msg=f"{name}.{key}")
            moved = max(moved, float((value - initial[name][key]).abs().max()))
    assert moved > 1e-4  # the networks did train, so the comparison means something


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_trains_in_two_processes(path, registry, tiny_facades, tmp_path):
    """Every method's pattern of forward and backward passes under DDP (one launch each: --runslow)."""
    recipe = load_recipe(path, registry=registry)
    overrides = quick_overrides(tiny_facades, tmp_path, steps=3) + [
        "train.batch_size=4", "train.sync_batchnorm=false", "train.checkpoint_every=1"
    ]
    generator = recipe.components.get("generator", {})
    if str(generator.get("name")).startswith("unet"):
        overrides += ["generator.name=unet", "generator.num_downs=5"]
    if generator.get("name") == "timm_unet":
        overrides += ["data.load_size=72", "data.crop_size=64"]
    if "segmenter" in recipe.components:
        overrides += ["segmenter.name=timm_fpn", "segmenter.width=16"]
    for table, width in (("generator", "ngf"), ("discriminator", "ndf")):
        if table in recipe.components:
            if width in {o.name for o in registry.get(table, recipe.components[table]["name"]).options}:
                overrides.append(f"{table}.{width}=8")
    torchrun("-m", "translate_kit", "train", str(path), "--device", "cpu", *sets(overrides))
    [ckpt] = [load_checkpoint(p) for p in checkpoint_paths(tmp_path / recipe.run.name / "checkpoints")][-1:]
    assert ckpt["state"]["step"] == 3
    rank0, rank1 = ckpt["replica_fingerprints"]
    assert rank0 == rank1


def test_a_nan_loss_on_one_rank_is_skipped_on_every_rank(launches: Path) -> None:
    ranks = [json.loads((launches / "nonfinite" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["step"] == 2 and "2 steps in a row" in rank["error"]
    assert ranks[0]["fingerprints"] == ranks[1]["fingerprints"]


def test_the_global_batch_must_split_evenly(registry, pm, tiny_facades, tmp_path):
    from translate_kit.train.trainer import Trainer

    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + TINY + ["train.batch_size=3"],
                         registry=registry)
    with pytest.raises(RecipeError, match=r"\[train\], key 'batch_size': 3 is the global batch size .* 2 processes "
                                          r"of this run \(WORLD_SIZE=2\); use a multiple of 2, e\.g\. 2 or 4"):
        Trainer(recipe, registry=registry, pm=pm, device="cpu", distributed=Distributed(rank=0, world_size=2))
    assert not (tmp_path / "pix2pix_facades").exists()


def test_sync_batchnorm_on_cpu_says_how_to_go_on(registry, pm, tiny_facades, tmp_path):
    from translate_kit.train.trainer import Trainer

    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + TINY, registry=registry)
    assert recipe.train.sync_batchnorm  # the default
    with pytest.raises(RecipeError, match=r"network\(s\) G, D use batch norm.*CUDA only.*--set train.sync_batchnorm="
                                          r"false.*its own 1 image"):
        Trainer(recipe, registry=registry, pm=pm, device="cpu", distributed=Distributed(rank=0, world_size=2))


def test_global_batches_hold_the_same_images_for_any_number_of_processes():
    from translate_kit.data.loading import EpochSampler

    length, batch = 11, 4
    single = EpochSampler(length, seed=3)
    single.set_epoch(2)
    expected = [sorted(single.indices()[i * batch : (i + 1) * batch]) for i in range(length // batch)]
    for world in (2, 4):
        shards = []
        for rank in range(world):
            sampler = EpochSampler(length, seed=3, rank=rank, world_size=world)
            sampler.set_epoch(2)
            shards.append(sampler.indices())
        per_rank = batch // world
        got = [sorted(i for shard in shards for i in shard[s * per_rank : (s + 1) * per_rank])
               for s in range(length // batch)]
        assert got == expected, world
        # A resumed epoch starts each shard after the per-rank batches already done.
        resumed = EpochSampler(length, seed=3, rank=1, world_size=world)
        resumed.set_epoch(2, start=1 * per_rank)
        assert list(resumed) == shards[1][per_rank:]


def test_launch_environment_and_devices():
    assert launch_env({}) == LaunchEnv(0, 1, 0)
    env = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert env == LaunchEnv(3, 4, 1)
    assert process_device(torch.device("cpu"), env) == torch.device("cpu")
    with pytest.raises(RecipeError, match="names one GPU.*cuda:LOCAL_RANK.*CUDA_VISIBLE_DEVICES"):
        process_device(torch.device("cuda", 0), env)
    with pytest.raises(RecipeError, match="MPS"):
        process_device(torch.device("mps"), env)
    single = Distributed()
    assert single.is_main and not single.enabled and single.any(True) and single.gather(5) == [5]


def _nets_from(ckpt: dict, registry) -> dict[str, torch.nn.Module]:
    """The checkpoint's networks, rebuilt from its recipe (as `tkit translate` does)."""
    recipe = load_recipe(ckpt["recipe"], registry=registry)
    method = build_method(recipe, registry)
    for name, net in method.nets.items():
        net.load_state_dict(ckpt["nets"][name])
    return dict(method.nets.items())


def _initial(recipe, registry) -> dict[str, dict[str, torch.Tensor]]:
    """The networks' weights before training (built from run.seed, as the trainer builds them)."""
    with torch.random.fork_rng():
        torch.manual_seed(recipe.run.seed)
        method = build_method(recipe, registry)
    return {name: net.state_dict() for name, net in method.nets.items()}


def _assert_same(a: object, b: object, where: str) -> None:
    """Nested containers of tensors and plain values, equal exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _driver(data: Path, out: Path) -> None:
    """Each rank of the second launch: interrupt and resume a run, then train without randomness
    and dump this rank's weights."""
    import torch.distributed as dist

    from translate_kit.cli import main
    from translate_kit.errors import TrainingError
    from translate_kit.method import unwrap
    from translate_kit.plugins import get_plugin_manager
    from translate_kit.registry import Registry
    from translate_kit.train.distributed import process_group
    from translate_kit.train.trainer import Trainer

    torch.set_num_threads(1)  # as torchrun's OMP_NUM_THREADS=1 gives the CLI run: the same kernels, the same bits

    def cli(*args: str) -> None:
        try:
            main(list(args))
        except SystemExit as stop:
            assert stop.code in (0, None), f"tkit {' '.join(args)} exited with {stop.code}"

    dist.init_process_group("gloo")
    try:
        cli("train", str(RECIPE), "--device", "cpu", *sets(quick_overrides(data, out / "resumed", steps=1) + RANDOM))
        cli("train", "--resume", str(out / "resumed" / "pix2pix_facades"), "--device", "cpu",
            "--set", "train.max_steps=3")

        pm = get_plugin_manager()
        registry = Registry.from_plugin_manager(pm)
        recipe = load_recipe(RECIPE, quick_overrides(data, out / "plain", steps=3) + DETERMINISTIC, registry=registry)
        with process_group(torch.device("cpu")) as group:
            trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu", distributed=group)
            trainer.fit()
            weights = {name: unwrap(net).state_dict() for name, net in trainer.method.nets.items()}
            torch.save(weights, out / "plain" / f"rank{group.rank}.pt")

            # fp16 with a NaN loss on rank 1 only: the grad scaler's path checks the loss before
            # backward, so a rank deciding alone would skip DDP's all-reduce and hang the other.
            overrides = quick_overrides(data, out / "nonfinite", steps=4) + RANDOM + [
                "train.precision=fp16", "train.max_nonfinite_steps=2"
            ]
            recipe = load_recipe(RECIPE, overrides, registry=registry)
            trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu", distributed=group)
            if group.rank == 1:
                step = trainer.method.training_step
                trainer.method.training_step = lambda batch, ctx: step(dict(batch, B=batch["B"] * float("nan")), ctx)
            try:
                trainer.fit()
                error = ""
            except TrainingError as exc:
                error = str(exc)
            nets = {name: unwrap(net) for name, net in trainer.method.nets.items()}
            (out / "nonfinite" / f"rank{group.rank}.json").write_text(
                json.dumps({"step": trainer.state.step, "error": error, "fingerprints": parameter_fingerprints(nets)})
            )
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _driver(Path(sys.argv[1]), Path(sys.argv[2]))
