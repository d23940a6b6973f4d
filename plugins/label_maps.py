"""Label-map data for semantic image synthesis (label map -> photo: pix2pixHD, SPADE), and the
helpers a method needs to turn class ids into network inputs.

Papers: pix2pixHD (Wang et al., CVPR 2018, https://arxiv.org/abs/1711.11585) feeds a one-hot label
map plus an instance-boundary map; SPADE (Park et al., CVPR 2019, https://arxiv.org/abs/1903.07291)
feeds the same into every normalisation layer.

The dataset `label_maps` reads label maps as they come:

- **index maps** (`labels = "index"`): one-channel PNGs (grey or palette-mode) whose values are
  class ids 0..label_nc-1, with an optional don't-care id (`dont_care`, e.g. 255) kept as it is;
- **colour maps** (`labels = "palette"`): RGB maps whose colours are the classes of the registered
  palette that `data.palette` names (`"facades"`); class id i is the palette's i-th colour. Each
  pixel snaps to the nearest colour; one farther than `max_distance` is an error, or with
  `dont_care` set gets that id;

Index maps stored in another numbering can be remapped as they are read, the way the SPADE
reference's datasets remap theirs (so that its published weights, imported with `tkit convert`,
see the ids they were trained on): `label_shift = s` turns stored ids >= s into id - s and sends
the ids below s to the last class, label_nc - 1 (ADE20K: `label_shift = 1` turns the stored 1..150
into 0..149 and the unlabelled 0 into 150, the reference's don't-care channel); `unknown_id` (e.g.
255, which the reference sends to that channel in every dataset) also becomes the last class. A
`dont_care` id is kept as it is (an all-zero class vector), before any of this.

from two layouts: pix2pix A|B files (`layout = "aligned"`; `direction = "BtoA"`, the default,
means the label map is the right half, as in facades) and separate folders (`layout = "folders"`:
`labels/`, `images/` and optionally `instances/` under root/<split>/, matched by file stem).

Items (the contract methods read):

- `"A"`: the label map, uint8 `(1, H, W)` class ids (or the don't-care id);
- `"B"`: the photo, uint8 `(C, H, W)` (converted to `data.out_channels` by the core);
- `"instances"` (when `instances_dir` is set): instance ids, int32 `(1, H, W)`, exact up to the
  16-bit PNGs Cityscapes uses (ids up to 65535);
- `"name"`: the file stem.

`"A"` and `"instances"` are the dataset's `label_keys`: the core resizes them with nearest
neighbour only and never converts their channels, and a method crops and flips them with
`PairedJitter(..., label_keys=("A", "instances"))`, which keeps their integer values exact.
A method then builds its input on the device with `label_input` (`one_hot` of the ids plus
`boundary_map` of the instances: `label_channels(label_nc, instances=True)` channels).

Example:
    >>> remap_ids(torch.tensor([0, 1, 2, 150, 255]), label_nc=151, label_shift=1, unknown_id=255).tolist()
    [150, 0, 1, 149, 150]
    >>> ids = torch.tensor([[[[0, 1], [2, 255]]]])
    >>> one_hot(ids, 3, dont_care=255)[0, :, 1].tolist()
    [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    >>> boundary_map(torch.tensor([[[[7, 7, 9]]]])).tolist()
    [[[[0.0, 1.0, 1.0]]]]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from translate_kit.api import (
    DataError,
    Palette,
    decode_palette,
    from_unit_range,
    list_images,
    read_image,
    register_dataset,
)

__all__ = [
    "LabelMapDataset",
    "boundary_map",
    "label_channels",
    "label_input",
    "label_maps",
    "labels_from_image",
    "one_hot",
    "remap_ids",
]

Direction = Literal["AtoB", "BtoA"]
_SKIP_HINT = 'data.on_error = "skip" leaves such files out of training (and lists them)'


# ------------------------------------------------------------------------------------------------
# Helpers for methods: class ids -> network inputs, on any device


def one_hot(
    labels: torch.Tensor, label_nc: int, *, dont_care: int | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One channel per class: 1 where a pixel has that class id, 0 elsewhere.

    Built by a scatter whose indices are clamped first, so a bad id can never trigger a device-side
    assert: ids are checked beforehand and a bad one is a `ValueError` naming it.

    Args:
        labels: integer class ids `(B, 1, H, W)` or `(B, H, W)`, on any device.
        label_nc: the number of classes; ids run 0..label_nc-1.
        dont_care: an id that marks unlabelled pixels (e.g. 255): their vector is all zeros.
        dtype: the floating dtype of the result.

    Returns:
        `(B, label_nc, H, W)` of `dtype` on the labels' device.

    Raises:
        ValueError: an id is neither a class nor `dont_care`.

    Example:
        >>> one_hot(torch.tensor([[[2, 0]]]), 3)[0, :, 0].tolist()
        [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    ids = _id_map(labels, "labels")
    if isinstance(label_nc, bool) or not isinstance(label_nc, int) or label_nc < 1:
        raise ValueError(f"Expected label_nc to be a positive int, got {label_nc!r}")
    valid = (ids >= 0) & (ids < label_nc)
    bad = ~valid if dont_care is None else ~valid & (ids != dont_care)
    if bool(bad.any()):
        values = torch.unique(ids[bad])[:8].tolist()
        allowed = f"0..{label_nc - 1}" + (f" or the don't-care id {dont_care}" if dont_care is not None else "")
        raise ValueError(f"Expected class ids {allowed} (label_nc={label_nc}), got {values} in {int(bad.sum())} pixels")
    out = torch.zeros(ids.shape[0], label_nc, *ids.shape[-2:], dtype=dtype, device=ids.device)
    return out.scatter_(1, ids.clamp(0, label_nc - 1), valid.to(dtype))


def boundary_map(instances: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Instance boundaries as pix2pixHD and SPADE feed them: 1 where a pixel's instance id differs
    from that of one of its 4 neighbours (both pixels of such a pair are marked), else 0.

    Args:
        instances: integer instance ids `(B, 1, H, W)` or `(B, H, W)`, any integer dtype.
        dtype: the floating dtype of the result.

    Returns:
        `(B, 1, H, W)` of `dtype` on the instances' device.

    Example:
        >>> boundary_map(torch.tensor([[[[1, 1], [1, 2]]]]))[0, 0].tolist()
        [[0.0, 1.0], [1.0, 1.0]]
    """
    ids = _id_map(instances, "instances")
    edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    across = ids[..., :, 1:] != ids[..., :, :-1]  # a change between columns x and x + 1
    edge[..., :, 1:] |= across
    edge[..., :, :-1] |= across
    down = ids[..., 1:, :] != ids[..., :-1, :]  # between rows y and y + 1
    edge[..., 1:, :] |= down
    edge[..., :-1, :] |= down
    return edge.to(dtype)


