"""pix2pixHD's instance-wise feature encoder: the encoder E and its per-instance pooling, training
with E in G's optimiser, `tkit features` (seeded k-means per class into RUN/feature_clusters.pt),
and translation that fills each class with a chosen or drawn cluster centre."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torchvision.io import read_image as decode_png
from torchvision.io import write_png
from translate_kit_plugins.feature_clusters import cluster_features, kmeans
from translate_kit_plugins.pix2pixhd import (
    CLUSTERS_FILE,
    FeatureClusters,
    FeatureEncoder,
    Pix2PixHD,
    feature_encoder,
    instance_mean,
)
from typer.testing import CliRunner

from translate_kit.build import build_method
from translate_kit.cli import make_app
from translate_kit.data.synth import render_facade
from translate_kit.errors import CheckpointError, InferenceError, RecipeError
from translate_kit.inference import Translator
from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "pix2pixhd_facades_features.toml"
TINY = [
    "generator.ngf=8",
    "generator.n_downsampling=2",
    "generator.n_blocks=1",
    "discriminator.ndf=8",
    "discriminator.n_layers=1",
    "discriminator.num_d=2",
    "encoder.ngf=4",
    "encoder.n_downsampling=2",
]


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def invoke(*args):
    result = CliRunner().invoke(make_app(plugin_commands=True), [str(a) for a in args])
    return result, " ".join(result.output.split())


# --- the encoder and the pooling -------------------------------------------------------------


def test_instance_mean_is_exact_on_a_tiny_map():
    features = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)  # (B, C, H, W)
    instances = torch.tensor([[[[0, 0, 5], [5, 5, 0]]], [[[0, 1, 1], [1, 1, 1]]]])
    pooled = instance_mean(features, instances)
    # By hand: image 0, channel 0 holds 0 1 2 / 3 4 5; instance 0 is {0, 1, 5}, instance 5 is {2, 3, 4}.
    assert pooled[0, 0].tolist() == [[2.0, 2.0, 3.0], [3.0, 3.0, 2.0]]
    assert pooled[0, 1].tolist() == [[8.0, 8.0, 9.0], [9.0, 9.0, 8.0]]  # channel 1 is channel 0 + 6
    # Image 1 (values 12..17): its id 0 is its own instance {12}, not image 0's; id 1 is {13, ..., 17}.
    assert pooled[1, 0].tolist() == [[12.0, 15.0, 15.0], [15.0, 15.0, 15.0]]
    for b in range(2):  # and against a plain loop over every instance and channel
        for i in instances[b].unique():
            mask = instances[b, 0] == i
            for c in range(2):
                assert torch.equal(pooled[b, c][mask], features[b, c][mask].mean().expand(int(mask.sum())))


def test_instance_mean_passes_gradients_and_refuses_bad_maps():
    features = torch.randn(1, 3, 4, 4, requires_grad=True)
    instances = torch.zeros(1, 1, 4, 4, dtype=torch.int32)
    instances[..., 2:] = 7
    instance_mean(features, instances)[0, 0, 0, 0].backward()
    grad = features.grad[0, 0]
    assert torch.allclose(grad[:, :2], torch.full((4, 2), 1 / 8)) and not grad[:, 2:].any()
    with pytest.raises(ValueError, match=r"instances \(B, 1, H, W\) of the same B, H, W, got \(1, 3, 4, 4\) and "):
        instance_mean(features, instances[..., :3])
    with pytest.raises(ValueError, match="integer instance ids"):
        instance_mean(features, instances.float())


def test_the_encoder_matches_the_reference_architecture():
    with torch.device("meta"):
        e = feature_encoder()  # nef 16, n_downsample_E 4, feat_num 3, instance norm
    # By hand: c7s1-16 (2,368), d32 d64 d128 d256 (4,640 + 18,496 + 73,856 + 295,168),
    # u128 u64 u32 u16 (295,040 + 73,792 + 18,464 + 4,624), c7s1-3 (2,355); every conv keeps its bias.
    assert n_params(e) == 788_803
    assert (e.size_multiple, e.min_size, e.feat_num) == (16, 32, 3)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in e.modules()) == 9


def test_the_encoder_output_is_constant_inside_each_instance():
    torch.manual_seed(0)
    e = feature_encoder(ngf=4, n_downsampling=2)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    instances = torch.zeros(2, 1, 16, 16, dtype=torch.int64)
    instances[:, :, 4:12, 4:12] = 3
    out = e(image, instances)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() < 1
    assert torch.allclose(out, instance_mean(e.features(image), instances))
    for b in range(2):
        assert out[b, :, instances[b, 0] == 3].unique(dim=1).shape[1] == 1
    with pytest.raises(ValueError, match="divisible by 4 and >= 8"):
        e(torch.rand(1, 3, 10, 10), torch.zeros(1, 1, 10, 10, dtype=torch.int64))


# --- k-means ---------------------------------------------------------------------------------


def test_kmeans_finds_separated_clusters_and_repeats_for_a_seed():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.5, 1.0]])
    sizes = (30, 20, 10)
    points = torch.cat([c + 0.01 * torch.randn(n, 3, generator=g) for c, n in zip(centres, sizes)])
    found = kmeans(points, 3, seed=4)
    assert torch.allclose(found, centres.double(), atol=0.01)  # largest cluster first
    assert torch.equal(kmeans(points, 5, seed=4), kmeans(points, 5, seed=4))
    assert kmeans(points[:2], 10, seed=0).shape == (2, 3)  # no more clusters than distinct points
    assert kmeans(torch.ones(4, 3), 10, seed=0).tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="N >= 1 and k >= 1"):
        kmeans(torch.zeros(0, 3), 2, seed=0)


def test_cluster_features_is_per_class_and_padded():
    features = torch.tensor([[0.0], [0.1], [1.0], [5.0], [5.0]])
    classes = torch.tensor([0, 0, 0, 2, 2])
    centres, counts, instances = cluster_features(classes, features, 3, k=2, seed=0)
    assert counts.tolist() == [2, 0, 1] and instances.tolist() == [3, 0, 2]
    assert centres.shape == (3, 2, 1) and centres[1].abs().sum() == 0
    assert centres[0, :, 0].tolist() == pytest.approx([0.05, 1.0]) and centres[2, 0, 0] == 5.0


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facades_run(registry, pm, tiny_facades, tmp_path_factory):
    """The features recipe, tiny: 2 steps on 32 px crops of the synthetic facades (classes as instances)."""
    out = tmp_path_factory.mktemp("features_runs")
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, out) + TINY, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    before = {k: v.clone() for k, v in trainer.method.nets["E"].state_dict().items()}
    history = trainer.fit()
    return trainer, before, history


def test_the_recipe_has_the_references_settings(registry):
    recipe = load_recipe(RECIPE, registry=registry)
    assert recipe.components["encoder"] == {"name": "feature_encoder", "feat_num": 3, "ngf": 16, "n_downsampling": 4,
                                            "norm": "instance"}
    assert recipe.components["method"]["label_nc"] == 12
    assert (recipe.data.dataset, recipe.data.palette, recipe.data.crop_size) == ("label_maps", "facades", 256)
    assert (recipe.train.lr, recipe.train.betas, recipe.train.epochs, recipe.train.decay_epochs) == (
        2e-4, (0.5, 0.999), 100, 100)
    assert recipe.components["discriminator"]["num_d"] == 3 and recipe.components["generator"]["n_blocks"] == 9


def test_a_few_steps_train_the_encoder_with_g(facades_run):
    trainer, before, history = facades_run
    method = trainer.method
    assert isinstance(method, Pix2PixHD) and isinstance(method.nets["E"], FeatureEncoder)
    assert method.optimizer_groups() == {"D": ["D"], "G": ["G", "E"]} and method.roles["E"] == "auxiliary"
    assert method.labels.label_nc == 12 and method.labels.palette.names[2] == "window"
    assert method.nets["G"].in_channels == 12 + 3  # one-hot classes + E's features
    assert method.nets["D"].in_channels == 12 + 3  # one-hot classes + the photo
    assert [r["step"] for r in history] == [1, 2]
    assert all(math.isfinite(v) for r in history for v in r.values())
    after = method.nets["E"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_the_prepared_batch_keeps_ids_exact_and_gives_translate_a_colour_map(facades_run, tiny_facades):
    from translate_kit.api import BatchSpec, build_dataset, decode_palette, from_unit_range

    trainer = facades_run[0]
    method, registry = trainer.method, trainer.registry
    item = build_dataset(trainer.recipe, registry, load_size=32, cache=False)[0]
    batch = {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}
    prepared = method.prepare_batch(batch, BatchSpec(device=torch.device("cpu"), crop_size=None, train=False))
    assert prepared["labels"].dtype == torch.int64 and torch.equal(prepared["labels"], item["A"][None].long())
    assert prepared["A"].shape == (1, 3, 32, 32)
    colours = from_unit_range(prepared["A"])
    assert torch.equal(decode_palette(colours, method.labels.palette), prepared["labels"][:, 0])


def test_features_need_label_maps_and_a_matching_palette(registry, tiny_facades, tmp_path):
    recipe = load_recipe(RECIPES / "pix2pixhd_facades.toml", registry=registry).to_dict()
    recipe["encoder"] = {"name": "feature_encoder"}
    recipe = load_recipe(recipe, quick_overrides(tiny_facades, tmp_path), registry=registry)
    with pytest.raises(RecipeError, match="the feature encoder need label maps: set label_nc to the number of classes"):
        build_method(recipe, registry)
    recipe = load_recipe(RECIPE, ["method.label_nc=10"], registry=registry)
    with pytest.raises(RecipeError, match=r"label_nc = 10 differs from the 12 classes of data.palette \(background, "
                                          r"facade, window, ...\); set label_nc = 12"):
        build_method(recipe, registry)


# --- tkit features and translation -------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered(facades_run, tiny_facades):
    run = facades_run[0].run_dir
    result, output = invoke("features", run, "--clusters", 3, "--seed", 0, "--device", "cpu")
    assert result.exit_code == 0, output
    return run, output


def test_features_writes_reproducible_clusters_per_class(clustered, tmp_path):
    run, output = clustered
    assert f"Wrote {run / CLUSTERS_FILE}" in output and "clusters per class: background" in output
    first = FeatureClusters.read(run / CLUSTERS_FILE)
    assert first.centres.shape == (12, 3, 3) and first.seed == 0 and first.step == 2
    assert first.names[2] == "window" and Path(first.source).name == "step_000000002.pt"
    assert (first.counts <= 3).all() and first.counts.sum() > 0
    assert (first.counts <= first.instances).all()
    copy = tmp_path / "copy.pt"
    (run / CLUSTERS_FILE).rename(copy)
    try:
        result, output = invoke("features", run / "checkpoints" / "step_000000002.pt", "--clusters", 3, "--seed", 0,
                                "--device", "cpu")
        assert result.exit_code == 0, output
        again = FeatureClusters.read(run / CLUSTERS_FILE)
        assert torch.equal(again.centres, first.centres) and torch.equal(again.counts, first.counts)
    finally:
        copy.replace(run / CLUSTERS_FILE)


def test_features_refuses_a_run_without_an_encoder(registry, pm, tiny_facades, tmp_path):
    recipe = load_recipe(RECIPES / "pix2pixhd_facades.toml", quick_overrides(tiny_facades, tmp_path, steps=1) + [
        "generator.ngf=4", "generator.n_downsampling=2", "generator.n_blocks=1", "discriminator.ndf=4"],
        registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    trainer.fit()
    result, output = invoke("features", trainer.run_dir, "--device", "cpu")
    assert result.exit_code == 1 and "holds no feature encoder E: train a pix2pixhd recipe with an [encoder]" in output


def labels_image(seed: int = 3) -> torch.Tensor:
    return render_facade(seed, 32)[1]  # uint8 (3, 32, 32) in the facades palette


def checkpoint_only(run: Path, folder: Path) -> Path:
    """A run folder holding `run`'s newest checkpoint and nothing else (no clusters)."""
    (folder / "checkpoints").mkdir(parents=True)
    checkpoint = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    (folder / "checkpoints" / checkpoint.name).write_bytes(checkpoint.read_bytes())
    return folder


