"""Label-map data (plugins/label_maps.py): index and colour maps from both layouts, instance maps,
nearest-neighbour resizing and jitter that keep every id, the helpers methods build inputs with,
and the one-paragraph errors for bad labels (or their skips)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from translate_kit_plugins.label_maps import (
    boundary_map,
    label_channels,
    label_input,
    labels_from_image,
    one_hot,
    remap_ids,
)

from translate_kit.data.jitter import PairedJitter
from translate_kit.data.loading import PreparedDataset, build_dataset, collate_items, nearest_resize
from translate_kit.errors import DataError, RecipeError
from translate_kit.eval.labels import FACADES
from translate_kit.method import BatchSpec

SIZE = 16
WITH_INSTANCES = {"layout": "folders", "labels": "index", "label_nc": 4, "dont_care": 255, "instances_dir": "instances"}


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write a PNG exactly as given: (H, W) uint8 grey or uint16, (H, W, 3) RGB, or a palette image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("L").convert("P")
        image.putpalette([v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)])
    image.save(path)
    return path


def id_map(seed: int, ids: list[int], size: int = SIZE) -> np.ndarray:
    """A blocky (size, size) map of the given ids, each block 4x4, so resizing has edges to keep."""
    g = np.random.default_rng(seed)
    blocks = g.choice(ids, size=(size // 4, size // 4))
    return np.kron(blocks, np.ones((4, 4), dtype=np.int64))


def photo(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_folders(root: Path, count: int = 3, *, instances: bool = True, ids=(0, 1, 2, 3, 255)) -> Path:
    for i in range(count):
        save(root / "train" / "labels" / f"{i}.png", id_map(i, list(ids)).astype(np.uint8))
        save(root / "train" / "images" / f"{i}.jpg", photo(i))
        if instances:  # Cityscapes-style ids: class * 1000 + instance, past 8 bits
            instance_ids = id_map(i + 50, [0, 26001, 26002, 33000])
            save(root / "train" / "instances" / f"{i}.png", instance_ids.astype(np.uint16))
    return root


def colour_map(ids: np.ndarray) -> np.ndarray:
    return np.asarray(FACADES.colors, dtype=np.uint8)[ids]


def write_aligned_colour(folder: Path, count: int = 3, labels_right: bool = True) -> Path:
    for i in range(count):
        halves = [photo(i), colour_map(id_map(i, list(range(12))))]
        save(folder / f"{i + 1}.png", np.concatenate(halves if labels_right else halves[::-1], axis=1))
    return folder


def label_maps(registry, root, **options):
    return registry.create("dataset", "label_maps", root=str(root), **options)


# ------------------------------------------------------------------------------------------------
# Reading: both layouts, index and colour maps, instance maps


def test_index_maps_from_folders_with_instances(registry, tmp_path):
    root = write_folders(tmp_path)
    data = label_maps(registry, root, **WITH_INSTANCES)
    assert len(data) == 3 and data.label_keys == ("A", "instances")
    item = data[1]
    assert item["A"].dtype == torch.uint8 and item["A"].shape == (1, SIZE, SIZE)
    assert torch.equal(item["A"][0], torch.from_numpy(id_map(1, [0, 1, 2, 3, 255])).to(torch.uint8))
    assert item["B"].shape == (3, SIZE, SIZE) and item["name"] == "1"
    assert item["instances"].dtype == torch.int32 and item["instances"].shape == (1, SIZE, SIZE)
    assert torch.equal(item["instances"][0], torch.from_numpy(id_map(51, [0, 26001, 26002, 33000])).to(torch.int32))


def test_palette_mode_index_pngs_give_their_indices_not_colours(registry, tmp_path):
    ids = id_map(0, [0, 5, 9])
    save(tmp_path / "labels" / "a.png", ids.astype(np.uint8), mode="P")
    save(tmp_path / "images" / "a.png", photo(0))
    data = label_maps(registry, tmp_path, split="", layout="folders", labels="index", label_nc=10)
    assert data.label_keys == ("A",)
    assert torch.equal(data[0]["A"][0], torch.from_numpy(ids).to(torch.uint8))


@pytest.mark.parametrize("direction", ["BtoA", "AtoB"])
def test_colour_maps_of_a_palette_from_aligned_files(registry, tmp_path, direction):
    write_aligned_colour(tmp_path / "train", labels_right=direction == "BtoA")
    data = label_maps(registry, tmp_path, direction=direction, palette=FACADES, max_distance=0.0)
    item = data[2]
    assert torch.equal(item["A"][0], torch.from_numpy(id_map(2, list(range(12)))).to(torch.uint8))
    assert torch.equal(item["B"], torch.from_numpy(photo(2)).permute(2, 0, 1))
    assert data.label_nc == 12


def test_jpeg_facades_snap_to_the_nearest_colour_or_mark_far_pixels_dont_care(registry, tiny_facades):
    nearest = label_maps(registry, tiny_facades, palette=FACADES)[0]["A"]
    assert nearest.max() < 12  # max_distance = inf: every pixel has a class
    marked = label_maps(registry, tiny_facades, palette=FACADES, max_distance=10.0, dont_care=255)[0]["A"]
    assert set(marked.unique().tolist()) <= set(range(12)) | {255} and (marked == 255).any()
    assert torch.equal(marked[marked != 255], nearest[marked != 255])


def test_options_that_cannot_work_are_recipe_errors(registry, tmp_path):
    write_folders(tmp_path)
    cases = [
        ({"labels": "palette"}, "needs data.palette"),
        ({"labels": "index"}, "needs label_nc >= 1"),
        ({"labels": "index", "label_nc": 300}, r"1\.\.256"),
        ({"labels": "index", "label_nc": 4, "dont_care": 2}, "not a class"),
        ({"palette": FACADES, "label_nc": 5}, "differs from the 12 classes"),
        ({"labels": "index", "label_nc": 4, "instances_dir": "x", "layout": "aligned"}, 'needs layout = "folders"'),
    ]
    for options, message in cases:
        with pytest.raises(RecipeError, match=message):
            label_maps(registry, tmp_path, **{"layout": "folders", **options})


# ------------------------------------------------------------------------------------------------
# Resizing and jitter keep every id


def independent_nearest(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Output pixel i takes input pixel floor((i + 1/2) * n / size), in exact rationals."""
    h, w = labels.shape[-2:]
    rows = [math.floor((Fraction(i) + Fraction(1, 2)) * h / size) for i in range(size)]
    cols = [math.floor((Fraction(j) + Fraction(1, 2)) * w / size) for j in range(size)]
    out = torch.empty(*labels.shape[:-2], size, size, dtype=labels.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[..., i, j] = labels[..., r, c]
    return out


@pytest.mark.parametrize("size", [7, 23, 29, 40])
def test_nearest_resize_matches_an_independent_computation(size):
    labels = torch.randint(0, 2**31 - 1, (1, 14, 19), generator=torch.Generator().manual_seed(size), dtype=torch.int32)
    assert torch.equal(nearest_resize(labels, size), independent_nearest(labels, size))


def test_load_and_jitter_keep_every_label_id(registry, tmp_path, device):
    root = write_folders(tmp_path, count=4)
    data = label_maps(registry, root, **WITH_INSTANCES)
    prepared = PreparedDataset(data, load_size=23, channels={"A": 3, "B": 3}, cache=True)
    originals = [data[i] for i in range(len(data))]
    for item, original in zip((prepared[i] for i in range(len(prepared))), originals):
        # channels={"A": 3} does not touch a label key: no channel conversion, no bicubic blend
        assert item["A"].shape == (1, 23, 23) and item["A"].dtype == torch.uint8
        assert item["instances"].dtype == torch.int32 and item["B"].shape == (3, 23, 23)
        for key in ("A", "instances"):
            assert torch.equal(item[key], independent_nearest(original[key], 23))
    batch = collate_items([prepared[i] for i in range(len(prepared))])
    jitter = PairedJitter(16, True, keys=("B",), label_keys=("A", "instances"))
    torch.manual_seed(0)
    spec = BatchSpec(device, 16, flip=True, channels_last=True)
    out = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in jitter.prepare(batch, spec).items()}
    assert out["A"].dtype == torch.uint8 and out["instances"].dtype == torch.int32 and out["A"].shape == (4, 1, 16, 16)
    assert out["B"].dtype == torch.float32 and out["B"].min() >= -1
    for i, original in enumerate(originals):
        assert set(out["A"][i].unique().tolist()) <= set(original["A"].unique().tolist())
        assert set(out["instances"][i].unique().tolist()) <= set(original["instances"].unique().tolist())
        # labels, instances and photo share one window and flip
        windows = [
            (t, left, f) for t in range(8) for left in range(8) for f in (False, True)
            if all(
                torch.equal(out[k][i], _window(batch[k][i], t, left, f)) for k in ("A", "instances")
            ) and torch.allclose(out["B"][i], _window(batch["B"][i].float() / 127.5 - 1, t, left, f))
        ]
        assert windows, f"sample {i} is not one window of its own maps"
    centred = jitter.prepare(batch, BatchSpec(device, 16, flip=False, train=False))
    assert torch.equal(centred["A"].cpu(), batch["A"][..., 3:19, 3:19])


