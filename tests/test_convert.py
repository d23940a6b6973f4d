"""`tkit convert`: reference pix2pix/CycleGAN state dicts become translate-kit checkpoints that compute
the same functions.

The reference code is not imported. The `Ref*` modules below are an independent re-implementation of
its module nesting (the same Sequential indices, hence the same state-dict keys, and the same layers,
including its in-place activations), written from the layout of `models/networks.py`; they give
state dicts with random weights whose outputs the converted networks must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from translate_kit_plugins.reference_import import convert, save_conversion
from translate_kit_plugins.reference_layouts import (
    detect,
    find_reference_files,
    load_reference_state_dict,
    remap_state_dict,
)
from typer.testing import CliRunner

from translate_kit.errors import CheckpointError

# ------------------------------------------------------------------------------------------------
# The reference's layouts, re-implemented (norm "instance" is InstanceNorm without affine parameters
# or running statistics; convolutions before a norm have a bias only for instance norm).


def ref_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class RefUnetBlock(nn.Module):
    """A skip block: its layers in `model`; the inner block sits at index 1 (outermost) or 3."""

    def __init__(self, outer: int, inner: int, *, in_nc: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        down = nn.Conv2d(in_nc or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), ref_norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, ref_norm(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), ref_norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # As in the reference, the in-place LeakyReLU also rewrites x, so the skip holds LeakyReLU(x);
        # only a ReLU ever reads it, which makes that the same as translate-kit's plain skip.
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, num_downs: int, ngf: int, norm: str, dropout: bool = False):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):
            block = RefUnetBlock(ngf * mult, ngf * mult * 2, sub=block, norm=norm)
        self.model = RefUnetBlock(out_nc, ngf, in_nc=in_nc, sub=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, ngf: int, n_blocks: int, norm: str, dropout: bool = False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias), ref_norm(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), ref_norm(norm, 2 * c), nn.ReLU(True)]
        layers += [RefResnetBlock(4 * ngf, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = 4 * ngf // 2**i
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias), ref_norm(norm, c // 2),
                       nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefNLayer(nn.Module):
    def __init__(self, in_nc: int, ndf: int, n_layers: int, norm: str):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=bias),
                       ref_norm(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefPixel(nn.Module):
    def __init__(self, in_nc: int, ndf: int, norm: str):
        super().__init__()
        bias = norm == "instance"
        self.net = nn.Sequential(
            nn.Conv2d(in_nc, ndf, 1), nn.LeakyReLU(0.2, True), nn.Conv2d(ndf, 2 * ndf, 1, bias=bias),
            ref_norm(norm, 2 * ndf), nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def trained(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics, so that eval mode has something to get right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim > 1 else 0.05))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(123)
    return net.eval()


def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x.clone())  # the reference's in-place activations may write into their input


def build_converted(registry, state):
    """detect -> recipe table -> translate-kit network from the registry -> strict load."""
    detected = detect(state, Path("ref.pth"))
    channels = {"in_channels": detected.in_channels}
    if detected.kind == "generator":
        channels["out_channels"] = detected.out_channels
    net = registry.build(detected.kind, {**detected.table(dropout=bool(detected.dropout)), **channels}, where="test")
    net.load_state_dict(remap_state_dict(state, net, detected), strict=True)
    return detected, net.eval()


CASES = {
    # name: (reference network, input shape, expected table, expected dropout read from the weights)
    "unet_256-batch": (lambda: RefUnet(3, 3, 8, 4, "batch", dropout=True), (1, 3, 256, 256),
                       {"name": "unet_256", "ngf": 4, "norm": "batch"}, None),
    "unet_128-instance-gray-in": (lambda: RefUnet(1, 3, 7, 8, "instance"), (2, 1, 128, 128),
                                  {"name": "unet_128", "ngf": 8, "norm": "instance"}, None),
    "unet-6-levels-none": (lambda: RefUnet(3, 1, 6, 4, "none"), (1, 3, 64, 64),
                           {"name": "unet", "num_downs": 6, "ngf": 4, "norm": "none"}, None),
    "resnet_9blocks-instance": (lambda: RefResnet(3, 3, 8, 9, "instance"), (2, 3, 32, 32),
                                {"name": "resnet_9blocks", "ngf": 8, "norm": "instance", "dropout": 0.0}, False),
    "resnet_6blocks-batch-dropout": (lambda: RefResnet(3, 3, 8, 6, "batch", dropout=True), (2, 3, 32, 32),
                                     {"name": "resnet_6blocks", "ngf": 8, "norm": "batch", "dropout": 0.5}, True),
    "resnet-2blocks-none": (lambda: RefResnet(3, 3, 4, 2, "none"), (1, 3, 16, 24),
                            {"name": "resnet", "n_blocks": 2, "ngf": 4, "norm": "none"}, False),
    "basic-D-batch": (lambda: RefNLayer(6, 8, 3, "batch"), (2, 6, 64, 64),
                      {"name": "patchgan", "n_layers": 3, "ndf": 8, "norm": "batch"}, None),
    "n_layers-4-D-instance": (lambda: RefNLayer(3, 8, 4, "instance"), (2, 3, 64, 64),
                              {"name": "patchgan", "n_layers": 4, "ndf": 8, "norm": "instance"}, None),
    "n_layers-1-D-none": (lambda: RefNLayer(4, 8, 1, "none"), (1, 4, 32, 32),
                          {"name": "patchgan", "n_layers": 1, "ndf": 8, "norm": "none"}, None),
    "pixel-D-batch": (lambda: RefPixel(6, 8, "batch"), (2, 6, 16, 16),
                      {"name": "pixelgan", "ndf": 8, "norm": "batch"}, None),
    "pixel-D-none": (lambda: RefPixel(6, 8, "none"), (1, 6, 8, 8),
                     {"name": "pixelgan", "ndf": 8, "norm": "none"}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_converted_network_computes_what_the_reference_layout_computes(registry, case):
    make, shape, table, dropout = CASES[case]
    ref = trained(make())
    detected, ours = build_converted(registry, ref.state_dict())
    assert {k: detected.table(dropout=bool(detected.dropout))[k] for k in table} == table
    assert detected.dropout == dropout
    assert detected.in_channels == shape[1]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    expected = run(ref, x)
    torch.testing.assert_close(run(ours, x), expected)
    assert expected.std() > 0  # a degenerate output would prove nothing


def test_dataparallel_prefix_and_legacy_norm_keys(tmp_path, registry):
    unet = trained(RefUnet(3, 3, 6, 4, "instance"))
    state = {f"module.{k}": v for k, v in unet.state_dict().items()}
    # PyTorch < 0.4 saved statistics for InstanceNorm (the reference's loader deletes them) ...
    state["module.model.model.1.model.2.running_mean"] = torch.zeros(8)
    state["module.model.model.1.model.2.running_var"] = torch.ones(8)
    state["module.model.model.1.model.2.num_batches_tracked"] = torch.tensor(3)
    torch.save(state, tmp_path / "latest_net_G.pth")
    loaded = load_reference_state_dict(tmp_path / "latest_net_G.pth")
    assert not any(k.startswith("module.") for k in loaded)
    _, ours = build_converted(registry, loaded)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(run(ours, x), run(unet, x))

    # ... and no num_batches_tracked for BatchNorm.
    d = trained(RefNLayer(6, 8, 3, "batch"))
    state = {k: v for k, v in d.state_dict().items() if not k.endswith("num_batches_tracked")}
    _, ours = build_converted(registry, state)
    x = torch.randn(1, 6, 64, 64)
    torch.testing.assert_close(run(ours, x), run(d, x))


def save(net: nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def test_pix2pix_conversion_dropout_defaults_and_fresh_discriminator(tmp_path, registry):
    g = save(trained(RefUnet(3, 3, 7, 4, "batch", dropout=True)), tmp_path / "latest_net_G.pth")
    conversion = convert(g, registry=registry)
    assert conversion.method == "pix2pix" and conversion.fresh == ["D"]
    assert conversion.recipe.components["generator"]["dropout"] == 0.5  # pix2pix's default: dropout on
    assert conversion.recipe.components["discriminator"] == {"name": "patchgan", "n_layers": 3, "ndf": 64,
                                                             "norm": "batch"}
    assert any("dropout is not stored" in note for note in conversion.notes)
    assert convert(g, dropout=False, registry=registry).recipe.components["generator"]["dropout"] == 0.0

    resnet = save(trained(RefResnet(3, 3, 4, 2, "instance")), tmp_path / "resnet_G.pth")
    with pytest.raises(CheckpointError, match="has no dropout in its residual blocks"):
        convert(resnet, dropout=True, registry=registry)
    with pytest.raises(CheckpointError, match="--norm batch was asked for, but .* instance norm"):
        convert(resnet, norm="batch", registry=registry)


def test_cyclegan_folder_converts_all_four_networks(tmp_path, registry):
    from translate_kit.inference import Translator

    folder = tmp_path / "checkpoints" / "horse2zebra"
    folder.mkdir(parents=True)
    refs = {
        "G_A": trained(RefResnet(3, 1, 4, 2, "instance"), seed=1),
        "G_B": trained(RefResnet(1, 3, 4, 2, "instance"), seed=2),
        "D_A": trained(RefNLayer(1, 4, 3, "instance"), seed=3),
        "D_B": trained(RefNLayer(3, 4, 3, "instance"), seed=4),
    }
    for name, net in refs.items():
        save(net, folder / f"latest_net_{name}.pth")
    save(refs["G_A"], folder / "5_net_G_A.pth")  # another epoch, not picked
    files = find_reference_files(folder)
    assert files == {name: folder / f"latest_net_{name}.pth" for name in refs}
    conversion = convert(files["G_A"], generator_b=files["G_B"], discriminator=files["D_A"],
                         discriminator_b=files["D_B"], converted_from=folder, registry=registry)
    assert conversion.method == "cyclegan" and conversion.fresh == []
    assert conversion.recipe.components["method"]["lambda_identity"] == 0.0  # A has 3 channels, B 1
    out = save_conversion(conversion, tmp_path / "h2z.pt")

    translator = Translator.from_checkpoint(out, device="cpu", registry=registry)
    nets = translator.method.nets.eval()
    for name, shape in (("G_A", (1, 3, 16, 16)), ("G_B", (1, 1, 16, 16)), ("D_A", (1, 1, 32, 32)),
                        ("D_B", (1, 3, 32, 32))):
        x = torch.randn(shape)
        torch.testing.assert_close(run(nets[name], x), run(refs[name], x))

    with pytest.raises(CheckpointError, match="G_B .* must map B back to A"):
        convert(files["G_A"], generator_b=files["G_A"], registry=registry)
    with pytest.raises(CheckpointError, match="pick one of the epochs 5, latest with --epoch"):
        find_reference_files(folder, epoch="7")


def truncated_state_dict(path: Path) -> None:
    """A reference file cut short, as an interrupted copy leaves it."""
    torch.save(RefPixel(6, 8, "batch").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda p: torch.save([1, 2, 3], p), "holds a list, not a reference state dict"),
        (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor, not a reference state dict"),
        (lambda p: torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, p), "is a dict but not a plain state dict"),
        (lambda p: torch.save(nn.Linear(2, 2), p), "holds pickled Python objects"),
        (lambda p: torch.save({"encoder.0.weight": torch.zeros(4, 3, 3, 3)}, p),
         "fit no network of the reference pix2pix/CycleGAN code: expected keys such as model.model.0.weight"),
        (lambda p: p.write_bytes(b"PK\x03\x04 this is not a torch file"), "Cannot read .* with torch.load"),
        (lambda p: p.write_text("hello"), "Cannot read .* with torch.load"),
        (truncated_state_dict, "Cannot read .* with torch.load"),
    ],
    ids=["list", "tensor", "training-dict", "pickled-module", "unknown-keys", "corrupt-zip", "text", "truncated"],
)
def test_files_that_are_not_reference_state_dicts(tmp_path, registry, content, expected):
    path = tmp_path / "latest_net_G.pth"
    content(path)
    with pytest.raises(CheckpointError, match=expected) as info:
        convert(path, registry=registry)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_keys_that_do_not_fit_the_detected_layout(tmp_path, registry):
    state = trained(RefUnet(3, 3, 6, 4, "batch")).state_dict()
    broken = dict(state)
    del broken["model.model.1.model.5.weight"]
    broken["model.model.1.model.9.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "G.pth")
    with pytest.raises(CheckpointError, match=r"missing model\.model\.1\.model\.5\.weight.*unexpected "
                                              r"model\.model\.1\.model\.9\.weight"):
        convert(tmp_path / "G.pth", registry=registry)

    truncated = {k: v for k, v in state.items() if not k.startswith("model.model.3.")}  # no output layer
    torch.save(truncated, tmp_path / "G2.pth")
    with pytest.raises(CheckpointError, match=r"model\.model\.3\.weight is missing"):
        convert(tmp_path / "G2.pth", registry=registry)

    d = save(trained(RefNLayer(6, 8, 3, "batch")), tmp_path / "D.pth")
    with pytest.raises(CheckpointError, match="is a reference discriminator .* must be a generator"):
        convert(d, registry=registry)
    g = save(trained(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "G3.pth")
    small_d = save(trained(RefNLayer(3, 8, 3, "batch")), tmp_path / "D3.pth")
    with pytest.raises(CheckpointError, match="takes 3 channels, but it must judge the input beside the output"):
        convert(g, discriminator=small_d, registry=registry)


def test_cli_converts_and_translator_reproduces_the_reference(tmp_path, registry, pm):
    from translate_kit.cli import make_app
    from translate_kit.cli.plugins import _commands_by_plugin
    from translate_kit.data.jitter import from_unit_range, to_unit_range
    from translate_kit.inference import Translator
    from translate_kit.recipe import load_recipe
    from translate_kit.train.checkpoint import load_checkpoint

    g_ref = trained(RefUnet(3, 3, 7, 4, "batch", dropout=True), seed=5)
    d_ref = trained(RefNLayer(6, 8, 3, "batch"), seed=6)
    save(g_ref, tmp_path / "latest_net_G.pth")
    save(d_ref, tmp_path / "latest_net_D.pth")
    out = tmp_path / "converted" / "facades.pt"
    app = make_app(plugin_commands=True)
    result = CliRunner().invoke(app, ["convert", str(tmp_path), str(out), "--direction", "BtoA"])
    assert result.exit_code == 0, result.output
    assert "U-Net, 7 levels (unet_128), ngf 4, batch norm, 3 -> 3 channels" in result.output
    assert "PatchGAN, n_layers 3 (basic), ndf 8, batch norm, 6 channels in" in result.output
    assert "not given" not in result.output

    ckpt = load_checkpoint(out)
    assert set(ckpt) == {"format", "version", "translate_kit_version", "recipe", "nets", "ema", "method_state",
                         "state", "converted_from"}
    assert ckpt["state"]["step"] == 0 and ckpt["converted_from"] == str(tmp_path)
    recipe = load_recipe(ckpt["recipe"], registry=registry)  # a complete, valid recipe
    assert recipe.data.options["direction"] == "BtoA" and recipe.components["generator"]["name"] == "unet_128"

    translator = Translator.from_checkpoint(out, device="cpu", registry=registry)
    image = torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    x = to_unit_range(image)[None]
    expected = run(g_ref, x)
    torch.testing.assert_close(run(translator.method.nets["G"].eval(), x), expected)
    difference = (translator(image).int() - from_unit_range(expected[0]).int()).abs()
    assert difference.max() <= 1  # the same floats, up to rounding to 8 bits
    pair = torch.randn(1, 6, 64, 64)
    torch.testing.assert_close(run(translator.method.nets["D"].eval(), pair), run(d_ref, pair))

    again = CliRunner().invoke(app, ["convert", str(tmp_path), str(out)])
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    failed = CliRunner().invoke(app, ["convert", str(bad), str(tmp_path / "x.pt")])
    assert failed.exit_code == 1 and failed.output.startswith("Error:") and "Traceback" not in failed.output
    assert isinstance(failed.exception, SystemExit)
    passed_back = CliRunner().invoke(app, ["convert", str(out), str(tmp_path / "y.pt")])
    assert passed_back.exit_code == 1 and "already a translate-kit checkpoint" in passed_back.output
    assert _commands_by_plugin(pm)["reference_import"] == ["convert"]  # what `tkit plugins list` shows