def test_without_clusters_the_features_are_zero_and_the_options_say_what_to_do(facades_run, registry, tmp_path):
    run = checkpoint_only(facades_run[0].run_dir, tmp_path / "run")
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry)
    assert not translator.spec.multimodal and set(translator.spec.options) == {"feature_cluster", "feature_clusters"}
    ids = torch.zeros(1, 1, 8, 8, dtype=torch.int64)
    assert not translator.method.feature_map(ids).any()
    with pytest.raises(InferenceError, match=r"no feature clusters yet: run `tkit features RUN` first"):
        translator.bind(options={"feature_cluster": "1"})


def test_a_chosen_cluster_fills_each_class_with_its_centre(clustered, registry):
    run, _ = clustered
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry, seed=0)
    method = translator.method
    clusters = FeatureClusters.read(run / CLUSTERS_FILE)
    assert translator.spec.multimodal  # a centre is drawn per class and sample
    ids = torch.arange(12).repeat_interleave(3).view(1, 1, 4, 9)
    bound = translator.bind(options={"feature_cluster": "1"})
    assert not bound.spec.multimodal and bound.method.nets["G"] is method.nets["G"]
    filled = bound.method.feature_map(ids)
    for c in range(12):
        n = int(clusters.counts[c])
        expected = clusters.centres[c, 1 % n] if n else torch.zeros(3)
        assert torch.equal(filled[0, :, ids[0, 0] == c], expected[:, None].expand(3, 3))
    window = translator.bind(options={"feature_clusters": "window:0, 4:1"}).method
    assert window.cluster_choice[2] == 0 and window.cluster_choice[4] == 1 and window.cluster_choice[0] == -1
    assert (method.cluster_choice == -1).all()  # the loaded model is untouched