def _window(x: torch.Tensor, top: int, left: int, flipped: bool) -> torch.Tensor:
    w = x[..., top : top + 16, left : left + 16]
    return w.flip(-1) if flipped else w


def test_jitter_carries_any_integer_dtype_exactly(device):
    torch.manual_seed(1)
    big = torch.randint(-(2**62), 2**62, (6, 1, 10, 10), dtype=torch.int64)
    ids = torch.randint(0, 256, (6, 1, 10, 10), dtype=torch.uint8)
    image = torch.rand(6, 3, 10, 10)
    batch = {"A": image, "B": image[:, :1], "ids": ids, "big": big}
    jitter = PairedJitter(6, True, label_keys=("ids", "big"))
    out = {k: v.cpu() for k, v in jitter({k: v.to(device) for k, v in batch.items()}).items()}
    assert out["big"].dtype == torch.int64 and out["ids"].dtype == torch.uint8
    for i in range(6):
        assert any(
            all(torch.equal(out[k][i], _crop(x[i], t, left, f)) for k, x in (("big", big), ("ids", ids), ("A", image)))
            for t in range(5) for left in range(5) for f in (False, True)
        )


def _crop(x, top, left, flipped):
    w = x[..., top : top + 6, left : left + 6]
    return w.flip(-1) if flipped else w


