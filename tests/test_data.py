"""Data: decoding, folder datasets, preparation and caching, resumable order, paired jitter."""

from __future__ import annotations

import pytest
import torch
from conftest import make_structured_pair, write_aligned
from torchvision.io import encode_png, write_jpeg, write_png
from translate_kit_plugins.folder_datasets import aligned, paired

from translate_kit.data.io import list_images, read_image, to_channels
from translate_kit.data.jitter import PairedJitter, to_unit_range
from translate_kit.data.loading import EpochSampler, PreparedDataset
from translate_kit.errors import DataError


def test_aligned_splits_halves_and_direction(tmp_path):
    photo, labels = make_structured_pair(0, 16)
    (tmp_path / "train").mkdir()
    write_png(torch.cat([photo, labels], dim=2), str(tmp_path / "train" / "1.png"))
    item = aligned(root=str(tmp_path))[0]
    assert torch.equal(item["A"], photo) and torch.equal(item["B"], labels) and item["name"] == "1"
    item = aligned(root=str(tmp_path), direction="BtoA")[0]
    assert torch.equal(item["A"], labels) and torch.equal(item["B"], photo)


def test_aligned_odd_width_drops_the_middle_column(tmp_path):
    image = torch.arange(3 * 4 * 9, dtype=torch.uint8).view(3, 4, 9)
    (tmp_path / "train").mkdir()
    write_png(image, str(tmp_path / "train" / "odd.png"))
    item = aligned(root=str(tmp_path))[0]
    assert torch.equal(item["A"], image[..., :4]) and torch.equal(item["B"], image[..., 5:])


def test_paired_matches_by_stem_and_reports_orphans(tmp_path):
    for side in ("A", "B"):
        (tmp_path / "train" / side).mkdir(parents=True)
    for stem in ("2", "10"):
        photo, labels = make_structured_pair(int(stem), 8)
        write_png(photo, str(tmp_path / "train" / "A" / f"{stem}.png"))
        write_jpeg(labels, str(tmp_path / "train" / "B" / f"{stem}.jpg"))
    dataset = paired(root=str(tmp_path))
    assert [item["name"] for item in dataset] == ["2", "10"]  # natural order
    write_png(photo, str(tmp_path / "train" / "A" / "orphan.png"))
    with pytest.raises(DataError, match="1 file.*no partner.*orphan"):
        paired(root=str(tmp_path))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*data\.root"):
        aligned(root=str(tmp_path / "nope"))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="holds no A\\|B image pairs"):
        aligned(root=str(tmp_path))


def test_unreadable_images_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png is empty"):
        read_image(empty)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(bytes(encode_png(torch.zeros(3, 8, 8, dtype=torch.uint8)))[:30])
    with pytest.raises(DataError, match="Cannot decode image .*truncated.png"):
        read_image(truncated)
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    with pytest.raises(DataError, match="text.jpg"):
        read_image(text)


def test_gray_rgba_and_16_bit_inputs(tmp_path):
    gray = torch.randint(0, 256, (1, 5, 6), dtype=torch.uint8)
    write_png(gray, str(tmp_path / "g.png"))
    assert torch.equal(read_image(tmp_path / "g.png"), gray)
    rgba = torch.randint(0, 256, (4, 5, 6), dtype=torch.uint8)
    _raw_png(tmp_path / "rgba.png", rgba.permute(1, 2, 0).tolist(), bit_depth=8, colour_type=6)
    assert torch.equal(read_image(tmp_path / "rgba.png"), rgba[:3])
    assert torch.equal(to_channels(gray, 3), gray.expand(3, 5, 6))
    rgb = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    assert to_channels(rgb, 1).item() == round(0.299 * 255)
    sixteen = _raw_png(tmp_path / "deep.png", [[[0], [256 * 200 + 7]], [[65535], [513]]], bit_depth=16, colour_type=0)
    assert read_image(sixteen).flatten().tolist() == [0, 200, 255, 2]


