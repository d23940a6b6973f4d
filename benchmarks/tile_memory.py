"""What automatic tiling in `tkit translate` decides for a large photo, and how its memory estimate
compares with what an untiled translation really takes.

    python benchmarks/tile_memory.py [--recipes pix2pix_facades,pix2pixhd_facades] [--size 4032x3024]
        [--measure]

For each recipe, a `Translator` with fresh weights (the recipe's networks; weights do not change
memory) measures its generator's bytes per pixel as it does on the first large image (a forward
pass at 512 pixels, `translate_kit.memory.peak_bytes`), and the script prints the estimate for the
photo, the memory this machine has available, the budget (`_MEMORY_SHARE` of it) and the decision:
whole, or the tile size. `--measure` also translates the photo untiled in a fresh process and
reports that process's peak resident memory, so the estimate can be read against reality (this
takes minutes on a CPU and needs the memory).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _translator(recipe: str):  # noqa: ANN202
    from translate_kit.inference import Translator
    from translate_kit.plugins import get_plugin_manager
    from translate_kit.registry import Registry

    registry = Registry.from_plugin_manager(get_plugin_manager())
    return Translator.from_recipe(ROOT / "recipes" / f"{recipe}.toml", registry=registry, device="cpu")


def measure_untiled(recipe: str, width: int, height: int) -> None:
    """In this (fresh) process: translate one photo untiled and print the peak resident memory."""
    import torch

    translator = _translator(recipe)
    translator.auto_tile = False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    translator(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{peak * 1024 / 2**30:.2f} {(peak - before) * 1024 / 2**30:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="pix2pix_facades,pix2pixhd_facades")
    parser.add_argument("--size", default="4032x3024", help="WxH of the photo (default: a 12-megapixel phone photo)")
    parser.add_argument("--measure", action="store_true", help="also translate it untiled and report peak memory")
    parser.add_argument("--untiled-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.untiled_worker:
        recipe, width, height = args.untiled_worker
        measure_untiled(recipe, int(width), int(height))
        return

    import translate_kit.inference as inference
    from translate_kit.memory import available_bytes

    width, height = (int(v) for v in args.size.lower().split("x"))
    free = available_bytes(inference.torch.device("cpu"))
    print(f"photo {width}x{height} ({width * height / 1e6:.1f} megapixels); available memory "
          f"{free / 2**30:.1f} GiB, of which an untiled image may use {inference._MEMORY_SHARE['cpu']:.0%}")
    for recipe in args.recipes.split(","):
        translator = _translator(recipe)
        ph, pw = translator.geometry.padded(height), translator.geometry.padded(width)
        tile = translator._automatic_tile(ph, pw, 1)
        per_pixel = translator._bytes_per_pixel or 0.0
        decision = "whole" if tile is None else f"tiles of {tile}x{tile}"
        line = (f"{recipe}: {per_pixel:,.0f} bytes/pixel at the 512-pixel probe -> {per_pixel * ph * pw / 2**30:.1f} GiB "
                f"estimated for {pw}x{ph} (padded); {decision}")
        if args.measure:
            out = subprocess.run([sys.executable, __file__, "--untiled-worker", recipe, str(width), str(height)],
                                 check=True, capture_output=True, text=True).stdout.split()
            line += f"; untiled, the process peaked at {out[0]} GiB ({out[1]} GiB for the translation)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