def label_channels(label_nc: int, *, instances: bool = False) -> int:
    """Channels of `label_input`: one per class, plus the boundary map when instances are used.

    Example:
        >>> label_channels(35, instances=True)
        36
    """
    return label_nc + int(instances)


def label_input(
    labels: torch.Tensor,
    label_nc: int,
    *,
    instances: torch.Tensor | None = None,
    dont_care: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A semantic-synthesis generator's input: `one_hot(labels)`, then `boundary_map(instances)`.

    Args:
        labels: class ids `(B, 1, H, W)`, as the `label_maps` dataset gives them (`"A"`).
        label_nc: the number of classes.
        instances: instance ids `(B, 1, H, W)` (`"instances"`), or None without instance maps.
        dont_care: the don't-care id, whose pixels get all-zero class vectors.
        dtype: the floating dtype of the result.

    Returns:
        `(B, label_channels(label_nc, instances=...), H, W)` of `dtype`.

    Example:
        >>> ids = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
        >>> label_input(ids, 3, instances=torch.zeros(1, 1, 4, 4, dtype=torch.int32)).shape
        torch.Size([1, 4, 4, 4])
    """
    parts = [one_hot(labels, label_nc, dont_care=dont_care, dtype=dtype)]
    if instances is not None:
        if instances.shape[-2:] != labels.shape[-2:] or instances.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Expected instances of the labels' batch and size {tuple(labels.shape)}, got {tuple(instances.shape)}"
            )
        parts.append(boundary_map(instances, dtype))
    return torch.cat(parts, dim=1)


def labels_from_image(x: torch.Tensor, *, palette: Palette | None = None) -> torch.Tensor:
    """Class ids `(B, 1, H, W)` (int64) from a label map given as an image in [-1, 1], as
    `translate`, sample pages, `tkit eval` and `tkit serve` hand inputs over.

    A one-channel input is a map of ids in the unit range (`to_unit_range` of the uint8 ids: exact
    both ways); a three-channel input is a colour map, each pixel snapped to the nearest colour of
    `palette` (a painted map from `tkit serve`, a colour PNG given to `tkit translate`).

    Example:
        >>> from translate_kit.api import to_unit_range
        >>> labels_from_image(to_unit_range(torch.tensor([[[[0, 7, 255]]]], dtype=torch.uint8))).tolist()
        [[[[0, 7, 255]]]]
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Expected a label map of shape (B, 1, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    values = from_unit_range(x)
    if x.shape[1] == 1:
        return values.to(torch.int64)
    if palette is None:
        raise ValueError("Expected a palette to decode a colour label map (B, 3, H, W), got None")
    return decode_palette(values, palette).unsqueeze(1)


def _id_map(labels: torch.Tensor, what: str) -> torch.Tensor:
    """(B, 1, H, W) int64 ids from (B, 1, H, W) or (B, H, W) integers."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"Expected {what} to be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"Expected integer {what}, got {labels.dtype}")
    if labels.ndim == 3:
        labels = labels.unsqueeze(1)
    if labels.ndim != 4 or labels.shape[1] != 1:
        raise ValueError(f"Expected {what} of shape (B, 1, H, W) or (B, H, W), got {tuple(labels.shape)}")
    return labels.to(torch.int64)


def remap_ids(
    stored: torch.Tensor, *, label_nc: int, label_shift: int = 0, unknown_id: int | None = None,
    dont_care: int | None = None,
) -> torch.Tensor:
    """Stored class ids in the numbering a model was trained on (the `label_maps` options of the
    same names; the SPADE reference's remapping).

    In order: `dont_care` stays as it is; ids below `label_shift`, and `unknown_id`, become the
    last class `label_nc - 1`; every other id becomes id - `label_shift`. Whether the results are
    classes is not checked here (the dataset checks the stored ids and names the bad ones).

    Args:
        stored: integer ids as stored, any shape.
        label_nc: the number of classes after remapping.
        label_shift: stored ids below it are unlabelled; the others move down by it.
        unknown_id: a stored id that also becomes the last class, or None.
        dont_care: a stored id kept as it is, or None.

    Returns:
        int64 ids of `stored`'s shape.

    Example:
        >>> remap_ids(torch.tensor([0, 3, 255]), label_nc=4, unknown_id=255).tolist()  # 255 -> the last class
        [0, 3, 3]
        >>> remap_ids(torch.tensor([0, 1, 255]), label_nc=3, label_shift=1, dont_care=255).tolist()
        [2, 0, 255]
    """
    ids = stored.to(torch.int64)
    out = ids - label_shift
    last = ids < label_shift
    if unknown_id is not None:
        last |= ids == unknown_id
    out[last] = label_nc - 1
    if dont_care is not None:
        keep = ids == dont_care
        out[keep] = ids[keep]
    return out


# ------------------------------------------------------------------------------------------------
# Reading files


def _decode(path: Path, *, rgb: bool, what: str) -> torch.Tensor:
    """A file as stored: `(C, H, W)` uint8 or uint16 (palette PNGs give their indices), or RGB."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    if not raw:
        raise DataError(f"{what[:1].upper()}{what[1:]} {path} is empty (0 bytes). Delete or replace it.")
    try:
        image = decode_image(torch.frombuffer(bytearray(raw), dtype=torch.uint8),
                             mode=ImageReadMode.RGB if rgb else ImageReadMode.UNCHANGED)
    except RuntimeError as exc:
        raise DataError(
            f"Cannot decode {what} {path}: {str(exc).splitlines()[0]}. The file is corrupt, truncated or not an "
            "image; delete or replace it."
        ) from None
    if image.ndim == 4:  # an animation: its first frame
        image = image[0]
    if rgb and image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image


def _one_channel(image: torch.Tensor, path: Path, what: str) -> torch.Tensor:
    """The id channel of an index image: grey, grey + alpha, or RGB(A) whose channels agree."""
    if image.shape[0] in (1, 2):
        return image[:1]
    if image.shape[0] in (3, 4) and torch.equal(image[0], image[1]) and torch.equal(image[0], image[2]):
        return image[:1]
    raise DataError(
        f"{what[:1].upper()}{what[1:]} {path} has {image.shape[0]} channels of different values; an index map holds "
        "one channel of ids (a grey or palette-mode PNG). If its colours stand for classes, read it as a colour "
        'map: data.labels = "palette" with data.palette naming its palette.'
    )


def _first(mask: torch.Tensor) -> tuple[int, int]:
    """(x, y) of the first True pixel of an (H, W) mask, in reading order."""
    index = int(mask.flatten().nonzero()[0])
    return index % mask.shape[-1], index // mask.shape[-1]


class LabelMapDataset(Dataset):
    """Label maps with their photos (and instance maps); see the module docstring for the items.

    Args:
        files: per item, `(label or A|B file, photo file or None, instance file or None)`.
        layout: "aligned" (one A|B file per item) or "folders".
        direction: aligned only: "BtoA" (label map on the right) or "AtoB" (on the left).
        labels: "index" or "palette".
        label_nc: the number of classes.
        dont_care: the don't-care id, or None.
        palette: the colours of a colour map (`labels = "palette"`).
        max_distance: colour maps: the largest RGB distance to a palette colour that still counts.
        skipped: `(file, reason)` of items left out when the list was made (no partner).
        label_shift, unknown_id: index maps: how stored ids are remapped (`remap_ids`).
    """

    def __init__(
        self,
        files: list[tuple[Path, Path | None, Path | None]],
        *,
        layout: str,
        direction: Direction,
        labels: str,
        label_nc: int,
        dont_care: int | None,
        palette: Palette | None,
        max_distance: float,
        skipped: list[tuple[str, str]] | None = None,
        label_shift: int = 0,
        unknown_id: int | None = None,
    ) -> None:
        self.label_shift, self.unknown_id = label_shift, unknown_id
        self.items = files
        self.files = [label for label, _, _ in files]  # what the core names in skip reports
        self.layout, self.direction, self.labels = layout, direction, labels
        self.label_nc, self.dont_care, self.palette, self.max_distance = label_nc, dont_care, palette, max_distance
        self.skipped = list(skipped or [])
        self.label_keys = ("A", "instances") if files and files[0][2] is not None else ("A",)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        label_path, photo_path, instance_path = self.items[index]
        if self.layout == "aligned":
            image = read_image(label_path)
            width = image.shape[-1]
            if width < 2:
                raise DataError(f"Image {label_path} is {width} pixel wide; an A|B pair needs two halves side by side.")
            half = width // 2
            left, right = image[..., :half], image[..., width - half :]
            photo, raw = (left, right) if self.direction == "BtoA" else (right, left)
            offset = width - half if self.direction == "BtoA" else 0
            where = f"{label_path} (its {'right' if offset else 'left'} half; x counts from the file's left edge)"
            if self.labels == "palette" and raw.shape[0] == 1:
                raw = raw.expand(3, -1, -1)
        else:
            assert photo_path is not None
            raw = _decode(label_path, rgb=self.labels == "palette", what="label map")
            photo = read_image(photo_path)
            offset, where = 0, str(label_path)
            if photo.shape[-2:] != raw.shape[-2:]:
                raise DataError(
                    f"Photo {photo_path} is {_size(photo)} but its label map {label_path} is {_size(raw)}: every "
                    "photo pixel needs its label. Resize the label map with nearest neighbour (never bilinear, "
                    f"which invents ids) to the photo's size, or pair the right files; {_SKIP_HINT}."
                )
        if self.labels == "palette":
            ids = self._decode_palette(raw, where, offset)
        else:
            ids = self._check_ids(_one_channel(raw, label_path, "index map")[0].to(torch.int32), where, offset)
        item: dict[str, torch.Tensor | str] = {"A": ids, "B": photo, "name": label_path.stem}
        if instance_path is not None:
            item["instances"] = self._instances(instance_path, label_path, ids)
        return item

    def _instances(self, path: Path, label_path: Path, ids: torch.Tensor) -> torch.Tensor:
        instances = _one_channel(_decode(path, rgb=False, what="instance map"), path, "instance map")
        if instances.shape[-2:] != ids.shape[-2:]:
            raise DataError(
                f"Instance map {path} is {_size(instances)} but its label map {label_path} is {_size(ids)}: every "
                "label pixel needs its instance id. Resize the instance map with nearest neighbour to the label "
                f"map's size, or pair the right files; {_SKIP_HINT}."
            )
        return instances.to(torch.int32)  # 8- or 16-bit PNG values, exact

    def _check_ids(self, ids: torch.Tensor, where: str, offset: int) -> torch.Tensor:
        """Stored ids, checked, then remapped (`label_shift`, `unknown_id`)."""
        shift, unknown = self.label_shift, self.unknown_id
        bad = ids >= self.label_nc + shift  # ids below the shift become the last class
        if self.dont_care is not None:
            bad &= ids != self.dont_care
        if unknown is not None:
            bad &= ids != unknown
        if bool(bad.any()):
            x, y = _first(bad)
            value = int(ids[y, x])
            others = torch.unique(ids[bad]).tolist()
            shown = ", ".join(map(str, others[:8])) + (", ..." if len(others) > 8 else "")
            allowed = f"0..{self.label_nc - 1}"
            setting = f"data.label_nc = {self.label_nc}"
            if shift:
                allowed = f"{shift}..{self.label_nc - 1 + shift} (shifted down by {shift}) and ids below {shift}"
                setting += f" with data.label_shift = {shift}"
            if unknown is not None:
                allowed += f", the unknown id {unknown}"
            if self.dont_care is not None:
                allowed += f" and the don't-care id {self.dont_care}"
            hint = ""
            if value <= 255 and self.dont_care is None and unknown is None:
                hint = f"set data.dont_care = {value} (or data.unknown_id) if it marks unlabelled pixels, "
            raise DataError(
                f"Label map {where} has id {value} at pixel (x={x + offset}, y={y}), but {setting} allows stored "
                f"ids {allowed}; {int(bad.sum()):,} pixel(s) hold ids outside it ({shown}). Set data.label_nc to the "
                f"number of classes (more than the largest id after the shift), {hint}or fix the file; {_SKIP_HINT}."
            )
        if shift or unknown is not None:
            ids = remap_ids(ids, label_nc=self.label_nc, label_shift=shift, unknown_id=unknown,
                            dont_care=self.dont_care)
        return ids.to(torch.uint8).unsqueeze(0)

    def _decode_palette(self, raw: torch.Tensor, where: str, offset: int) -> torch.Tensor:
        assert self.palette is not None
        limit = None if math.isinf(self.max_distance) else self.max_distance
        ids = decode_palette(raw[:3], self.palette, max_distance=limit, ignore_index=-1)
        far = ids < 0
        if bool(far.any()):
            if self.dont_care is None:
                x, y = _first(far)
                colour = raw[:3, y, x].to(torch.int32)
                distances = ((self.palette.color_table().to(torch.int32) - colour).square().sum(1)).double().sqrt()
                near = int(distances.argmin())
                raise DataError(
                    f"Label map {where} has colour {tuple(colour.tolist())} at pixel (x={x + offset}, y={y}), "
                    f"{float(distances[near]):.1f} away from the nearest colour of data.palette "
                    f"({self.palette.names[near]} {self.palette.colors[near]}); data.max_distance = "
                    f"{self.max_distance:g} allows no more. {int(far.sum()):,} pixel(s) of the map are that far. "
                    "Use the palette the map was drawn with, raise data.max_distance (JPEG blurs colours at region "
                    "edges; store label maps as PNG), set data.dont_care to give such pixels that id, or fix the "
                    f"file; {_SKIP_HINT}."
                )
            ids[far] = self.dont_care
        return ids.to(torch.uint8).unsqueeze(0)


def _size(image: torch.Tensor) -> str:
    return f"{image.shape[-1]}x{image.shape[-2]} (WxH)"


def _folder_items(
    base: Path, labels_dir: str, images_dir: str, instances_dir: str, on_error: str
) -> tuple[list[tuple[Path, Path | None, Path | None]], list[tuple[str, str]]]:
    """Label maps matched with photos (and instance maps) by stem; unmatched files fail or are skipped."""
    label_files = list_images(base / labels_dir, what="label maps")
    photos = {p.stem: p for p in list_images(base / images_dir, what="photos")}
    instances = {p.stem: p for p in list_images(base / instances_dir, what="instance maps")} if instances_dir else {}
    labelled = {p.stem for p in label_files}
    missing: list[tuple[str, str]] = []
    items: list[tuple[Path, Path | None, Path | None]] = []
    for path in label_files:
        lacks = [] if path.stem in photos else [f"photo {base / images_dir}/{path.stem}.*"]
        if instances_dir and path.stem not in instances:
            lacks.append(f"instance map {base / instances_dir}/{path.stem}.*")
        if lacks:
            missing.append((str(path), "no partner: no " + " and no ".join(lacks)))
        else:
            items.append((path, photos[path.stem], instances.get(path.stem)))
    missing += [(str(photo), f"no partner: no label map {base / labels_dir}/{stem}.*")
                for stem, photo in photos.items() if stem not in labelled]
    partners = f"a photo in {images_dir}/" + (f" and an instance map in {instances_dir}/" if instances_dir else "")
    if missing and on_error != "skip":
        shown = "; ".join(f"{name} has {reason}" for name, reason in missing[:3])
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DataError(
            f"{len(missing)} file(s) lack a partner with the same name: {shown}{more}. Every label map needs "
            f'{partners} with the same stem; add or remove files, or set data.on_error = "skip" to leave them out '
            "(and list them)."
        )
    if not items:
        raise DataError(f"No label map in {base / labels_dir} has {partners} with the same stem.")
    return items, missing


@register_dataset()
def label_maps(
    *,
    root: str,
    split: str = "train",
    layout: Literal["aligned", "folders"] = "aligned",
    direction: Direction = "BtoA",
    labels: Literal["palette", "index"] = "palette",
    label_nc: int = 0,
    dont_care: int = -1,
    max_distance: float = math.inf,
    label_shift: int = 0,
    unknown_id: int = -1,
    labels_dir: str = "labels",
    images_dir: str = "images",
    instances_dir: str = "",
    on_error: Literal["fail", "skip"] = "fail",
    palette: Palette | None = None,
) -> LabelMapDataset:
    """Label maps (input "A", uint8 class ids) with photos (target "B") and optional instance maps.

    Args:
        root: the data folder; files are in root/<split>/ (split "" for root itself).
        split: the split folder.
        layout: "aligned": pix2pix A|B files; "folders": labels_dir/, images_dir/ (and
            instances_dir/) under root/<split>/, matched by file stem.
        direction: aligned: "BtoA" takes the label map from the right half (facades), "AtoB" from
            the left.
        labels: "palette": colour maps of the palette `data.palette` names; "index": one-channel
            maps of class ids.
        label_nc: the number of classes (ids 0..label_nc-1); 0: the palette's number of colours.
        dont_care: the id of unlabelled pixels, kept as is (e.g. 255; at least label_nc); with
            colour maps, the id of pixels farther than `max_distance` from every colour. -1: none.
        max_distance: colour maps: a pixel farther (RGB distance) from every palette colour is an
            error (or `dont_care`); inf: every pixel takes its nearest colour.
        label_shift: index maps: stored ids >= label_shift become id - label_shift, and the ids
            below it (unlabelled) the last class, label_nc - 1: the SPADE reference's ADE20K
            numbering (label_shift 1: stored 0 -> 150, 1..150 -> 0..149, with label_nc 151). 0:
            ids as stored.
        unknown_id: index maps: a stored id that also becomes the last class label_nc - 1, as the
            SPADE reference sends 255 to its don't-care channel (COCO-Stuff); -1: none. Unlike
            `dont_care` (all-zero class vectors) this pixel gets a class channel of its own.
        labels_dir, images_dir, instances_dir: the folders of the "folders" layout;
            instances_dir "" reads no instance maps.
        on_error: set from data.on_error: "skip" leaves out files without a partner.
        palette: set from data.palette by the core: the registered palette it names.
    """
    if labels == "palette" and palette is None:
        raise ValueError('labels = "palette" needs data.palette to name a registered palette (e.g. "facades"); '
                         'for maps of class ids set labels = "index" and label_nc')
    if label_nc == 0:
        if palette is None:
            raise ValueError('labels = "index" needs label_nc >= 1 (the number of classes), or a data.palette')
        label_nc = palette.num_classes
    if palette is not None and label_nc != palette.num_classes:
        raise ValueError(f"label_nc = {label_nc} differs from the {palette.num_classes} classes of data.palette; "
                         "leave label_nc out to take the palette's")
    if not 1 <= label_nc <= 256:
        raise ValueError(f"label_nc must be in 1..256 (ids are stored as uint8), got {label_nc}")
    if isinstance(label_shift, bool) or not 0 <= label_shift <= 255:
        raise ValueError(f"label_shift must be in 0..255 (stored ids are 8-bit; 0: ids as stored), got {label_shift!r}")
    if (label_shift or unknown_id != -1) and labels != "index":
        raise ValueError(f'label_shift and unknown_id remap the stored ids of index maps (labels = "index"); colour '
                         f"maps decode to the palette's ids, so leave them out for labels = {labels!r}")
    if label_shift and label_nc < 2:
        raise ValueError(f"label_shift = {label_shift} needs label_nc >= 2 (the classes, and the last class that ids "
                         f"below the shift become), got label_nc = {label_nc}")
    first_free = label_nc + label_shift  # the first stored id that is no class
    if dont_care != -1 and not first_free <= dont_care <= 255:
        raise ValueError(f"dont_care must be -1 (none) or a stored id in {first_free}..255 (not a class"
                         f"{' after label_shift' if label_shift else ''}), got {dont_care}")
    if unknown_id != -1 and not first_free - 1 <= unknown_id <= 255:
        raise ValueError(f"unknown_id must be -1 (none) or a stored id in {first_free - 1}..255 (not a class but the "
                         f"last, label_nc - 1{' after label_shift' if label_shift else ''}), got {unknown_id}")
    if unknown_id != -1 and unknown_id == dont_care:
        raise ValueError(f"unknown_id and dont_care are both {unknown_id}: the id becomes the last class (unknown_id) "
                         "or an all-zero class vector (dont_care), not both; drop one")
    if not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0 (inf: no limit), got {max_distance}")
    base = Path(root) / split if split else Path(root)
    if layout == "aligned":
        if instances_dir:
            raise ValueError('instances_dir needs layout = "folders" (an A|B file has no room for an instance map)')
        items: list[tuple[Path, Path | None, Path | None]] = [
            (path, None, None) for path in list_images(base, what="A|B label map and photo pairs")
        ]
        skipped: list[tuple[str, str]] = []
    else:
        items, skipped = _folder_items(base, labels_dir, images_dir, instances_dir, on_error)
    return LabelMapDataset(
        items,
        layout=layout,
        direction=direction,
        labels=labels,
        label_nc=label_nc,
        dont_care=None if dont_care == -1 else dont_care,
        palette=palette,
        max_distance=max_distance,
        skipped=skipped,
        label_shift=label_shift,
        unknown_id=None if unknown_id == -1 else unknown_id,
    )
