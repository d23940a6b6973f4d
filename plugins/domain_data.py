"""Multi-domain datasets: single images, each with the label vector of its domain (StarGAN's data).

StarGAN (Choi et al., CVPR 2018, https://arxiv.org/abs/1711.09020) learns every mapping among
several domains with one generator, so its data is a pool of unpaired images, each labelled with
the domain it belongs to:

- `domain_folders`: `root/<split>/<domain>/*.png`, one folder per domain (the reference's RaFD
  layout, read there with torchvision's ImageFolder); the label is one-hot over `domains`;
- `celeba_attributes`: CelebA's `list_attr_celeba.txt` (a count line, a line of attribute names,
  then `file value value ...` rows of 1 / -1) or its comma-separated `.csv` form (a header row
  `image_id,attr,...`), with the images in one folder; the label holds the `selected_attrs` as
  0 / 1 (several may be 1). The train/test split is the reference's: the rows shuffled by
  Python's `random` seeded with 1234, the first 1999 for test.

Items are `{"A": uint8 (C, H, W), "name": str, "domain": float32 (n,), "domain_names": str}`:
the image at its stored size (the core resizes and caches it), the label vector, and the names
of the label's entries joined by commas, so a method can check that its own domain list is the
one the labels are in (`DOMAIN_KEY`, `DOMAIN_NAMES_KEY`). There is no "B": a multi-domain method
has no target image (StarGAN's `prepare_batch` shows the input in its place on sample pages).

`tkit data facades-domains SRC DST` turns the pix2pix facades (A|B files: photo | colour label
map) into three domains of the same scenes, written as domain folders: `photo`, `labels` (the
map snapped to the 12 CMP colours, which removes the JPEG blur of the originals) and `edges`
(black class boundaries, two pixels wide, on white). Every split keeps the file stems, so
`test/labels/7.png` and `test/photo/7.png` show the same facade: labels -> photo outputs can be
scored against the real photos, photo -> labels outputs against the real maps. This is data for
the StarGAN family made here, not a set from the paper.

Example:
    >>> dataset = DomainFoldersDataset(root, split="train", domains=["photo", "labels"])  # doctest: +SKIP
    >>> item = dataset[0]; item["domain"], item["domain_names"]  # doctest: +SKIP
    (tensor([1., 0.]), 'photo,labels')
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import torch
import typer
from torch.utils.data import Dataset

from translate_kit.api import (
    FACADES,
    DataError,
    OptionError,
    cli_command,
    decode_palette,
    did_you_mean,
    encode_palette,
    hookimpl,
    list_images,
    read_image,
    register_dataset,
)

__all__ = [
    "CELEBA_ATTRIBUTES",
    "DOMAIN_KEY",
    "DOMAIN_NAMES_KEY",
    "FACADES_DOMAINS",
    "AttributeTable",
    "CelebAAttributesDataset",
    "DomainFoldersDataset",
    "celeba_attributes",
    "class_boundaries",
    "domain_folders",
    "read_attribute_table",
    "write_facades_domains",
]

DOMAIN_KEY = "domain"  # an item's label vector, float32 (n,)
DOMAIN_NAMES_KEY = "domain_names"  # the names of its entries, joined by commas
# The five attributes of the paper's CelebA experiments (the reference's default selected_attrs).
CELEBA_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
FACADES_DOMAINS = ("photo", "labels", "edges")  # what `tkit data facades-domains` writes


def _check_names(names: Sequence[str], what: str) -> None:
    """Names usable as label entries: non-empty, unique, without the comma that joins them."""
    if not names:
        raise DataError(f"Expected at least one {what}, got none.")
    bad = [n for n in names if not n or "," in n]
    if bad:
        raise DataError(f"Expected {what} names without commas, got {bad[0]!r}.")
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise DataError(f"The {what} {twice[0]!r} is listed twice; list each once.")


# --- domain folders ---------------------------------------------------------------------------


class DomainFoldersDataset(Dataset):
    """Images in `root/<split>/<domain>/`, one folder per domain, labelled one-hot over `domains`.

    Items alternate between the domains (the first image of every domain, then the second of
    every domain, ...), so the first few items, which sample pages show, cover every domain.

    Args:
        root: the dataset folder.
        split: the split folder under it ("train", "val", "test").
        domains: the domain folders, in label order; None or empty: every sub-folder, sorted.

    Raises:
        DataError: the split folder is missing, a domain folder is missing (the message lists the
            folders there) or holds no image.
    """

    def __init__(self, root: Path, split: str = "train", domains: Sequence[str] | None = None) -> None:
        folder = Path(root) / split
        if not folder.is_dir():
            raise DataError(
                f"Data folder {folder} does not exist. Check data.root and data.split in the recipe; for the facades "
                "domains run `tkit data facades-domains SRC DST` first."
            )
        available = sorted(p.name for p in folder.iterdir() if p.is_dir())
        names = list(domains) if domains else available
        if not names:
            raise DataError(f"{folder} holds no domain folder; expected one folder of images per domain.")
        _check_names(names, "domain")
        for name in names:
            if name not in available:
                raise DataError(
                    f"Unknown domain {name!r}: {folder} has no folder of that name.{did_you_mean(name, available)} "
                    f"Folders there: {', '.join(available) or 'none'}. Fix data.domains in the recipe."
                )
        self.domains = tuple(names)
        per_domain = [list_images(folder / name, what=f"images of domain '{name}'") for name in names]
        self.files: list[Path] = []
        self.labels: list[int] = []
        for rank in range(max(len(files) for files in per_domain)):
            for index, files in enumerate(per_domain):
                if rank < len(files):
                    self.files.append(files[rank])
                    self.labels.append(index)
        self.counts = {name: len(files) for name, files in zip(names, per_domain)}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path, label = self.files[index], self.labels[index]
        onehot = torch.zeros(len(self.domains))
        onehot[label] = 1.0
        return {"A": read_image(path), "name": f"{self.domains[label]}-{path.stem}", DOMAIN_KEY: onehot,
                DOMAIN_NAMES_KEY: ",".join(self.domains)}


@register_dataset()
def domain_folders(*, root: str, split: str = "train", domains: list[str] | None = None) -> DomainFoldersDataset:
    """Unpaired images in root/<split>/<domain>/, one-hot domain labels (StarGAN's single-label data)."""
    return DomainFoldersDataset(Path(root), split, domains)


# --- CelebA attributes ------------------------------------------------------------------------


class AttributeTable:
    """A parsed attribute file: the attribute names and, per image file, its row of +1 / -1.

    Attributes:
        path: the file.
        names: the attribute names, in the file's column order.
        files: the image file names, in row order.
        values: int8 `(len(files), len(names))`, +1 or -1.
    """

    def __init__(self, path: Path, names: list[str], files: list[str], values: torch.Tensor) -> None:
        self.path, self.names, self.files, self.values = path, names, files, values

    def columns(self, selected: Sequence[str]) -> list[int]:
        """Indices of `selected` among `names`.

        Raises:
            DataError: an attribute the file lacks (with a near name and the file's attributes).
        """
        out = []
        for name in selected:
            if name not in self.names:
                raise DataError(
                    f"Attribute {name!r} is not in {self.path}.{did_you_mean(name, self.names)} Its attributes: "
                    f"{', '.join(self.names)}. Fix data.selected_attrs in the recipe."
                )
            out.append(self.names.index(name))
        return out


def _row_values(tokens: list[str], width: int, path: Path, line: int) -> list[int]:
    if len(tokens) != width + 1:
        raise DataError(
            f"{path}, line {line}: expected a file name and {width} attribute values, got {len(tokens)} field(s)"
            f"{' starting ' + repr(tokens[0]) if tokens else ''}. Fix or remove the row."
        )
    try:
        values = [int(v) for v in tokens[1:]]
    except ValueError:
        values = []
    if len(values) != width or any(v not in (1, -1) for v in values):
        odd = next((v for v in tokens[1:] if v.strip() not in ("1", "-1")), "?")
        raise DataError(
            f"{path}, line {line} ({tokens[0]}): expected attribute values 1 or -1, got {odd!r}. Fix the row."
        )
    return values


def read_attribute_table(path: Path) -> AttributeTable:
    """Read CelebA's attribute list: `list_attr_celeba.txt` (line 1 the image count, line 2 the
    attribute names, then `file v1 v2 ...` rows, whitespace-separated) or its `.csv` form (a
    header row `image_id,name,...`, then comma-separated rows). Values are 1 or -1.

    Raises:
        DataError: a missing file, a count that disagrees with the rows, a row with the wrong
            number of fields or a value other than 1 / -1: the message names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"Cannot read the attribute file {path}: {exc.strerror or exc}. Check data.root and "
                        "data.attr_file in the recipe.") from None
    lines = text.splitlines()
    rows: list[tuple[int, list[str]]] = []
    if lines and "," in lines[0]:  # the .csv form: a header row, then one row per image
        table = list(csv.reader(lines))
        names = [n.strip() for n in table[0][1:]]
        rows = [(i + 1, [t.strip() for t in tokens]) for i, tokens in enumerate(table) if i and any(tokens)]
    else:
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise DataError(
                f"{path}, line 1: expected the number of images (CelebA's list_attr_celeba.txt starts with it, "
                f"then a line of attribute names), got {lines[0].strip()[:40]!r}." if lines else
                f"{path} is empty; expected CelebA's list_attr_celeba.txt."
            )
        names = lines[1].split()
        rows = [(i + 1, line.split()) for i, line in enumerate(lines) if i >= 2 and line.strip()]
        if int(lines[0]) != len(rows):
            raise DataError(
                f"{path}, line 1: the file says {int(lines[0])} images, but {len(rows)} rows follow; the file is cut "
                "short or the count is stale. Fix the count or the rows."
            )
    if not names:
        raise DataError(f"{path}: no attribute names found in its header line.")
    files, values = [], []
    for line, tokens in rows:
        values.append(_row_values(tokens, len(names), path, line))
        files.append(tokens[0])
    return AttributeTable(path, names, files, torch.tensor(values, dtype=torch.int8).view(len(files), len(names)))


class CelebAAttributesDataset(Dataset):
    """CelebA images with their `selected_attrs` as a 0/1 label vector (several may be 1).

    Args:
        root: the dataset folder.
        attr_file: the attribute list under `root`.
        image_dir: the image folder under `root`.
        selected_attrs: the attributes that form the label, in label order.
        split: "train" or "test".
        test_images: rows in the test split, from the head of the shuffled rows (the reference's
            `(i + 1) < 2000` keeps 1999).
        shuffle_seed: seed of Python's `random.shuffle` of the rows (the reference's 1234).
        center_crop: crop the centred square of this side first (CelebA's aligned 178x218 faces:
            178, as the reference does before resizing to 128); 0: no crop.

    Raises:
        DataError: see `read_attribute_table`; an unknown attribute; an empty split; an image
            smaller than `center_crop`.
    """

    def __init__(
        self,
        root: Path,
        *,
        attr_file: str,
        image_dir: str,
        selected_attrs: Sequence[str],
        split: str,
        test_images: int,
        shuffle_seed: int,
        center_crop: int,
    ) -> None:
        _check_names(selected_attrs, "attribute")
        table = read_attribute_table(Path(root) / attr_file)
        columns = table.columns(selected_attrs)
        order = list(range(len(table.files)))
        random.Random(shuffle_seed).shuffle(order)  # the reference's permutation: it depends on the length only
        chosen = order[:test_images] if split == "test" else order[test_images:]
        if not chosen:
            raise DataError(
                f"The {split} split of {table.path} is empty: {len(table.files)} row(s), of which the first "
                f"{test_images} (shuffled) are the test split. Lower data.test_images or add rows."
            )
        self.folder = Path(root) / image_dir
        self.attributes = tuple(selected_attrs)
        self.files = [self.folder / table.files[i] for i in chosen]
        self.targets = ((table.values[chosen][:, columns] + 1) // 2).float()  # -1/1 -> 0/1
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.files[index]
        image = read_image(path)
        side = self.center_crop
        if side:
            height, width = image.shape[-2:]
            if height < side or width < side:
                raise DataError(f"Image {path} is {width}x{height}, smaller than data.center_crop = {side}.")
            top, left = (height - side) // 2, (width - side) // 2
            image = image[:, top : top + side, left : left + side]
        return {"A": image, "name": path.stem, DOMAIN_KEY: self.targets[index].clone(),
                DOMAIN_NAMES_KEY: ",".join(self.attributes)}


@register_dataset()
def celeba_attributes(
    *,
    root: str,
    selected_attrs: list[str],
    split: Literal["train", "test"] = "train",
    attr_file: str = "list_attr_celeba.txt",
    image_dir: str = "images",
    test_images: int = 1999,
    shuffle_seed: int = 1234,
    center_crop: int = 0,
) -> CelebAAttributesDataset:
    """CelebA images with 0/1 labels of `selected_attrs` from list_attr_celeba.txt (StarGAN's multi-label data)."""
    if test_images < 0 or center_crop < 0:
        raise ValueError(f"Expected test_images >= 0 and center_crop >= 0, got {test_images} and {center_crop}")
    return CelebAAttributesDataset(Path(root), attr_file=attr_file, image_dir=image_dir, selected_attrs=selected_attrs,
                                   split=split, test_images=test_images, shuffle_seed=shuffle_seed,
                                   center_crop=center_crop)


# --- the facades as three domains -------------------------------------------------------------


def class_boundaries(ids: torch.Tensor) -> torch.Tensor:
    """Pixels of a class-index map `(H, W)` that touch another class (4-neighbourhood): both
    pixels of every differing pair are marked, so a boundary is two pixels wide.

    Example:
        >>> class_boundaries(torch.tensor([[0, 0, 1, 1]])).int().tolist()
        [[0, 1, 1, 0]]
    """
    edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    down = ids[1:, :] != ids[:-1, :]
    right = ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    return edge


def _facade_domains(pair: torch.Tensor, path: Path) -> dict[str, torch.Tensor]:
    """An A|B facades file (photo | colour label map) as its three domain images, uint8."""
    if pair.shape[0] != 3 or pair.shape[-1] < 2:
        raise DataError(f"Image {path} is {tuple(pair.shape)}; expected an RGB photo | label map pair side by side.")
    width = pair.shape[-1]
    half = width // 2
    photo, colours = pair[:, :, :half], pair[:, :, width - half :]
    ids = decode_palette(colours.contiguous(), FACADES)  # nearest colour: the originals are JPEG-blurred
    edges = torch.where(class_boundaries(ids), 0, 255).to(torch.uint8)[None]
    return {"photo": photo.contiguous(), "labels": encode_palette(ids, FACADES), "edges": edges}


def write_facades_domains(
    source: Path,
    destination: Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    overwrite: bool = False,
    on_image: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Write the pix2pix facades (`source/<split>/*.jpg`, photo | label map) as the domain folders
    `destination/<split>/{photo,labels,edges}/<stem>.png` (see the module docstring).

    Args:
        source: the facades folder; splits it lacks are skipped.
        destination: where the domain folders go.
        splits: the split folders to convert.
        overwrite: replace PNGs already in the destination's domain folders.
        on_image: called after every source file.

    Returns:
        Files converted per split.

    Raises:
        DataError: no split folder in `source`, an unreadable or malformed file.
        OptionError: the destination already holds images and `overwrite` is off.
    """
    from torchvision.io import write_png

    source, destination = Path(source), Path(destination)
    found = {split: list_images(source / split, what="A|B facade pairs")
             for split in splits if (source / split).is_dir()}
    if not found:
        raise DataError(f"{source} has none of the split folders {', '.join(splits)}; expected the pix2pix facades "
                        "(`tkit data download facades`, or a copy of it).")
    targets = [destination / split / domain for split in found for domain in FACADES_DOMAINS]
    existing = [p for folder in targets if folder.is_dir() for p in folder.glob("*.png")]
    if existing and not overwrite:
        raise OptionError(f"{destination} already holds {len(existing)} domain image(s) (e.g. {existing[0]}); pass "
                          "--overwrite to replace them, or choose another destination.")
    for path in existing:
        path.unlink()
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
    for split, files in found.items():
        for path in files:
            for domain, image in _facade_domains(read_image(path), path).items():
                write_png(image, str(destination / split / domain / f"{path.stem}.png"))
            if on_image is not None:
                on_image()
    counts = {split: len(files) for split, files in found.items()}
    (destination / "DOMAINS.md").write_text(
        "# The pix2pix facades as three domains\n\n"
        f"Written by `tkit data facades-domains` from {source} ({', '.join(f'{s} {n}' for s, n in counts.items())} "
        "files).\nEach `<split>/<domain>/<stem>.png` shows scene `<split>/<stem>.jpg` of the source: `photo` its left "
        "half, `labels` its right half snapped to the 12 CMP facade colours, `edges` the boundaries between those "
        "classes (black, two pixels wide, on white). The same stem is the same scene in every domain.\n",
        encoding="utf-8",
    )
    return counts


@cli_command
def facades_domains_command(
    source: Annotated[Path, typer.Argument(help="The pix2pix facades folder: train/, val/, test/ of A|B .jpg files.")],
    destination: Annotated[Path, typer.Argument(help="Folder to write <split>/{photo,labels,edges}/<stem>.png into.")],
    overwrite: Annotated[bool, typer.Option(help="Replace domain images already in the destination.")] = False,
) -> None:
    """Turn the pix2pix facades into three domains of the same scenes (photo, label map, edge map) as domain
    folders, for multi-domain translation (the domain_folders dataset, recipes/stargan_facades.toml)."""
    counts = write_facades_domains(source, destination, overwrite=overwrite)
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    typer.echo(f"Wrote {sum(counts.values())} scenes x {len(FACADES_DOMAINS)} domains ({', '.join(FACADES_DOMAINS)}) "
               f"to {destination} ({summary}); the same stem is the same scene in every domain.")


@hookimpl
def translate_kit_add_data_commands(data: typer.Typer) -> None:
    """`tkit data facades-domains`, beside the core's `tkit data` commands."""
    data.command("facades-domains")(facades_domains_command)