def _raw_png(path, rows, *, bit_depth, colour_type):
    """A PNG written by hand (zlib + chunks): torchvision writes only 8-bit gray or RGB.

    `rows` is height x width x channels of ints; colour_type 0 is gray, 6 is RGBA.
    """
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = len(rows), len(rows[0])
    sample = ">H" if bit_depth == 16 else ">B"
    raw = b"".join(b"\x00" + b"".join(struct.pack(sample, v) for px in row for v in px) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_natural_sort(tmp_path):
    for name in ("10.png", "2.png", "b.png", "1.png"):
        write_png(torch.zeros(1, 2, 2, dtype=torch.uint8), str(tmp_path / name))
    assert [p.name for p in list_images(tmp_path)] == ["1.png", "2.png", "10.png", "b.png"]


def test_prepared_dataset_resizes_converts_and_caches(tmp_path):
    write_aligned(tmp_path / "train", 3, 16)
    calls = []

    class Counting(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = aligned(root=str(tmp_path))

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            calls.append(i)
            return self.inner[i]

    prepared = PreparedDataset(Counting(), load_size=20, channels={"A": 1, "B": 3}, cache=True)
    prepared.warm(threads=2)
    item = prepared[1]
    assert item["A"].shape == (1, 20, 20) and item["B"].shape == (3, 20, 20) and item["A"].dtype == torch.uint8
    prepared[1]
    assert sorted(calls) == [0, 1, 2]  # each image decoded once


def test_epoch_sampler_is_deterministic_resumable_and_shards():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == list(range(10))
    again = EpochSampler(10, seed=3)
    again.set_epoch(2, start=4)
    assert list(again) == order[4:] and len(again) == 6
    sampler.set_epoch(3)
    assert list(sampler) != order
    shards = []
    for rank in range(3):
        shard = EpochSampler(10, seed=3, rank=rank, world_size=3)
        shard.set_epoch(2)
        shards.append(list(shard))
    assert all(len(s) == 4 for s in shards)
    assert set().union(*shards) == set(range(10))


def test_jitter_applies_the_same_crop_and_flip_to_input_and_target():
    torch.manual_seed(0)
    a = torch.rand(16, 3, 12, 12)
    b = a[:, :1].clone() * 2  # target = a known function of the input, pixel by pixel
    out = PairedJitter(crop_size=8, flip=True)({"A": a, "B": b})
    assert out["A"].shape == (16, 3, 8, 8) and out["B"].shape == (16, 1, 8, 8)
    assert torch.equal(out["B"], out["A"][:, :1] * 2)
    # Every output is one of the 5x5 crop positions of its own input, flipped or not; with 16
    # samples both flips and several windows occur, so the randomness is real.
    seen = set()
    for i in range(16):
        for top in range(5):
            for left in range(5):
                window = a[i, :, top : top + 8, left : left + 8]
                for flipped in (False, True):
                    if torch.equal(out["A"][i], window.flip(-1) if flipped else window):
                        seen.add((top, left, flipped))
    assert len(seen) > 3 and {f for _, _, f in seen} == {False, True}


def test_jitter_refuses_images_smaller_than_the_crop():
    with pytest.raises(ValueError, match="at least 8x8, got 6x6"):
        PairedJitter(crop_size=8, flip=False)({"A": torch.rand(1, 3, 6, 6), "B": torch.rand(1, 3, 6, 6)})


def test_unit_range():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8)
    assert to_unit_range(x).tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_paired_preparation_of_items_without_a_target_is_a_data_error():
    from translate_kit.errors import DataError
    from translate_kit.method import BatchSpec

    spec = BatchSpec(torch.device("cpu"), crop_size=4, flip=False, train=False)
    with pytest.raises(DataError, match="items have no B image.*they have A, name"):
        PairedJitter(4, False).prepare({"A": torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "name": ["x"]}, spec)
