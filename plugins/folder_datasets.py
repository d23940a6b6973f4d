"""Datasets read from image folders: `aligned` (A|B side by side), `paired` (A/ and B/ folders),
and the unpaired ones CycleGAN trains on: `unaligned` (two unrelated folders) and
`aligned_unpaired` (pix2pix A|B files with the pairing shuffled away).

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

from translate_kit.api import DataError, list_images, read_image, register_dataset

__all__ = [
    "AlignedDataset",
    "AlignedUnpairedDataset",
    "PairedDataset",
    "UnalignedDataset",
    "aligned",
    "aligned_unpaired",
    "paired",
    "unaligned",
]

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
    """Two folders, A/ and B/, whose files are matched by stem (`A/12.png` with `B/12.jpg`).

    A file without a partner is an error, or with `on_error="skip"` is left out and listed in
    `skipped` (the trainer reports it).
    """

    def __init__(self, folder_a: Path, folder_b: Path, direction: Direction = "AtoB", on_error: str = "fail") -> None:
        listed_a = list_images(folder_a)
        files_a = {p.stem: p for p in listed_a}
        files_b = {p.stem: p for p in list_images(folder_b)}
        unmatched = sorted(set(files_a) ^ set(files_b))
        if unmatched and on_error != "skip":
            shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
            raise DataError(
                f"{len(unmatched)} file(s) in {folder_a} and {folder_b} have no partner with the same name: "
                f"{shown}. Every A image needs a B image with the same stem; remove or add the missing ones, "
                "or set data.on_error = \"skip\" to leave them out."
            )
        self.skipped = [
            (str(files_a.get(stem) or files_b[stem]), "no partner with the same name in the other folder")
            for stem in unmatched
        ]
        listed_a = [path for path in listed_a if path.stem in files_b]
        if not listed_a:
            raise DataError(f"No file in {folder_a} has a partner of the same name in {folder_b}.")
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
    *,
    root: str,
    split: str = "train",
    a_dir: str = "A",
    b_dir: str = "B",
    direction: Direction = "AtoB",
    on_error: Literal["fail", "skip"] = "fail",
) -> PairedDataset:
    """Images in root/<split>/A/ and root/<split>/B/ matched by file stem (split "" for root/A, root/B).
    `on_error` (set from data.on_error) decides whether a file without a partner fails or is skipped."""
    base = Path(root) / split if split else Path(root)
    return PairedDataset(base / a_dir, base / b_dir, direction, on_error)


# ------------------------------------------------------------------------------------------------
# Unpaired data (CycleGAN). B is drawn independently of A through a permutation fixed by `seed`:
# the dataset holds no global RNG state, so item i is the same in every epoch, every worker and
# after a resume, and the trainer's EpochSampler alone decides the order. The core's jitter crops
# A and B with the same window and flip; for unrelated images that is simply a random crop of each,
# which is harmless.


def _permutation(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


class UnalignedDataset(Dataset):
    """Two folders of unrelated images: item i is A[i] with B[perm[i % len(B)]].

    `perm` is a permutation of B's indices drawn from `seed`; the length is max(len(A), len(B)), so
    every image of the larger domain is seen once per epoch (A wraps around when B is larger).
    The pairing is fixed for a given seed (the reference draws a fresh B each time; with a
    shuffled epoch order and batch 1 the two differ only in which A and B share a step).
    """

    def __init__(self, folder_a: Path, folder_b: Path, seed: int = 0) -> None:
        self.files_a = list_images(folder_a, what="domain A images")
        self.files_b = list_images(folder_b, what="domain B images")
        self.perm = _permutation(len(self.files_b), seed)

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"Expected an index in [0, {len(self)}), got {index}")
        path_a = self.files_a[index % len(self.files_a)]
        path_b = self.files_b[self.perm[index % len(self.files_b)]]
        return {"A": read_image(path_a), "B": read_image(path_b), "name": path_a.stem}


class AlignedUnpairedDataset(Dataset):
    """pix2pix A|B files with the pairing broken: item i is A of file i with B of file sigma(i).

    sigma is a derangement drawn from `seed` (no file keeps its own partner): the files are put in a
    random cyclic order and each takes the B half of the next one. For demos and tests of unpaired
    methods on paired data sets such as facades.
    """

    def __init__(self, folder: Path, direction: Direction = "AtoB", seed: int = 0) -> None:
        self.aligned = AlignedDataset(folder, direction)
        n = len(self.aligned)
        if n < 2:
            raise DataError(
                f"{folder} holds {n} A|B image; shuffling the pairing away needs at least 2. Add images or use "
                "the `aligned` dataset."
            )
        order = _permutation(n, seed)
        self.partner = [0] * n
        for k, i in enumerate(order):
            self.partner[i] = order[(k + 1) % n]

    def __len__(self) -> int:
        return len(self.aligned)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"Expected an index in [0, {len(self)}), got {index}")
        item = self.aligned[index]
        item["B"] = self.aligned[self.partner[index]]["B"]
        return item


def _domain_folder(root: Path, split: str, name: str) -> Path:
    """root/<split><name> (the CycleGAN layout, trainA) if it exists, else root/<split>/<name>."""
    if not split:
        return root / name
    joined = root / f"{split}{name}"
    return joined if joined.is_dir() else root / split / name


@register_dataset()
def unaligned(*, root: str, split: str = "train", a_dir: str = "A", b_dir: str = "B", seed: int = 0) -> UnalignedDataset:
    """Unpaired images of two domains, in root/<split>A/ and root/<split>B/ (the CycleGAN layout:
    trainA, trainB, testA, testB) or else root/<split>/A/ and root/<split>/B/; split "" reads
    root/A/ and root/B/. B is paired with A by a permutation fixed by `seed`; the length is that of
    the larger domain.
    """
    base = Path(root)
    return UnalignedDataset(_domain_folder(base, split, a_dir), _domain_folder(base, split, b_dir), seed)


@register_dataset()
def aligned_unpaired(
    *, root: str, split: str = "train", direction: Direction = "AtoB", seed: int = 0
) -> AlignedUnpairedDataset:
    """pix2pix A|B images in root/<split>/ with the pairing shuffled away: every A comes with the B
    half of another file (a derangement fixed by `seed`), so a paired set serves as unpaired data."""
    return AlignedUnpairedDataset(Path(root) / split, direction, seed)
