"""`data.cache = "device"`: the training set stacked on the device, batches equal to the
DataLoader's bit for bit, training and resuming exactly as with `cache = true`, clear errors."""

from __future__ import annotations

import io

import pytest
import torch
from conftest import RECIPES, quick_overrides
from rich.console import Console
from torch.utils.data import Dataset

from translate_kit.data import device_cache
from translate_kit.data.device_cache import DeviceLoader, stack_items
from translate_kit.data.loading import EpochSampler, PreparedDataset, make_loader
from translate_kit.errors import DataError
from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

TINY_UNET = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]


class Items(Dataset):
    """`count` items of every kind a dataset component makes: uint8 images, a float tensor
    (a flow), an integer label, a name; image sizes vary when `sizes` does."""

    def __init__(self, count: int = 9, sizes: tuple[int, ...] = (10,)) -> None:
        self.count, self.sizes = count, sizes

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(index)
        side = self.sizes[index % len(self.sizes)]
        return {
            "A": torch.randint(0, 256, (3, side, side), generator=g, dtype=torch.uint8),
            "B": torch.randint(0, 256, (1, side, side), generator=g, dtype=torch.uint8),
            "flow": torch.randn(2, 4, 4, generator=g, dtype=torch.float64),
            "label": index % 3,
            "name": f"item{index}",
        }


def prepared(cache, **kwargs) -> PreparedDataset:
    dataset = PreparedDataset(Items(**kwargs), load_size=8, channels={"A": 3, "B": 1}, cache=cache)
    dataset.warm()
    return dataset


def assert_same_batches(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got) > 0
    for want, have in zip(expected, got):
        assert list(want) == list(have)  # the same keys in the same order
        for key in want:
            assert type(want[key]) is type(have[key]), key
            if isinstance(want[key], torch.Tensor):
                assert want[key].dtype == have[key].dtype and torch.equal(want[key], have[key]), key
            else:
                assert want[key] == have[key], key


@pytest.mark.parametrize(("rank", "world_size", "epoch", "start"), [(0, 1, 0, 0), (1, 2, 3, 0), (0, 1, 2, 3),
                                                                      (1, 2, 1, 1)])
def test_device_batches_equal_the_dataloader_batches(rank, world_size, epoch, start):
    cached, resident = prepared(True), prepared("device")
    resident.make_resident(torch.device("cpu"))
    samplers = [EpochSampler(9, seed=5, rank=rank, world_size=world_size) for _ in range(2)]
    for sampler in samplers:
        sampler.set_epoch(epoch, start=start)
    reference = make_loader(cached, samplers[0], batch_size=2, num_workers=0, pin_memory=False)
    loader = DeviceLoader(resident.resident, samplers[1], batch_size=2)
    rng = torch.get_rng_state()
    got = list(loader)
    assert torch.equal(rng, torch.get_rng_state())  # no global random number drawn: resumes stay exact
    expected = list(reference)
    assert_same_batches(expected, got)
    # drop_last as the DataLoader: an odd shard or start leaves its last item out
    assert len(loader) == len(reference) == len(got) == (len(samplers[0].indices()) - start) // 2
    assert [n for b in got for n in b["name"]] == [f"item{i}" for i in samplers[0].indices()[start:][: 2 * len(got)]]


def test_the_stacked_set_serves_items_and_frees_the_per_item_cache():
    cached, resident = prepared(True), prepared("device")
    stack = resident.make_resident(torch.device("cpu"))
    assert resident.cache == {} and stack.on_device
    assert {k: (tuple(t.shape), t.dtype) for k, t in stack.tensors.items()} == {
        "A": ((9, 3, 8, 8), torch.uint8), "B": ((9, 1, 8, 8), torch.uint8), "flow": ((9, 2, 4, 4), torch.float64)}
    assert stack.values == {"label": [i % 3 for i in range(9)], "name": [f"item{i}" for i in range(9)]}
    assert_same_batches([cached[i] for i in range(9)], [resident[i] for i in range(9)])
    resident[0]["A"].zero_()  # a caller changing its item in place must not reach the cache
    assert torch.equal(resident[0]["A"], cached[0]["A"])


