"""U-Net with a timm encoder: shapes per encoder, guards, local encoder weights, use in a recipe."""

from __future__ import annotations

import inspect
import tomllib

import pytest
import timm
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.timm_unet import TimmUNet, timm_unet

from translate_kit.errors import RecipeError

# Small decoders keep the tests fast; the encoders are timm's smallest of each family.
SMALL = (32, 16, 16, 8, 8)
ENCODERS = ["resnet18", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto"]


def image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_factory_is_registered_and_recipe_ready(registry):
    assert "timm_unet" in registry.names("generator")
    signature = inspect.signature(timm_unet, eval_str=True)
    for param in signature.parameters.values():
        assert param.kind is param.KEYWORD_ONLY and param.annotation is not param.empty
        assert param.default is not param.empty
    net = registry.create("generator", "timm_unet", encoder="resnet18", decoder_channels=[16, 16, 8, 8, 8])
    assert isinstance(net, TimmUNet) and net.decoder_channels == (16, 16, 8, 8, 8)  # TOML array -> tuple


@pytest.mark.parametrize("encoder", ENCODERS)
def test_output_matches_the_input_shape(encoder):
    torch.manual_seed(0)
    net = timm_unet(encoder=encoder, decoder_channels=SMALL, out_channels=1)
    assert net.size_multiple == 32
    y = net(image(2, 3, 64, 96))
    assert y.shape == (2, 1, 64, 96) and y.abs().max() < 1 and torch.isfinite(y).all()


def test_four_stage_encoders_use_the_first_decoder_widths():
    net = timm_unet(encoder="convnext_atto")  # reductions 4 .. 32: four stages
    assert net.reductions == [4, 8, 16, 32] and net.decoder_channels == (256, 128, 64, 32)


def test_size_and_channel_guards_name_the_multiple():
    net = timm_unet(encoder="resnet18", decoder_channels=SMALL)
    with pytest.raises(ValueError, match=r"^Expected input of shape \(B, 3, H, W\) with H, W divisible by 32, "
                                         r"got \(1, 3, 48, 64\)$"):
        net(torch.zeros(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r"divisible by 32, got \(1, 1, 64, 64\)"):
        net(torch.zeros(1, 1, 64, 64))


def test_imagenet_norm_needs_rgb_and_can_be_switched_off(registry):
    with pytest.raises(RecipeError, match="in_channels must be 3, got 1; set imagenet_norm = false"):
        registry.create("generator", "timm_unet", encoder="resnet18", in_channels=1)
    net = timm_unet(encoder="resnet18", in_channels=1, imagenet_norm=False, decoder_channels=SMALL)
    assert net(image(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_bad_options_are_recipe_errors(registry):
    with pytest.raises(RecipeError, match=r"Unknown timm encoder 'resnet_18'\. Did you mean 'resnet18'\?.*"
                                          r"timm\.list_models\('resnet\*'\)"):
        registry.create("generator", "timm_unet", encoder="resnet_18")
    with pytest.raises(RecipeError, match=r"Expected 5 decoder_channels for encoder 'resnet18'.*got 3"):
        registry.create("generator", "timm_unet", encoder="resnet18", decoder_channels=[64, 32, 16])
    with pytest.raises(RecipeError, match="dropout"):
        registry.create("generator", "timm_unet", encoder="resnet18", dropout=1.0)
    with pytest.raises(RecipeError, match="norm"):
        registry.create("generator", "timm_unet", norm="group")


def test_dropout_sits_on_the_skip_levels_only():
    net = timm_unet(encoder="resnet18", decoder_channels=SMALL, dropout=0.5)
    assert [any(isinstance(m, nn.Dropout) for m in block) for block in net.decoder] == [True] * 4 + [False]


@pytest.mark.parametrize("encoder", ["resnet18", "convnext_atto"])  # convnext: timm renames stages.0 -> stages_0
def test_encoder_weights_round_trip_through_a_local_file(tmp_path, encoder):
    torch.manual_seed(1)
    source = timm.create_model(encoder, pretrained=False).eval()
    path = tmp_path / f"{encoder}.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)  # a different random encoder before loading
    net = timm_unet(encoder=encoder, decoder_channels=SMALL, encoder_weights=str(path)).eval()
    x = image(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.encoder(x)[-1], source.forward_features(x))
        # A checkpoint dict holding the state under "state_dict" is read the same way.
        torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
        again = timm_unet(encoder=encoder, decoder_channels=SMALL, encoder_weights=str(tmp_path / "ckpt.pth"))
        again.decoder.load_state_dict(net.decoder.state_dict())
        again.head.load_state_dict(net.head.state_dict())
        assert torch.equal(again.eval()(x), net(x))


def test_wrong_encoder_weights_are_recipe_errors(registry, tmp_path):
    def create(path, **options):
        return registry.create("generator", "timm_unet", encoder="resnet18", encoder_weights=str(path), **options)

    with pytest.raises(RecipeError, match="does not exist.*local files only"):
        create(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(RecipeError, match="Cannot read encoder_weights file"):
        create(tmp_path / "text.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(RecipeError, match="does not hold a state dict"):
        create(tmp_path / "list.pth")
    torch.save(timm.create_model("mobilenetv3_small_100", pretrained=False).state_dict(), tmp_path / "mnv3.pth")
    with pytest.raises(RecipeError, match=r"lack \d+ of the encoder's \d+ tensors.*same timm architecture"):
        create(tmp_path / "mnv3.pth")
    # resnet18 shares its stem and first blocks with resnet34: a partial match is refused, not half-loaded.
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(RecipeError, match="lack 80 of the encoder's 216 tensors"):
        registry.create("generator", "timm_unet", encoder="resnet34", encoder_weights=str(tmp_path / "r18.pth"))
    with pytest.raises(RecipeError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\), the encoder expects "
                                          r"\(64, 1, 7, 7\)"):
        create(tmp_path / "r18.pth", in_channels=1, imagenet_norm=False)


def test_min_size_leaves_the_deepest_batch_norm_more_than_one_value():
    assert timm_unet(encoder="resnet18", decoder_channels=SMALL).min_size == 64
    assert timm_unet(encoder="convnext_atto", decoder_channels=SMALL).min_size == 32  # layer norm
    net = timm_unet(encoder="resnet18", decoder_channels=SMALL).eval()  # running statistics: 32 is fine
    assert net(image(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_pix2pix_trains_with_a_timm_unet(registry, pm, tiny_facades, tmp_path):
    from translate_kit.recipe import dump_toml, load_recipe
    from translate_kit.train.trainer import Trainer

    overrides = quick_overrides(tiny_facades, tmp_path) + [
        "generator.name=timm_unet", "generator.encoder=resnet18", "discriminator.ndf=8",
    ]
    # The recipe's [generator] table is the U-Net's: its `ngf` is no timm_unet option and is refused
    # (`norm` and `dropout` are shared and carry over). A recipe for timm_unet leaves `ngf` out.
    with pytest.raises(RecipeError, match="unknown key 'ngf' for generator 'timm_unet'"):
        load_recipe(RECIPES / "pix2pix_facades.toml", overrides, registry=registry)
    table = tomllib.loads((RECIPES / "pix2pix_facades.toml").read_text(encoding="utf-8"))
    del table["generator"]["ngf"]
    recipe_path = tmp_path / "pix2pix_timm_unet.toml"
    recipe_path.write_text(dump_toml(table), encoding="utf-8")

    # At crop 32 a resnet18 encoder ends at 1x1, too small for its batch norms on one sample image.
    recipe = load_recipe(recipe_path, overrides, registry=registry)
    with pytest.raises(RecipeError, match="crop_size 32 gives network G \\(TimmUNet\\) inputs of 32 pixels, fewer than the 64"):
        Trainer(recipe, registry=registry, pm=pm, device="cpu")

    recipe = load_recipe(recipe_path, [*overrides, "data.load_size=72", "data.crop_size=64"], registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    generator = trainer.method.nets["G"]
    assert isinstance(generator, TimmUNet) and generator.encoder_name == "resnet18"
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    history = trainer.fit()
    assert trainer.state.step == 2 and all(r["loss_G_L1"] > 0 for r in history)
    after = generator.state_dict()
    for part in ("encoder.", "decoder.", "head."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part) and "weight" in k)
    assert (trainer.run_dir / "samples" / "epoch_0001").is_dir()