def test_jitter_refuses_label_keys_that_are_not_integers():
    spec = BatchSpec(torch.device("cpu"), 4, flip=False, train=False)
    batch = {"B": torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "A": torch.zeros(1, 1, 4, 4)}
    with pytest.raises(DataError, match="label maps of integer ids"):
        PairedJitter(4, False, keys=("B",), label_keys=("A",)).prepare(batch, spec)
    with pytest.raises(ValueError, match="to differ"):
        PairedJitter(4, False, keys=("A", "B"), label_keys=("A",))


# ------------------------------------------------------------------------------------------------
# Helpers: one-hot, boundary map, the generator's input


def test_one_hot_against_an_independent_loop(device):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, 1, 5, 6), generator=g)
    labels[0, 0, 1, 2] = labels[1, 0, 4, 5] = 255
    out = one_hot(labels.to(torch.uint8).to(device), 5, dont_care=255)
    assert out.shape == (2, 5, 5, 6) and out.dtype == torch.float32 and out.device.type == device.type
    out = out.cpu()
    for b in range(2):
        for y in range(5):
            for x in range(6):
                v = int(labels[b, 0, y, x])
                assert out[b, :, y, x].tolist() == [float(c == v) for c in range(5)]  # all zero for 255
    assert torch.equal(one_hot(labels[:, 0].clamp(max=4), 5), one_hot(labels.clamp(max=4), 5))


def test_one_hot_names_a_bad_id_instead_of_a_device_assert():
    with pytest.raises(ValueError, match=r"class ids 0\.\.2 or the don't-care id 255.*\[7\]"):
        one_hot(torch.tensor([[[0, 7, 255]]]), 3, dont_care=255)
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        one_hot(torch.tensor([[[0, -1]]]), 3)
    with pytest.raises(TypeError, match="integer"):
        one_hot(torch.zeros(1, 1, 2, 2), 3)


