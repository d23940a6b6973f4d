"""An example translate-kit plugin: everything a plugin can add, in one small module.

- a generator component (`residual_cnn`), found by its `@register_generator()` marker;
- a recipe folder (`recipes/`), through `translate_kit_recipe_dirs`;
- a command (`tkit example-info`), through `translate_kit_add_commands`;
- a run-event listener that writes `losses.csv`, through `translate_kit_train_log`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from translate_kit.api import Norm, hookimpl, init_weights, make_norm, register_generator

__all__ = ["ResidualCNN", "residual_cnn"]


class ResidualCNN(nn.Module):
    """A full-resolution CNN that predicts a residual over its input: y = tanh(x' + f(x)).

    Works at any image size (no down-sampling), so it needs no `size_multiple`.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int, norm: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=norm != "batch"), make_norm(norm, width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.skip(x) + self.body(x))


@register_generator()
def residual_cnn(
    *, in_channels: int = 3, out_channels: int = 3, width: int = 32, depth: int = 4, norm: Norm = "instance"
) -> ResidualCNN:
    """Residual full-resolution CNN (example plugin); any image size."""
    return init_weights(ResidualCNN(in_channels, out_channels, width, depth, norm))


@hookimpl
def translate_kit_recipe_dirs() -> list[Path]:
    return [Path(__file__).parent / "recipes"]


@hookimpl
def translate_kit_add_commands(app: Any) -> None:
    @app.command("example-info")
    def example_info() -> None:
        """Say what the example plugin adds."""
        print("tkit-example-plugin: generator residual_cnn, recipe example_residual, losses.csv logging")


@hookimpl
def translate_kit_train_log(trainer: Any, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
    path = trainer.run_dir / "losses.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted(scalars), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(dict(scalars))