def test_skipped_items_are_left_out_of_the_stack():
    class OneBad(Items):
        def __getitem__(self, index):
            if index == 4:
                raise DataError("item4 is broken")
            return super().__getitem__(index)

    dataset = PreparedDataset(OneBad(), load_size=8, channels={"A": 3, "B": 1}, cache="device", on_error="skip")
    dataset.warm()
    stack = dataset.make_resident(torch.device("cpu"))
    assert len(dataset) == len(stack) == 8 and stack.values["name"] == [f"item{i}" for i in range(9) if i != 4]
    assert dataset[4]["name"] == "item5"


def test_items_of_different_sizes_cannot_be_stacked_and_the_error_says_how_to_fix_it():
    dataset = PreparedDataset(Items(sizes=(10, 12)), load_size=0, channels={"A": 3, "B": 1}, cache="device")
    dataset.warm()
    with pytest.raises(DataError, match=r"'A'.*'item0' has \(3, 10, 10\) and 'item1' has \(3, 12, 12\).*data\.load_size"
                       r".*data\.cache = true"):
        dataset.make_resident(torch.device("cpu"))
    assert len(dataset.cache) == 9 and dataset[1]["A"].shape == (3, 12, 12)  # still usable with the host cache


def test_a_set_that_does_not_fit_stays_in_host_memory_and_says_so_once(monkeypatch):
    monkeypatch.setattr(device_cache, "device_memory_free", lambda device: 3000)
    items = [Items()[i] for i in range(9)]
    need = 9 * (3 * 10 * 10 + 10 * 10 + 2 * 4 * 4 * 8)  # A, B uint8, flow float64: 5004 bytes
    out = io.StringIO()
    console = Console(file=out, width=400)
    stack = stack_items(items, names=[f"item{i}" for i in range(9)], device=torch.device("cuda"), console=console)
    text = out.getvalue()
    assert text.count("does not fit") == 1
    assert f"{need / 2**20:.1f} MiB" in text and f"{3000 / 2**20:.1f} MiB free" in text and "host memory" in text
    assert not stack.on_device
    for tensor in stack.tensors.values():
        assert tensor.device.type == "cpu" and tensor.is_pinned() == torch.cuda.is_available()
    positions = torch.tensor([4, 1])
    batch = stack.batch(positions, [4, 1])
    assert torch.equal(batch["A"], torch.stack([items[4]["A"], items[1]["A"]])) and batch["name"] == ["item4", "item1"]
    assert torch.equal(batch["label"], torch.tensor([1, 1]))

    monkeypatch.setattr(device_cache, "device_memory_free", lambda device: 2 * need)  # exactly half: it fits
    assert device_cache.fits_on_device(need, torch.device("cuda")) == (True, 2 * need)
    assert device_cache.fits_on_device(need + 1, torch.device("cuda")) == (False, 2 * need)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_batches_are_gathered_on_the_device():
    cached, resident = prepared(True), prepared("device")
    stack = resident.make_resident(torch.device("cuda"))
    assert stack.on_device and all(t.is_cuda for t in stack.tensors.values())
    samplers = [EpochSampler(9, seed=1) for _ in range(2)]
    got = [{k: v.cpu() if isinstance(v, torch.Tensor) and k in stack.tensors else v for k, v in b.items()}
           for b in DeviceLoader(stack, samplers[1], batch_size=3)]
    assert_same_batches(list(make_loader(cached, samplers[0], batch_size=3, num_workers=0, pin_memory=False)), got)


def weights(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.method.nets.items() for k, v in net.state_dict().items()}


def test_training_from_the_device_cache_equals_the_host_cache_and_resumes_exactly(registry, pm, tiny_facades,
                                                                                  tmp_path):
    # 10 images, batch 2: 5 steps per epoch; 6 steps cross an epoch boundary, the resume starts mid-epoch.
    def trainer(run_dir, steps, *extra, **kwargs):
        overrides = quick_overrides(tiny_facades, run_dir, steps=steps) + TINY_UNET + ["train.num_samples=1", *extra]
        recipe = load_recipe(RECIPES / "pix2pix_facades.toml", overrides, registry=registry)
        return Trainer(recipe, registry=registry, pm=pm, device="cpu", **kwargs)

    host = trainer(tmp_path / "host", 6)
    host.fit()
    first = trainer(tmp_path / "device", 2, 'data.cache="device"')
    assert isinstance(first.loader, DeviceLoader) and first.dataset.cache == {}
    first.fit()
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=6"], registry=registry)
    assert recipe.data.cache == "device"
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)
    assert (resumed.state.epoch, resumed.state.epoch_step) == (0, 2)
    resumed.fit()
    expected, got = weights(host), weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