def test_boundary_map_against_an_independent_loop(device):
    g = torch.Generator().manual_seed(3)
    instances = torch.randint(0, 3, (2, 1, 6, 7), generator=g, dtype=torch.int32) * 26001
    out = boundary_map(instances.to(device)).cpu()
    assert out.shape == (2, 1, 6, 7) and out.dtype == torch.float32
    for b in range(2):
        grid = instances[b, 0].tolist()
        for y in range(6):
            for x in range(7):
                neighbours = [(y + dy, x + dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
                differs = any(0 <= ny < 6 and 0 <= nx < 7 and grid[ny][nx] != grid[y][x] for ny, nx in neighbours)
                assert out[b, 0, y, x].item() == float(differs)


def test_label_input_stacks_one_hot_and_boundaries():
    labels = torch.tensor([[[[0, 1], [2, 2]]]], dtype=torch.uint8)
    instances = torch.tensor([[[[5, 5], [5, 6]]]], dtype=torch.int32)
    x = label_input(labels, 3, instances=instances)
    assert x.shape[1] == label_channels(3, instances=True) == 4
    assert torch.equal(x[:, :3], one_hot(labels, 3)) and torch.equal(x[:, 3:], boundary_map(instances))
    assert label_input(labels, 3).shape[1] == label_channels(3) == 3


def test_labels_from_image_reads_id_maps_and_colour_maps():
    from translate_kit.data.jitter import to_unit_range

    ids = torch.tensor([[[[0, 3], [11, 255]]]], dtype=torch.uint8)
    assert torch.equal(labels_from_image(to_unit_range(ids)), ids.long())
    colours = torch.from_numpy(colour_map(np.array([[0, 3], [11, 5]]))).permute(2, 0, 1)[None]
    assert labels_from_image(to_unit_range(colours), palette=FACADES).tolist() == [[[[0, 3], [11, 5]]]]


# ------------------------------------------------------------------------------------------------
# Bad labels: one paragraph naming the file, the pixel and the value; or a logged skip


def test_an_id_outside_label_nc_names_file_pixel_and_value(registry, tmp_path):
    root = write_folders(tmp_path, instances=False)
    ids = id_map(0, [0, 1]).astype(np.uint8)
    ids[5, 9] = 17
    save(root / "train" / "labels" / "0.png", ids)
    data = label_maps(registry, root, layout="folders", labels="index", label_nc=4)
    with pytest.raises(DataError) as caught:
        data[0]
    message = str(caught.value)
    assert "0.png" in message and "id 17 at pixel (x=9, y=5)" in message and "data.label_nc = 4" in message
    assert "data.dont_care = 17" in message and 'data.on_error = "skip"' in message and "\n" not in message
    with pytest.raises(DataError, match="id 255 at pixel"):  # 255 is a don't-care only when declared
        label_maps(registry, root, layout="folders", labels="index", label_nc=4)[1]


def test_a_colour_far_from_every_palette_colour_names_file_pixel_and_colour(registry, tmp_path):
    folder = write_aligned_colour(tmp_path / "train", count=1)
    image = np.asarray(Image.open(folder / "1.png")).copy()
    image[3, SIZE + 6] = (128, 128, 128)  # in the label half, 6 pixels in
    save(folder / "1.png", image)
    data = label_maps(registry, tmp_path, palette=FACADES, max_distance=20.0)
    with pytest.raises(DataError) as caught:
        data[0]
    message = str(caught.value)
    assert "1.png" in message and "(128, 128, 128) at pixel (x=22, y=3)" in message and "right half" in message
    assert "data.max_distance = 20 " in message and "data.dont_care" in message and "\n" not in message
    assert label_maps(registry, tmp_path, palette=FACADES, max_distance=20.0, dont_care=200)[0]["A"][0, 3, 6] == 200


def test_an_instance_map_of_another_size_is_named(registry, tmp_path):
    root = write_folders(tmp_path)
    save(root / "train" / "instances" / "2.png", np.zeros((SIZE, SIZE + 4), dtype=np.uint16))
    data = label_maps(registry, root, **WITH_INSTANCES)
    with pytest.raises(DataError, match=r"Instance map .*2\.png is 20x16 \(WxH\) but its label map .*2\.png is 16x16"):
        data[2]
    save(root / "train" / "images" / "1.jpg", photo(1, size=8))
    with pytest.raises(DataError, match=r"Photo .*1\.jpg is 8x8 \(WxH\) but its label map"):
        data[1]


def test_a_colour_image_read_as_an_index_map_says_so(registry, tmp_path):
    save(tmp_path / "labels" / "a.png", colour_map(id_map(0, [0, 1])))
    save(tmp_path / "images" / "a.png", photo(0))
    with pytest.raises(DataError, match=r'a\.png has 3 channels of different values.*data\.labels = "palette"'):
        label_maps(registry, tmp_path, split="", layout="folders", labels="index", label_nc=12)[0]


def test_missing_partners_are_named_or_skipped(registry, tmp_path):
    root = write_folders(tmp_path, count=4)
    (root / "train" / "images" / "1.jpg").unlink()
    (root / "train" / "instances" / "2.png").unlink()
    save(root / "train" / "images" / "extra.jpg", photo(9))
    with pytest.raises(DataError) as caught:
        label_maps(registry, root, **WITH_INSTANCES)
    message = str(caught.value)
    assert message.startswith("3 file(s) lack a partner") and "1.png has no partner: no photo" in message
    assert "2.png has no partner: no instance map" in message and "extra.jpg has no partner: no label map" in message
    data = label_maps(registry, root, on_error="skip", **WITH_INSTANCES)
    assert [p.stem for p in data.files] == ["0", "3"]
    prepared = PreparedDataset(data, load_size=0, channels={"A": 3, "B": 3}, cache=True, on_error="skip")
    assert len(prepared) == 2 and len(prepared.skipped) == 3
    assert all("no partner" in reason for _, reason in prepared.skipped)


def test_bad_labels_are_skipped_and_logged_with_on_error_skip(registry, tmp_path):
    root = write_folders(tmp_path, count=4)
    ids = id_map(3, [0, 1]).astype(np.uint8)
    ids[0, 0] = 9
    save(root / "train" / "labels" / "3.png", ids)
    save(root / "train" / "instances" / "0.png", np.zeros((SIZE + 1, SIZE), dtype=np.uint16))
    data = label_maps(registry, root, **WITH_INSTANCES)
    prepared = PreparedDataset(data, load_size=SIZE, channels={"A": 3, "B": 3}, cache=True, on_error="skip")
    prepared.warm(threads=2)
    assert len(prepared) == 2 and [prepared[i]["name"] for i in range(2)] == ["1", "2"]
    reasons = dict(prepared.skipped)
    assert "id 9 at pixel (x=0, y=0)" in reasons[str(root / "train" / "labels" / "3.png")]
    assert "Instance map" in reasons[str(root / "train" / "labels" / "0.png")]


def test_the_recipe_passes_its_palette_and_on_error_to_the_dataset(registry, tiny_facades, tmp_path):
    """A tiny test-only recipe: `data.palette` reaches the dataset as the registered Palette."""
    from translate_kit.recipe import load_recipe

    path = tmp_path / "labels.toml"
    path.write_text(
        f'[data]\ndataset = "label_maps"\nroot = "{tiny_facades.as_posix()}"\npalette = "facades"\n'
        'max_distance = 10.0\nload_size = 32\ncrop_size = 32\n[method]\nname = "pix2pix"\n'
    )
    recipe = load_recipe(path, registry=registry)
    dataset = build_dataset(recipe, registry)
    assert dataset.dataset.palette == FACADES and dataset.label_keys == ("A",)
    with pytest.raises(DataError, match="data.max_distance = 10"):
        dataset.prepare(0)
    skipping = build_dataset(load_recipe(path, ["data.on_error=skip"], registry=registry), registry)
    with pytest.raises(DataError, match="Every one of the"):  # JPEG edges: every map has far colours
        skipping.warm(threads=1)
    with pytest.raises(RecipeError, match="needs data.palette"):
        build_dataset(load_recipe(path, ['data.palette=""'], registry=registry), registry)


# ------------------------------------------------------------------------------------------------
# label_shift and unknown_id: the SPADE reference's renumbering


def reference_ade20k(stored: np.ndarray, label_nc: int) -> np.ndarray:
    """The reference's order, written out: 255 -> label_nc, then (ADE20K) minus 1, -1 -> label_nc."""
    label = stored.astype(np.int64)
    label[label == 255] = label_nc
    label = label - 1
    label[label == -1] = label_nc
    return label


def test_label_shift_renumbers_ade20k_ids_exactly(registry, tmp_path):
    stored = id_map(0, [0, 1, 2, 75, 150], size=32).astype(np.uint8)
    save(tmp_path / "labels" / "a.png", stored)
    save(tmp_path / "images" / "a.png", photo(0, 32))
    data = label_maps(registry, tmp_path, split="", layout="folders", labels="index", label_nc=151, label_shift=1)
    ids = data[0]["A"][0]
    assert ids.dtype == torch.uint8
    # Stored 0 (unlabelled) -> 150, the last class; 1..150 -> 0..149: the reference's ADE20K numbering.
    assert torch.equal(ids, torch.from_numpy(reference_ade20k(stored, 150)).to(torch.uint8))
    assert set(ids.unique().tolist()) <= {150, 0, 1, 74, 149} and (ids == 150).any() and (ids == 149).any()
    assert remap_ids(torch.tensor([0, 1, 2, 3]), label_nc=4, label_shift=2).tolist() == [3, 3, 0, 1]


def test_255_is_an_error_the_last_class_or_a_dont_care_as_declared(registry, tmp_path):
    stored = id_map(1, [0, 1, 2, 255], size=16).astype(np.uint8)
    save(tmp_path / "labels" / "a.png", stored)
    save(tmp_path / "images" / "a.png", photo(1))
    base = {"split": "", "layout": "folders", "labels": "index", "label_nc": 4, "label_shift": 1}
    with pytest.raises(DataError) as caught:  # not declared: a stored 255 is no class after the shift
        label_maps(registry, tmp_path, **base)[0]
    assert "id 255 at pixel" in str(caught.value) and "data.label_shift = 1" in str(caught.value)
    assert "stored ids 1..4 (shifted down by 1) and ids below 1" in str(caught.value)
    expected = np.where(stored == 255, 3, np.where(stored == 0, 3, stored.astype(np.int64) - 1))
    unknown = label_maps(registry, tmp_path, **base, unknown_id=255)[0]["A"][0]  # the reference's 255 -> last
    assert torch.equal(unknown, torch.from_numpy(expected).to(torch.uint8))
    kept = label_maps(registry, tmp_path, **base, dont_care=255)[0]["A"][0]  # an all-zero class vector
    expected[stored == 255] = 255
    assert torch.equal(kept, torch.from_numpy(expected).to(torch.uint8))
    assert one_hot(kept[None, None], 4, dont_care=255)[0, :, stored == 255].sum() == 0
    # Without a shift, unknown_id alone (COCO-Stuff): ids as stored, 255 the last class.
    plain = label_maps(registry, tmp_path, split="", layout="folders", labels="index", label_nc=4, unknown_id=255)
    assert torch.equal(plain[0]["A"][0], torch.from_numpy(np.where(stored == 255, 3, stored)).to(torch.uint8))


@pytest.mark.parametrize(("options", "message"), [
    ({"label_shift": -1}, r"label_shift must be in 0\.\.255 .*got -1"),
    ({"label_shift": 256}, r"label_shift must be in 0\.\.255 .*got 256"),
    ({"label_shift": 1, "label_nc": 1}, "label_shift = 1 needs label_nc >= 2"),
    ({"label_shift": 1, "dont_care": 4}, r"dont_care must be -1 \(none\) or a stored id in 5\.\.255 \(not a class "
                                         r"after label_shift\), got 4"),
    ({"unknown_id": 2}, r"unknown_id must be -1 \(none\) or a stored id in 3\.\.255 .*got 2"),
    ({"unknown_id": 255, "dont_care": 255}, "unknown_id and dont_care are both 255"),
    ({"labels": "palette", "palette": FACADES, "label_nc": 0, "label_shift": 1},
     'remap the stored ids of index maps \\(labels = "index"\\)'),
])
def test_bad_label_shift_and_unknown_id_are_recipe_errors(registry, tmp_path, options, message):
    write_folders(tmp_path, instances=False)
    with pytest.raises(RecipeError, match=message):
        label_maps(registry, tmp_path, **{"layout": "folders", "labels": "index", "label_nc": 4, **options})