def test_feature_cluster_changes_the_output_and_samples_differ(clustered, registry):
    run, _ = clustered
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry, seed=0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        outputs = [translator.bind(options={"feature_cluster": str(n)}).method.translate(x) for n in range(3)]
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[1], outputs[2])
    drawn = translator.translate_samples([labels_image()], samples=3)[0]
    assert not all(torch.equal(drawn[0], d) for d in drawn[1:])
    again = translator.translate_samples([labels_image()], samples=3)[0]
    assert all(torch.equal(a, b) for a, b in zip(drawn, again))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("feature_cluster=7", "feature_cluster=7: the classes have 0..2 clusters"),
        ("feature_clusters=windw:1", "unknown class 'windw' in 'windw:1'. Did you mean 'window'? Classes: background"),
        ("feature_clusters=window", "feature_clusters: expected CLASS:N, e.g. background:3, got 'window'"),
        ("feature_clusters=window:9", "feature_clusters: class 'window' has clusters 0..2, so 9 cannot be chosen"),
        ("feature_cluster=two", "Option feature_cluster=two: expected an int, got 'two'"),
    ],
)
def test_cli_feature_options_and_their_errors(clustered, tmp_path, option, message):
    run, _ = clustered
    source = tmp_path / "labels.png"
    write_png(labels_image(), str(source))
    result, output = invoke("translate", run, source, "-o", tmp_path / "out", "--option", option)
    assert result.exit_code == 1 and message in output, output


