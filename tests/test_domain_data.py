"""Multi-domain data: domain folders, CelebA-style attribute lists (with their errors), and
`tkit data facades-domains`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png
from translate_kit_plugins.domain_data import (
    celeba_attributes,
    class_boundaries,
    domain_folders,
    read_attribute_table,
    write_facades_domains,
)
from typer.testing import CliRunner

from translate_kit.api import FACADES, DataError, decode_palette, read_image, write_synth_facades
from translate_kit.cli import make_app


def write_images(folder: Path, count: int, size: tuple[int, int] = (8, 8), value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_png(torch.full((3, *size), value + i, dtype=torch.uint8), str(folder / f"{i}.png"))


# ------------------------------------------------------------------------------------------------
# domain_folders


def test_domain_folders_label_one_hot_and_alternate_domains(tmp_path):
    write_images(tmp_path / "train" / "photo", 3, value=10)
    write_images(tmp_path / "train" / "labels", 1, value=50)
    write_images(tmp_path / "train" / "edges", 2, value=90)
    dataset = domain_folders(root=str(tmp_path), domains=["photo", "labels", "edges"])
    assert len(dataset) == 6 and dataset.counts == {"photo": 3, "labels": 1, "edges": 2}
    names = [dataset[i]["name"] for i in range(6)]
    assert names == ["photo-0", "labels-0", "edges-0", "photo-1", "edges-1", "photo-2"]
    item = dataset[1]
    assert item["domain"].tolist() == [0.0, 1.0, 0.0] and item["domain_names"] == "photo,labels,edges"
    assert item["A"].dtype == torch.uint8 and int(item["A"][0, 0, 0]) == 50
    everything = domain_folders(root=str(tmp_path))  # no list: every folder, sorted
    assert everything.domains == ("edges", "labels", "photo")


def test_domain_folders_errors_name_the_problem(tmp_path):
    write_images(tmp_path / "train" / "photo", 1)
    (tmp_path / "train" / "labels").mkdir()
    with pytest.raises(DataError, match="Unknown domain 'photos'.*Did you mean 'photo'.*Folders there: labels, photo"):
        domain_folders(root=str(tmp_path), domains=["photos"])
    with pytest.raises(DataError, match="holds no images of domain 'labels'"):
        domain_folders(root=str(tmp_path), domains=["photo", "labels"])
    with pytest.raises(DataError, match="val does not exist.*facades-domains"):
        domain_folders(root=str(tmp_path), split="val")
    with pytest.raises(DataError, match="'photo' is listed twice"):
        domain_folders(root=str(tmp_path), domains=["photo", "photo"])


# ------------------------------------------------------------------------------------------------
# celeba_attributes

NAMES = ["Bald", "Black_Hair", "Blond_Hair", "Male", "Young"]


def write_celeba(root: Path, rows: list[str], count: int | None = None, size: tuple[int, int] = (12, 10)) -> Path:
    """list_attr_celeba.txt with `rows` (file then values) and an image for every file."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        write_png(torch.zeros(3, *size, dtype=torch.uint8), str(root / "images" / row.split()[0]))
    lines = [str(len(rows) if count is None else count), " ".join(NAMES), *rows]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return root


def rows(n: int) -> list[str]:
    return [f"{i:06d}.png " + " ".join("1" if (i >> k) & 1 else "-1" for k in range(len(NAMES))) for i in range(n)]


def test_celeba_attributes_follow_the_reference_split_and_selection(tmp_path):
    root = write_celeba(tmp_path, rows(7))
    train = celeba_attributes(root=str(root), selected_attrs=["Young", "Black_Hair"], test_images=2)
    test = celeba_attributes(root=str(root), selected_attrs=["Young", "Black_Hair"], split="test", test_images=2)
    order = list(range(7))
    random.seed(1234)  # the reference: random.seed(1234); random.shuffle(lines)
    random.shuffle(order)
    assert [p.name for p in test.files] == [f"{i:06d}.png" for i in order[:2]]
    assert [p.name for p in train.files] == [f"{i:06d}.png" for i in order[2:]]
    item = train[0]
    i = order[2]
    assert item["domain"].tolist() == [float((i >> 4) & 1), float((i >> 1) & 1)]  # Young, Black_Hair as 0/1
    assert item["domain_names"] == "Young,Black_Hair" and item["name"] == f"{i:06d}"


