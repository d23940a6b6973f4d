"""Segmenters (a registry kind) and the segmentation method behind the FCN-score."""

from __future__ import annotations

import pytest
import torch

from translate_kit.errors import RecipeError
from translate_kit.eval.labels import FACADES, encode_palette

SEGMENTERS = ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
              "timm_fpn"]


def test_every_segmenter_is_registered(registry):
    assert registry.names("segmenter") == sorted(SEGMENTERS)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenters_give_logits_at_input_size(registry, name):
    torch.manual_seed(0)
    net = registry.create("segmenter", name, num_classes=5).eval()
    with torch.no_grad():
        logits = net(torch.rand(2, 3, 64, 48) * 2 - 1)
    assert logits.shape == (2, 5, 64, 48) and torch.isfinite(logits).all()


def test_weights_come_from_a_local_file(registry, tmp_path):
    torch.manual_seed(0)
    trained = registry.create("segmenter", "timm_fpn", num_classes=4, width=16)
    path = tmp_path / "weights.pt"
    torch.save(trained.model.state_dict(), path)
    loaded = registry.create("segmenter", "timm_fpn", num_classes=4, width=16, weights=str(path))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(trained.eval()(x), loaded.eval()(x))
    with pytest.raises(RecipeError, match="does not exist.*local files only"):
        registry.create("segmenter", "fcn_resnet50", weights=str(tmp_path / "missing.pth"))


def test_segmentation_method_targets_loss_and_coloured_output(registry, pm, tiny_facades, tmp_path):
    from conftest import RECIPES, quick_overrides

    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    overrides = quick_overrides(tiny_facades, tmp_path) + ["segmenter.name=timm_fpn", "segmenter.width=16"]
    trainer = Trainer(load_recipe(RECIPES / "fcn_facades.toml", overrides, registry=registry), registry=registry,
                      pm=pm, device="cpu")
    method = trainer.method
    labels = torch.randint(0, 12, (1, 8, 8))
    colours = encode_palette(labels, FACADES).float() / 127.5 - 1
    assert torch.equal(method.targets(colours), labels)
    history = trainer.fit()
    assert all(0 <= r["pixel_accuracy"] <= 1 and r["loss_CE"] > 0 for r in history)
    from translate_kit.method import test_time

    with torch.no_grad(), test_time(method, "eval"):
        out = method.translate(torch.rand(1, 3, 32, 32) * 2 - 1)
    pixels = ((out[0] + 1) * 127.5).round().to(torch.uint8).reshape(3, -1).T.tolist()
    assert {tuple(p) for p in pixels} <= set(FACADES.colors)


def test_all_ignored_targets_give_zero_loss_not_nan(registry, pm, tiny_facades, tmp_path):
    from conftest import RECIPES, quick_overrides

    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    overrides = quick_overrides(tiny_facades, tmp_path) + ["segmenter.name=timm_fpn", "segmenter.width=16"]
    trainer = Trainer(load_recipe(RECIPES / "fcn_facades.toml", overrides, registry=registry), registry=registry,
                      pm=pm, device="cpu")
    grey = torch.zeros(2, 3, 32, 32)  # mid-grey is far from every facades colour: all pixels ignored
    result = trainer.step_runner({"A": grey, "B": grey}, step=0, epoch=0)
    assert result.scalars["loss_CE"].item() == 0.0


def test_index_label_images(registry, pm, tmp_path):
    """labels = "index": one-channel class-index targets (255 = no label), a generated palette."""
    from conftest import RECIPES, make_structured_pair
    from torchvision.io import write_png

    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    for side in ("A", "B"):
        (tmp_path / "train" / side).mkdir(parents=True)
    for i in range(4):
        photo, _ = make_structured_pair(i, 32)
        index = torch.randint(0, 5, (1, 32, 32), dtype=torch.uint8)
        index[:, :4] = 255  # a band of unlabelled pixels
        write_png(photo, str(tmp_path / "train" / "A" / f"{i}.png"))
        write_png(index, str(tmp_path / "train" / "B" / f"{i}.png"))
    overrides = [f'data.root="{tmp_path.as_posix()}"', "data.dataset=paired", "data.direction=AtoB",
                 "data.out_channels=1", "data.load_size=32", "data.crop_size=32", f'run.dir="{tmp_path.as_posix()}/runs"',
                 "method.labels=index", "method.num_classes=5", "segmenter.name=timm_fpn", "segmenter.width=16",
                 "train.batch_size=2", "train.max_steps=2", "train.num_samples=1"]
    trainer = Trainer(load_recipe(RECIPES / "fcn_facades.toml", overrides, registry=registry), registry=registry,
                      pm=pm, device="cpu")
    labels = torch.tensor([[[[0, 4], [255, 2]]]], dtype=torch.uint8)
    assert trainer.method.decode_labels(labels).tolist() == [[[0, 4], [255, 2]]]
    assert trainer.method.palette.num_classes == 5
    history = trainer.fit()
    assert all(r["loss_CE"] > 0 for r in history)