def test_cli_translates_with_chosen_and_drawn_clusters(clustered, tmp_path):
    run, _ = clustered
    source = tmp_path / "labels.png"
    write_png(labels_image(), str(source))
    result, output = invoke("translate", run, source, "-o", tmp_path / "drawn", "--samples", 2)
    assert result.exit_code == 0, output
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["labels_0.png", "labels_1.png"]
    for n in (0, 1):
        result, output = invoke("translate", run, source, "-o", tmp_path / f"c{n}", "--option", f"feature_cluster={n}")
        assert result.exit_code == 0, output
    chosen = [decode_png(str(tmp_path / f"c{n}" / "labels.png")) for n in (0, 1)]
    assert chosen[0].shape == (3, 32, 32) and not torch.equal(chosen[0], chosen[1])
    result, output = invoke("translate", run, "--list-options")
    assert "feature_cluster int:" in output and "feature_clusters str: per class, CLASS:N" in output, output
    result, output = invoke("translate", run, source, "-o", tmp_path / "x", "--option", "feature_cluster=0",
                            "--samples", 2)
    assert result.exit_code == 1 and "is not multimodal" in output, output


def clustered_data_root(clustered) -> str:
    import tomllib

    run, _ = clustered
    return tomllib.loads((run / "recipe.toml").read_text())["data"]["root"]


