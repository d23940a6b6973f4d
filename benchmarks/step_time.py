"""Time one optimisation step of a recipe's method, without data loading.

    python benchmarks/step_time.py RECIPE [--set table.key=value ...] [--device cpu] [--steps 20]

Builds the recipe's method exactly as `tkit train` does, jitters one real batch of its dataset on
the device, then times `--steps` calls of `method.training_step` after 3 warm-up steps and prints
the median and quartiles in ms per step and images/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from translate_kit.plugins import get_plugin_manager
from translate_kit.recipe import load_recipe
from translate_kit.registry import Registry
from translate_kit.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    pm = get_plugin_manager()
    registry = Registry.from_plugin_manager(pm)
    with tempfile.TemporaryDirectory() as runs:
        recipe = load_recipe(args.recipe, [*args.overrides, f"run.dir={runs}"], registry=registry)
        trainer = Trainer(recipe, registry=registry, pm=pm, device=args.device)
        batch = trainer._batch_to_device(next(iter(trainer.loader)))
        trainer.method.train()
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        for _ in range(3):
            trainer.method.training_step(batch, trainer.ctx)
        times = []
        for _ in range(args.steps):
            sync()
            start = time.perf_counter()
            trainer.method.training_step(batch, trainer.ctx)
            sync()
            times.append(time.perf_counter() - start)
    q1, median, q3 = statistics.quantiles(times, n=4)
    batch_size = recipe.train.batch_size
    print(
        f"{args.recipe} on {trainer.device} ({torch.get_num_threads()} threads): "
        f"median {median * 1e3:.1f} ms/step (quartiles {q1 * 1e3:.1f}-{q3 * 1e3:.1f}), "
        f"{batch_size / median:.1f} images/s at batch {batch_size}"
    )


if __name__ == "__main__":
    main()
