"""Datasets read from image folders: `aligned` (A|B side by side) and `paired` (A/ and B/ folders).

Both return items `{"A": input, "B": target, "name": stem}` with uint8 `(C, H, W)` images at their
stored size; resizing, channel conversion, caching and the random jitter are the core's job
(translate_kit.data), so a new folder layout only has to say where the files are.

`direction` follows the pix2pix reference: "AtoB" translates the left/`A` image into the
right/`B` one, "BtoA" the other way (facades labels -> photo is BtoA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from translate_kit.data.io import list_images, read_image
from translate_kit.errors import DataError
from translate_kit.registry import register_dataset

__all__ = ["AlignedDataset", "PairedDataset", "aligned", "paired"]

Direction = Literal["AtoB", "BtoA"]


class AlignedDataset(Dataset):
    """Files holding A and B side by side (A left, B right), as in the pix2pix datasets.

    An odd width drops the middle column, so both halves have width W // 2.
    """

    def __init__(self, folder: Path, direction: Direction = "AtoB") -> None:
        self.folder = Path(folder)
        self.direction = direction
        self.files = list_images(self.folder, what="A|B image pairs")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.files[index]
        image = read_image(path)
        width = image.shape[-1]
        if width < 2:
            raise DataError(f"Image {path} is {width} pixel wide; an A|B pair needs two halves side by side.")
        half = width // 2
        left, right = image[..., :half], image[..., width - half :]
        a, b = (left, right) if self.direction == "AtoB" else (right, left)
        return {"A": a, "B": b, "name": path.stem}


class PairedDataset(Dataset):
    """Two folders, A/ and B/, whose files are matched by stem (`A/12.png` with `B/12.jpg`)."""

    def __init__(self, folder_a: Path, folder_b: Path, direction: Direction = "AtoB") -> None:
        listed_a = list_images(folder_a)
        files_a = {p.stem: p for p in listed_a}
        files_b = {p.stem: p for p in list_images(folder_b)}
        unmatched = sorted(set(files_a) ^ set(files_b))
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
            raise DataError(
                f"{len(unmatched)} file(s) in {folder_a} and {folder_b} have no partner with the same name: "
                f"{shown}. Every A image needs a B image with the same stem; remove or add the missing ones."
            )
        self.pairs = [(path, files_b[path.stem]) for path in listed_a]  # natural order of A
        self.direction = direction

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path_a, path_b = self.pairs[index]
        a, b = read_image(path_a), read_image(path_b)
        if self.direction == "BtoA":
            a, b = b, a
        return {"A": a, "B": b, "name": path_a.stem}


@register_dataset()
def aligned(*, root: str, split: str = "train", direction: Direction = "AtoB") -> AlignedDataset:
    """A|B side-by-side images in root/<split>/ (the pix2pix layout: facades, maps, edges2shoes)."""
    return AlignedDataset(Path(root) / split, direction)


@register_dataset()
def paired(
    *, root: str, split: str = "train", a_dir: str = "A", b_dir: str = "B", direction: Direction = "AtoB"
) -> PairedDataset:
    """Images in root/<split>/A/ and root/<split>/B/ matched by file stem (split "" for root/A, root/B)."""
    base = Path(root) / split if split else Path(root)
    return PairedDataset(base / a_dir, base / b_dir, direction)