def test_celeba_attributes_read_the_csv_form_and_crop_the_centre(tmp_path):
    (tmp_path / "images").mkdir()
    image = torch.arange(12 * 10, dtype=torch.uint8).view(1, 12, 10).expand(3, 12, 10).contiguous()
    write_png(image, str(tmp_path / "images" / "a.png"))
    (tmp_path / "attrs.csv").write_text("image_id," + ",".join(NAMES) + "\na.png,1,-1,1,-1,1\n")
    dataset = celeba_attributes(root=str(tmp_path), attr_file="attrs.csv", selected_attrs=["Blond_Hair", "Male"],
                                test_images=0, center_crop=6)
    item = dataset[0]
    assert item["domain"].tolist() == [1.0, 0.0]
    assert torch.equal(item["A"], image[:, 3:9, 2:8])  # rows (12 - 6) // 2 = 3.., columns 2..


@pytest.mark.parametrize(("text", "message"), [
    ("2\nBald Male\na.png 1 -1\nb.png 1\n", r"attrs.txt, line 4: expected a file name and 2 attribute values, got 2"),
    ("2\nBald Male\na.png 1 -1\nb.png 1 0\n", r"line 4 \(b.png\): expected attribute values 1 or -1, got '0'"),
    ("3\nBald Male\na.png 1 -1\nb.png 1 1\n", r"line 1: the file says 3 images, but 2 rows follow"),
    ("Bald Male\na.png 1 -1\n", r"line 1: expected the number of images"),
    ("image_id,Bald,Male\na.png,1,-1\nb.png,1,x\n", r"attrs.txt, line 3 \(b.png\): expected attribute values"),
], ids=["short-row", "bad-value", "stale-count", "no-count", "csv-bad-value"])
def test_bad_attribute_rows_name_the_file_and_line(tmp_path, text, message):
    (tmp_path / "attrs.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_attribute_table(tmp_path / "attrs.txt")


def test_celeba_attribute_errors(tmp_path):
    root = write_celeba(tmp_path, rows(3))
    with pytest.raises(DataError, match="Attribute 'Blonde_Hair' is not in .*Did you mean 'Blond_Hair'"):
        celeba_attributes(root=str(root), selected_attrs=["Blonde_Hair"], test_images=1)
    with pytest.raises(DataError, match="The train split .* is empty: 3 row"):
        celeba_attributes(root=str(root), selected_attrs=["Male"])  # the reference's 1999 test rows take all
    with pytest.raises(DataError, match="Cannot read the attribute file"):
        celeba_attributes(root=str(tmp_path / "nowhere"), selected_attrs=["Male"])
    small = celeba_attributes(root=str(root), selected_attrs=["Male"], test_images=1, center_crop=20)
    with pytest.raises(DataError, match="smaller than data.center_crop = 20"):
        small[0]


# ------------------------------------------------------------------------------------------------
# tkit data facades-domains


def test_boundaries_mark_both_sides_of_a_class_change():
    ids = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert class_boundaries(ids).int().tolist() == [[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0]]


def test_facades_domains_command_writes_three_domains_of_the_same_scenes(tmp_path):
    source, out = tmp_path / "facades", tmp_path / "domains"
    counts = write_synth_facades(source, count=4, size=32, seed=2)
    app = make_app(plugin_commands=True)
    result = CliRunner().invoke(app, ["data", "facades-domains", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 4 scenes x 3 domains" in result.output
    for split, n in counts.items():
        stems = {p.stem for p in (source / split).glob("*.jpg")}
        for domain in ("photo", "labels", "edges"):
            assert {p.stem for p in (out / split / domain).glob("*.png")} == stems
    pair = read_image(source / "test" / "1.jpg")
    photo, labels, edges = (read_image(out / "test" / d / "1.png") for d in ("photo", "labels", "edges"))
    assert torch.equal(photo, pair[:, :, :32])
    ids = decode_palette(pair[:, :, 32:].contiguous(), FACADES)
    assert torch.equal(decode_palette(labels, FACADES), ids)  # the map, snapped to the palette's colours
    colours = [tuple(c) for c in labels.flatten(1).T.unique(dim=0).tolist()]
    assert colours == sorted({tuple(FACADES.colors[i]) for i in ids.unique().tolist()})
    assert edges.shape == (1, 32, 32) and torch.equal(edges[0] == 0, class_boundaries(ids))

    again = CliRunner().invoke(app, ["data", "facades-domains", str(source), str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert CliRunner().invoke(app, ["data", "facades-domains", str(source), str(out), "--overwrite"]).exit_code == 0
    core = CliRunner().invoke(make_app(), ["data", "--help"]).output
    assert "facades-domains" not in core  # the core's own `data` group is left as it was
    with pytest.raises(DataError, match="has none of the split folders"):
        write_facades_domains(tmp_path / "empty", out)