def test_a_clusters_file_of_another_model_or_damaged_is_refused(clustered, registry, tmp_path):
    run, _ = clustered
    checkpoint_only(run, tmp_path)
    clusters = FeatureClusters.read(run / CLUSTERS_FILE)
    FeatureClusters(clusters.centres[:5], clusters.counts[:5], clusters.names[:5], 0, "x", 1,
                    clusters.instances[:5]).save(tmp_path / CLUSTERS_FILE)
    with pytest.raises(CheckpointError, match="holds clusters of 5 classes x 3 features, but this model has 12 x 3"):
        Translator.from_checkpoint(tmp_path, device="cpu", registry=registry)
    (tmp_path / CLUSTERS_FILE).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="is not a readable feature-clusters file"):
        Translator.from_checkpoint(tmp_path, device="cpu", registry=registry)
    # `tkit features` makes it anew over the stale file, whose refusal said to run it.
    result, output = invoke("features", tmp_path, "--clusters", 3, "--seed", 0, "--device", "cpu",
                            "--data-root", clustered_data_root(clustered))
    assert result.exit_code == 0, output
    assert torch.equal(FeatureClusters.read(tmp_path / CLUSTERS_FILE).centres, clusters.centres)


# --- label and instance maps of one's own --------------------------------------------------------


def write_instance_data(root: Path, count: int = 4, size: int = 32) -> Path:
    """labels/, images/, instances/ under root/train: 3 classes, two instances of class 1 per image."""
    g = torch.Generator().manual_seed(0)
    for folder in ("labels", "images", "instances"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        labels = torch.zeros(1, size, size, dtype=torch.uint8)
        instances = torch.zeros(1, size, size, dtype=torch.uint8)
        labels[:, 4:14, 4:14] = 1
        instances[:, 4:14, 4:14] = 10
        labels[:, 18:28, 16:30] = 1
        instances[:, 18:28, 16:30] = 11  # a second instance of class 1
        labels[:, :, 28 - i :] = 2
        instances[:, :, 28 - i :] = 20
        photo = (labels.float() * 80 + torch.rand(3, size, size, generator=g) * 40).to(torch.uint8)
        write_png(labels, str(root / "train" / "labels" / f"{i}.png"))
        write_png(instances, str(root / "train" / "instances" / f"{i}.png"))
        write_png(photo, str(root / "train" / "images" / f"{i}.png"))
    return root


def test_instance_maps_add_boundaries_and_pool_per_instance(registry, pm, tmp_path):
    root = write_instance_data(tmp_path / "data")
    tables = tomllib.loads(RECIPE.read_text())
    tables["data"].update(layout="folders", labels="index", label_nc=3, instances_dir="instances", palette="",
                          in_channels=1)
    tables["method"].update(instance_maps=True, label_nc=3)
    recipe = load_recipe(tables, quick_overrides(root, tmp_path / "runs") + TINY + ["data.load_size=32"],
                         registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    method = trainer.method
    assert method.nets["G"].in_channels == 3 + 1 + 3 and method.nets["D"].in_channels == 3 + 1 + 3
    history = trainer.fit()
    assert all(math.isfinite(v) for r in history for v in r.values())
    from translate_kit.api import BatchSpec, build_dataset

    item = build_dataset(trainer.recipe, trainer.registry, cache=False)[0]
    batch = {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}
    prepared = method.prepare_batch(batch, BatchSpec(device=torch.device("cpu"), crop_size=None, train=False))
    classes, features, areas = method.instance_features(prepared)
    assert classes.tolist() == [0, 1, 1, 2]  # the two instances of class 1 are two, not one
    _, pixels = torch.unique(item["instances"], return_counts=True)  # ids 0, 10, 11, 20 in order
    assert areas.tolist() == (pixels / 1024).tolist() and pixels[1] == 100
    assert not torch.equal(features[1], features[2])
    # At inference there is no instance map: the one-channel map of ids is read back exactly.
    translator = Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=registry)
    assert translator(item["A"]).shape == (3, 32, 32)
