"""Synthetic facades: deterministic, palette-exact label maps, non-trivial photos, pix2pix layout on disk."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import decode_jpeg, read_file

from translate_kit.data.palette import FACADES_CLASSES, FACADES_PALETTE
from translate_kit.data.synth import render_facade, split_counts, write_synth_facades
from translate_kit.errors import DataError

PALETTE = torch.tensor(FACADES_PALETTE, dtype=torch.float32)  # (12, 3)
SEEDS = range(12)


def class_ids(label_map: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 palette colours -> (H, W) class ids 1..12 by exact match (-1 if none)."""
    flat = label_map.reshape(3, -1).T.float()
    match = (flat[:, None, :] == PALETTE[None]).all(dim=2)
    ids = torch.where(match.any(dim=1), match.float().argmax(dim=1) + 1, -1)
    return ids.reshape(label_map.shape[1:])


def palette_distance(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image -> (H, W) distance from each pixel to its nearest palette colour."""
    flat = image.reshape(3, -1).T.float()
    return torch.cdist(flat, PALETTE).min(dim=1).values.reshape(image.shape[1:])


def test_palette_has_twelve_distinct_classes():
    assert len(FACADES_CLASSES) == len(FACADES_PALETTE) == 12
    assert len(set(FACADES_PALETTE)) == 12
    assert FACADES_CLASSES[0] == "background" and FACADES_PALETTE[2] == (0, 128, 255)


@pytest.mark.parametrize("size", [32, 64, 256])
def test_render_shapes_and_dtypes(size):
    photo, labels = render_facade(3, size)
    assert photo.shape == labels.shape == (3, size, size)
    assert photo.dtype == labels.dtype == torch.uint8


def test_render_is_deterministic_per_seed():
    first = render_facade(7, 64)
    again = render_facade(7, 64)
    other = render_facade(8, 64)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_seeds_far_apart_differ():
    # torch seeds its generator from the low 32 bits only; the seed is mixed first.
    assert not torch.equal(render_facade(1, 32)[1], render_facade(1 + 2**32, 32)[1])


def test_render_leaves_global_rng_alone():
    state = torch.get_rng_state()
    render_facade(0, 64)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("seed", SEEDS)
def test_label_map_uses_only_palette_colours(seed):
    _, labels = render_facade(seed, 128)
    ids = class_ids(labels)
    assert (ids > 0).all(), "every label pixel must be exactly one palette colour"
    present = set(ids.unique().tolist())
    assert {2, 3} <= present, "every facade has a wall and windows"


def test_labels_cover_many_classes_over_seeds():
    seen = set()
    for seed in range(40):
        seen |= set(class_ids(render_facade(seed, 64)[1]).unique().tolist())
    assert seen == set(range(1, 13))


@pytest.mark.parametrize("seed", SEEDS)
def test_photo_is_not_a_copy_of_the_labels(seed):
    photo, labels = render_facade(seed, 128)
    ids = class_ids(labels)
    assert palette_distance(photo).median() > 40, "the photo should not be drawn in palette colours"
    wall = photo[:, ids == 2].float()
    assert wall.std(dim=1).mean() > 2, "the wall should be textured, not flat"
    # ... yet it follows the labels: glass is darker than the wall around it.
    windows = photo[:, ids == 3].float()
    assert windows.mean() < wall.mean()


def test_same_labels_get_different_materials_across_seeds():
    wall_colours = []
    for seed in range(6):
        photo, labels = render_facade(seed, 64)
        wall_colours.append(photo[:, class_ids(labels) == 2].float().mean(dim=1))
    spread = torch.stack(wall_colours).std(dim=0).mean()
    assert spread > 5


def test_render_rejects_tiny_sizes():
    with pytest.raises(ValueError, match="Expected size >= 32, got 16"):
        render_facade(0, 16)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (200, {"train": 160, "val": 20, "test": 20}),
        (10, {"train": 8, "val": 1, "test": 1}),
        (5, {"train": 3, "val": 1, "test": 1}),
        (3, {"train": 1, "val": 1, "test": 1}),
        (2, {"train": 2, "val": 0, "test": 0}),
    ],
)
def test_split_counts(count, expected):
    assert split_counts(count) == expected


def test_split_counts_custom_splits_sum_to_count():
    counts = split_counts(7, (("a", 1.0), ("b", 1.0), ("c", 1.0)))
    assert sum(counts.values()) == 7 and min(counts.values()) >= 2


def test_write_synth_facades_layout(tmp_path):
    calls = []
    counts = write_synth_facades(tmp_path / "synth", count=5, size=64, on_image=lambda: calls.append(1))
    assert counts == {"train": 3, "val": 1, "test": 1}
    assert len(calls) == 5
    for split, n in counts.items():
        files = sorted(p.name for p in (tmp_path / "synth" / split).iterdir())
        assert files == [f"{i}.jpg" for i in range(1, n + 1)]
        for name in files:
            pair = decode_jpeg(read_file(str(tmp_path / "synth" / split / name)))
            assert pair.shape == (3, 64, 128)
            # Photo (A) on the left, label map (B) on the right, as in the real facades set. JPEG
            # chroma blur moves small label regions off the palette, so only most pixels stay near it.
            left, right = pair[:, :, :64], pair[:, :, 64:]
            assert (palette_distance(right) < 40).float().mean() > 0.4
            assert (palette_distance(left) < 40).float().mean() < 0.1


def test_write_synth_facades_is_deterministic(tmp_path):
    write_synth_facades(tmp_path / "a", count=3, size=32, seed=5)
    write_synth_facades(tmp_path / "b", count=3, size=32, seed=5)
    write_synth_facades(tmp_path / "c", count=3, size=32, seed=6)
    a, b, c = (read_file(str(tmp_path / d / "train" / "1.jpg")) for d in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_write_synth_facades_refuses_non_empty_split(tmp_path):
    root = tmp_path / "synth"
    (root / "val").mkdir(parents=True)
    (root / "val" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="overwrite") as info:
        write_synth_facades(root, count=3, size=32)
    assert str(root / "val") in str(info.value)
    assert not (root / "train").exists(), "nothing is written when refusing"


def test_write_synth_facades_overwrite_replaces_numbered_images(tmp_path):
    root = tmp_path / "synth"
    write_synth_facades(root, count=20, size=32)
    (root / "train" / "notes.txt").write_text("mine")
    counts = write_synth_facades(root, count=3, size=32, overwrite=True)
    assert counts == {"train": 1, "val": 1, "test": 1}
    assert sorted(p.name for p in (root / "train").iterdir()) == ["1.jpg", "notes.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "positive image count"),
        ({"size": 8}, "at least 32 pixels"),
        ({"quality": 0}, "JPEG quality"),
        ({"splits": (("train", 0.5), ("train", 0.5))}, "distinct"),
        ({"splits": (("train", 1.0), ("val", 0.0))}, "positive split fractions"),
    ],
)
def test_write_synth_facades_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        write_synth_facades(tmp_path / "synth", **kwargs)


def test_cli_synth_facades_writes_a_trainable_folder(tmp_path):
    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    args = ["data", "synth-facades", str(tmp_path), "--count", "6", "--size", "32", "--seed", "3"]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    assert "Wrote 6 pairs" in result.output
    assert len(list((tmp_path / "train").glob("*.jpg"))) >= 1
    again = CliRunner().invoke(make_app(), args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert CliRunner().invoke(make_app(), [*args, "--overwrite"]).exit_code == 0
