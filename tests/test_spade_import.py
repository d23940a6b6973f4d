"""Importing NVlabs/SPADE generators (plugins/spade_import.py): a network written here in the
reference's layout and key names (hook-based spectral norm: weight_orig, weight_u, weight_v), with
seeded weights, gives the same images as the converted translate-kit network, in eval mode (the
stored u and v are used as they are, as the reference's test.py does)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.reference_import import import_weights, recognise_weights
from translate_kit_plugins.spade import spade_generator
from translate_kit_plugins.spade_import import SPADEFormat, read_reference_options, read_spade_generator, spade_recipe

from translate_kit.api import CheckpointError

# --- the reference's layout, written for this test --------------------------------------------------


class RefSPADE(nn.Module):
    def __init__(self, norm, c, s, k, hidden):
        super().__init__()
        self.param_free_norm = (nn.BatchNorm2d(c, affine=False) if norm == "batch"
                                else nn.InstanceNorm2d(c, affine=False))
        self.mlp_shared = nn.Sequential(nn.Conv2d(s, hidden, k, padding=k // 2), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, c, k, padding=k // 2)
        self.mlp_beta = nn.Conv2d(hidden, c, k, padding=k // 2)

    def forward(self, x, seg):
        a = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(a)) + self.mlp_beta(a)


class RefBlock(nn.Module):
    def __init__(self, fin, fout, s, cfg):
        super().__init__()
        sn = nn.utils.spectral_norm if cfg["sn"] else (lambda m: m)
        mid = min(fin, fout)
        self.shortcut_learned = fin != fout
        self.conv_0 = sn(nn.Conv2d(fin, mid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(mid, fout, 3, padding=1))
        if self.shortcut_learned:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
        spade = (cfg["norm"], s, cfg["k"], cfg["hidden"])
        self.norm_0 = RefSPADE(spade[0], fin, *spade[1:])
        self.norm_1 = RefSPADE(spade[0], mid, *spade[1:])
        if self.shortcut_learned:
            self.norm_s = RefSPADE(spade[0], fin, *spade[1:])

    def forward(self, x, seg):
        xs = self.conv_s(self.norm_s(x, seg)) if self.shortcut_learned else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        return xs + self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))


class RefGenerator(nn.Module):
    """The reference SPADEGenerator's layout: the start is (sh, sw) of the crop, whatever the input."""

    def __init__(self, s, ngf, up="normal", vae=False, crop=32, aspect=1.0, z_dim=16, norm="batch", sn=True, k=3,
                 hidden=128):
        super().__init__()
        cfg = {"norm": norm, "sn": sn, "k": k, "hidden": hidden}
        self.ngf, self.up_mode, self.vae = ngf, up, vae
        self.sw = crop // 2 ** {"normal": 5, "more": 6, "most": 7}[up]
        self.sh = round(self.sw / aspect)
        self.fc = nn.Linear(z_dim, 16 * ngf * self.sw * self.sh) if vae else nn.Conv2d(s, 16 * ngf, 3, padding=1)
        names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
        widths = [16, 16, 16, 16, 8, 4, 2, 1]
        for name, a, b in zip(names, widths, widths[1:]):
            setattr(self, name, RefBlock(a * ngf, b * ngf, s, cfg))
        last = ngf
        if up == "most":
            self.up_4 = RefBlock(ngf, ngf // 2, s, cfg)
            last = ngf // 2
        self.conv_img = nn.Conv2d(last, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, seg, z=None):
        if self.vae:
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))
        x = self.head_0(x, seg)
        x = self.G_middle_0(self.up(x), seg)
        if self.up_mode in ("more", "most"):
            x = self.up(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(self.up(x), seg)
        if self.up_mode == "most":
            x = self.up_4(self.up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


@torch.no_grad()
def seeded(net, seed):
    """Random weights of a sensible scale; batch-norm statistics; spectral norm's u, v near (not at) the
    top singular vectors, so that the stored vectors matter."""
    g = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    for key, t in state.items():
        if key.endswith(("running_var",)):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif key.endswith("running_mean") or (t.ndim == 1 and t.is_floating_point() and "weight_" not in key):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif t.ndim >= 2:
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
    for key in state:
        if key.endswith("weight_orig"):
            module = key[: -len(".weight_orig")]
            w = state[key].reshape(state[key].shape[0], -1)
            u, _, vh = torch.linalg.svd(w, full_matrices=False)
            for name, vector in (("weight_u", u[:, 0]), ("weight_v", vh[0])):
                noise = 0.3 * torch.randn(vector.shape, generator=g) / math.sqrt(vector.numel())
                state[f"{module}.{name}"].copy_(F.normalize(vector + noise, dim=0))
    return net


def one_hot_map(batch, s, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, s - 1, (batch, h, w), generator=g)
    seg = F.one_hot(labels, s - 1).permute(0, 3, 1, 2).float()
    edges = (torch.rand(batch, 1, h, w, generator=g) > 0.8).float()  # an instance-boundary channel
    return torch.cat([seg, edges], 1)


def options_for(s, up, crop, aspect, vae=False):
    """What the reference's opt.txt says (label_nc + instance channel = s)."""
    return {"label_nc": str(s - 1), "contain_dontcare_label": "False", "no_instance": "False",
            "num_upsampling_layers": up, "crop_size": str(crop), "aspect_ratio": str(aspect), "use_vae": str(vae)}


CASES = {
    "normal": dict(s=5, ngf=2, up="normal", crop=32, aspect=1.0),
    "more": dict(s=4, ngf=2, up="more", crop=128, aspect=2.0),
    "most": dict(s=3, ngf=2, up="most", crop=128, aspect=1.0),
    "vae": dict(s=4, ngf=2, up="normal", crop=64, aspect=2.0, vae=True),
    "vae_more": dict(s=4, ngf=2, up="more", crop=64, aspect=1.0, vae=True),
    "instance_5x5_no_sn": dict(s=4, ngf=2, up="normal", crop=64, aspect=1.0, norm="instance", sn=False, k=5,
                               hidden=16),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_converted_generator_equals_the_reference_layout(case):
    c = dict(CASES[case])
    s, crop, aspect, vae = c["s"], c["crop"], c["aspect"], c.get("vae", False)
    ref = seeded(RefGenerator(**c), seed=1).eval()
    detected, state = read_spade_generator(ref.state_dict(), "x/latest_net_G.pth",
                                           options_for(s, c["up"], crop, aspect, vae))
    assert (detected.semantic_nc, detected.ngf, detected.num_upsampling_layers, detected.use_vae) == (
        s, c["ngf"], c["up"], vae)
    assert detected.spectral == c.get("sn", True)
    assert detected.norm == ("instance" if c.get("norm") == "instance" else "syncbatch")
    net = detected.build()
    net.load_state_dict(state, strict=True)
    net.eval()
    h, w = ref.sh * 2**net.num_up, ref.sw * 2**net.num_up
    seg = one_hot_map(2, s, h, w, seed=2)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(3)) if vae else None
    with torch.no_grad():
        expected, got = ref(seg, z), net(seg, z)
    assert got.shape == (2, 3, h, w)
    assert (expected.abs() < 0.99).float().mean() > 0.5, "the comparison needs outputs tanh does not saturate"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_stored_spectral_vectors_matter_in_eval_mode():
    """The comparison above is not blind to u and v: other vectors give other images."""
    c = CASES["normal"]
    ref = seeded(RefGenerator(**c), seed=1).eval()
    detected, state = read_spade_generator(ref.state_dict(), "latest_net_G.pth", options_for(5, "normal", 32, 1.0))
    state["head_0.conv_0.parametrizations.weight.0._u"] = -state["head_0.conv_0.parametrizations.weight.0._u"]
    net = detected.build()
    net.load_state_dict(state)
    seg = one_hot_map(1, 5, 32, 32, seed=2)
    with torch.no_grad():
        assert not torch.allclose(net.eval()(seg), ref(seg), atol=1e-3)


# --- what the weights cannot tell -------------------------------------------------------------------


def reference_keys(state):
    return {k.replace("parametrizations.weight.original", "weight_orig").replace("parametrizations.weight.0._u",
            "weight_u").replace("parametrizations.weight.0._v", "weight_v"): v for k, v in state.items()}


@pytest.mark.parametrize(("semantic_nc", "up", "crop", "aspect", "model"), [
    (36, "more", 512, 2.0, "Cityscapes"), (151, "normal", 256, 1.0, "ADE20K"), (184, "normal", 256, 1.0, "COCO-Stuff"),
])
def test_published_settings_by_semantic_nc(semantic_nc, up, crop, aspect, model):
    state = reference_keys(spade_generator(in_channels=semantic_nc, ngf=1, spade_hidden=4).state_dict())
    detected, _ = read_spade_generator(state, "nowhere/latest_net_G.pth")
    assert (detected.num_upsampling_layers, detected.crop_size, detected.aspect_ratio) == (up, crop, aspect)
    assert model in detected.setting


def test_unknown_settings_are_the_reference_defaults_and_vae_shape_gives_the_aspect():
    state = reference_keys(spade_generator(in_channels=7, ngf=1, spade_hidden=4).state_dict())
    detected, _ = read_spade_generator(state, "nowhere/latest_net_G.pth")
    assert (detected.num_upsampling_layers, detected.crop_size, detected.aspect_ratio, detected.setting) == (
        "normal", 256, 1.0, "assumed")
    vae = spade_generator(in_channels=7, ngf=1, spade_hidden=4, use_vae=True, z_dim=8, crop_size=128, aspect_ratio=2.0)
    detected, _ = read_spade_generator(reference_keys(vae.state_dict()), "nowhere/latest_net_G.pth")
    assert (detected.use_vae, detected.z_dim, detected.crop_size, detected.aspect_ratio) == (True, 8, 128, 2.0)


def test_the_format_reads_the_options_file_beside_the_weights(tmp_path, registry):
    c = CASES["more"]
    ref = seeded(RefGenerator(**c), seed=1)
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    (tmp_path / "opt.txt").write_text(
        "----------------- Options ---------------\n"
        + "".join(f"{k:>25}: {v:<30}\n" for k, v in options_for(4, "more", 128, 2.0).items())
        + "----------------- End -------------------\n")
    assert read_reference_options(tmp_path / "opt.txt")["num_upsampling_layers"] == "more"
    recognised = recognise_weights(path, registry)  # no other format claims the file
    assert recognised is not None and recognised.format_name == "spade"
    imported = recognised.format.convert(recognised.weights, source=path, data_root="data/x", run_name="city")
    assert imported.recipe["generator"] == {
        "name": "spade_generator", "in_channels": 4, "out_channels": 3, "ngf": 2, "num_upsampling_layers": "more",
        "crop_size": 128, "aspect_ratio": 2.0, "use_vae": False, "z_dim": 256, "norm": "syncbatch", "spectral": True,
        "spade_kernel": 3, "spade_hidden": 128}
    assert "spectral norm" in imported.described["G"]
    assert any("3 classes, an instance-boundary channel" in note for note in imported.notes)
    assert any(f"aspect ratio 2 from {tmp_path / 'opt.txt'}" in note for note in imported.notes)
    built = registry.create("generator", "spade_generator", **{k: v for k, v in imported.recipe["generator"].items()
                                                                 if k != "name"})
    built.load_state_dict(imported.nets["G"], strict=True)


def test_tkit_convert_end_to_end(tmp_path, registry):
    if "spade" not in registry.names("method") or "label_maps" not in registry.names("dataset"):
        pytest.skip("needs the SPADE method and the label-map dataset (issue 14, items 1 and 3)")
    path = tmp_path / "latest_net_G.pth"
    torch.save(seeded(RefGenerator(**CASES["normal"]), seed=1).state_dict(), path)
    conversion = import_weights(recognise_weights(path, registry), data_root=str(tmp_path), registry=registry)
    assert conversion.method == "spade"


# --- files that do not fit --------------------------------------------------------------------------


def test_files_that_do_not_fit_are_named_errors(tmp_path):
    state = seeded(RefGenerator(**CASES["normal"]), seed=1).state_dict()
    opts = options_for(5, "normal", 32, 1.0)
    cut = {k: v for k, v in state.items() if not k.startswith("up_3.")}
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth does not fit .* missing up_3\."):
        read_spade_generator(cut, "latest_net_G.pth", opts)
    extra = {**state, "up_9.conv_0.bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="unexpected up_9.conv_0.bias"):
        read_spade_generator(extra, "latest_net_G.pth", opts)
    with pytest.raises(CheckpointError, match=r"label_nc 6, .*\(semantic_nc 7\), but latest_net_G.pth takes 5"):
        read_spade_generator(state, "latest_net_G.pth", {**opts, "label_nc": "6"})
    with pytest.raises(CheckpointError, match="'most' and only 'most' has"):
        read_spade_generator(state, "latest_net_G.pth", {**opts, "num_upsampling_layers": "most"})
    no_fc = {k: v for k, v in state.items() if not k.startswith("fc.")}
    with pytest.raises(CheckpointError, match="fc.weight is missing"):
        read_spade_generator(no_fc, "latest_net_G.pth", opts)
    with pytest.raises(CheckpointError, match="hold no tensor"):
        read_spade_generator({**state, "epoch": 3}, "latest_net_G.pth", opts)
    odd = reference_keys(spade_generator(in_channels=4, ngf=1, spade_hidden=4, use_vae=True, crop_size=96,
                                         aspect_ratio=1.5).state_dict())  # a 3 x 2 start
    with pytest.raises(CheckpointError, match="6 cells"):
        read_spade_generator(odd, "nowhere/latest_net_G.pth")


def test_recognition_is_by_marker_keys():
    fmt = SPADEFormat()
    state = reference_keys(spade_generator(in_channels=3, ngf=1, spade_hidden=4).state_dict())
    assert fmt.recognises(state)
    assert fmt.recognises({f"module.{k}": v for k, v in state.items()})
    assert not fmt.recognises({"model.0.weight": torch.zeros(1), "conv_first.weight": torch.zeros(1)})
    module_state = {f"module.{k}": v for k, v in state.items()}  # DataParallel's prefix is dropped
    assert read_spade_generator(module_state, "nowhere/x.pth")[0].semantic_nc == 3
    modern = spade_generator(in_channels=3, ngf=1, spade_hidden=4).state_dict()  # already parametrised keys
    detected, converted = read_spade_generator(modern, "nowhere/x.pth")
    assert detected.spectral and converted.keys() == modern.keys()


# --- the recipe's data: the training size and the reference's label numbering ---------------------


@pytest.mark.parametrize(("semantic_nc", "size", "numbering", "classes"), [
    (36, [256, 512], {}, 35),  # Cityscapes: 256 high x 512 wide, ids as stored, no don't-care channel
    (151, 256, {"label_shift": 1}, 151),  # ADE20K: stored 0 -> 150, 1..150 -> 0..149
    (184, 256, {"unknown_id": 255}, 183),  # COCO-Stuff: stored 255 -> 182
])
def test_the_written_recipe_sizes_and_numbers_the_data_as_the_reference(semantic_nc, size, numbering, classes,
                                                                       registry):
    from translate_kit.recipe import load_recipe

    state = reference_keys(spade_generator(in_channels=semantic_nc, ngf=1, spade_hidden=4).state_dict())
    detected, _ = read_spade_generator(state, "nowhere/latest_net_G.pth")
    data = spade_recipe(detected, data_root="data/x", run_name="r")["data"]
    assert (data["load_size"], data["crop_size"], data["label_nc"]) == (size, size, classes)
    assert {k: data[k] for k in ("label_shift", "unknown_id") if k in data} == numbering
    tables = spade_recipe(detected, data_root="data/x", run_name="r")
    recipe = load_recipe(tables, registry=registry)  # the written recipe is valid, sizes as (H, W)
    assert recipe.data.crop_hw == ((256, 512) if semantic_nc == 36 else (256, 256))


def test_the_options_files_dataset_mode_decides_the_numbering(tmp_path):
    state = reference_keys(spade_generator(in_channels=151, ngf=1, spade_hidden=4).state_dict())
    options = {"label_nc": "150", "contain_dontcare_label": "True", "no_instance": "True", "crop_size": "256",
               "aspect_ratio": "1.0", "num_upsampling_layers": "normal"}
    ade, _ = read_spade_generator(state, tmp_path / "latest_net_G.pth", {**options, "dataset_mode": "ade20k"})
    custom, _ = read_spade_generator(state, tmp_path / "latest_net_G.pth", {**options, "dataset_mode": "custom"})
    assert spade_recipe(ade, data_root="d", run_name="r")["data"]["label_shift"] == 1
    data = spade_recipe(custom, data_root="d", run_name="r")["data"]
    assert "label_shift" not in data and data["unknown_id"] == 255
