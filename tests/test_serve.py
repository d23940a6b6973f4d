"""`tkit serve`: what a model takes (`InputSpec`), palettes as components, the JSON API and its
refusals, concurrent requests, the command, and the page itself in a headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from browser import browser, screenshot, wait_for  # noqa: F401 - `browser` is a fixture
from conftest import RECIPES, ROOT, quick_overrides
from starlette.testclient import TestClient
from torch import nn
from torchvision.io import decode_image, encode_png
from typer.testing import CliRunner

from translate_kit.api import FACADES, Method, Parts, StepContext, register_generator, register_method
from translate_kit.build import build_method
from translate_kit.cli import make_app
from translate_kit.data.synth import render_facade
from translate_kit.errors import PluginError, UnknownComponentError
from translate_kit.inference import Translator
from translate_kit.method import InputSpec, describe_inputs
from translate_kit.recipe import load_recipe
from translate_kit.registry import Registry
from translate_kit.serve.app import create_app, serve_in_thread
from translate_kit.serve.models import MB, Limits, load_models, served_model
from translate_kit.testing import first_party_plugin_manager
from translate_kit.train.trainer import Trainer

TINY_UNET = ["generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]  # 32 px crops

# ------------------------------------------------------------------------------------------------
# A toy family that declares more than the default: multimodal, and a style image


@register_generator()
def toy_pointwise(*, in_channels: int = 3, out_channels: int = 3) -> nn.Conv2d:
    """A 1x1 convolution (test family)."""
    return nn.Conv2d(in_channels, out_channels, 1)


class ToyMultimodal(Method):
    """Adds a random latent shift per image, and a style image's mean when it has one."""

    roles = {"G": "translate"}
    sample_mode = "eval"
    declares_style = False

    def __init__(self, generator: nn.Module, style: torch.Tensor | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator})
        self.style = style

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G"]}

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # never trained here

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.randn(x.shape[0], 1, 1, 1, device=x.device)  # the latent code: one per image
        shift = 0.0 if self.style is None else float(self.style.mean())
        return torch.tanh(self.nets["G"](x) + z + shift)

    def input_spec(self, default: InputSpec) -> InputSpec:
        return dataclasses.replace(default, multimodal=True, style_image=self.declares_style)


class ToyStyled(ToyMultimodal):
    declares_style = True

    def with_style(self, style: torch.Tensor) -> ToyStyled:
        return ToyStyled(self.nets["G"], style)  # the same network


class ToyClaimsStyle(ToyMultimodal):
    declares_style = True  # but no with_style


@register_method(tables={"generator": "generator"})
def toy_styled(parts: Parts, /) -> ToyStyled:
    """A multimodal, style-following toy (test family)."""
    return ToyStyled(parts.generator())


TOY_RECIPE = {"data": {"dataset": "aligned", "root": "unused"}, "method": {"name": "toy_styled"},
              "generator": {"name": "toy_pointwise"}}


# ------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def toy_registry() -> Registry:
    return Registry.from_plugin_manager(first_party_plugin_manager(plugins=[sys.modules[__name__]]))


@pytest.fixture(scope="module")
def label_run(registry, pm, tiny_facades, tmp_path_factory) -> Path:
    """The quickstart recipe (facades label maps -> photos), tiny: 2 steps at 32 px."""
    out = tmp_path_factory.mktemp("serve_runs")
    recipe = load_recipe(RECIPES / "quickstart.toml", quick_overrides(tiny_facades, out) + TINY_UNET, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    trainer.fit()
    return trainer.run_dir


@pytest.fixture(scope="module")
def models(label_run, registry, toy_registry):
    """The label-map run, a x4 model (bicubic: no training) and the toy, sharing one random-state lock."""
    (label,) = load_models([label_run], registry=registry, device="cpu")
    bicubic = Translator.from_recipe(RECIPES / "bicubic_x4.toml", registry=registry, device="cpu")
    sr = served_model("bicubic_x4", bicubic, registry, rng_lock=label.rng_lock)
    recipe = load_recipe(TOY_RECIPE, registry=toy_registry)
    toy = Translator(build_method(recipe, toy_registry), recipe, device="cpu")
    return [label, sr, served_model("toy", toy, toy_registry, rng_lock=label.rng_lock)]


@pytest.fixture(scope="module")
def client(models):
    return TestClient(create_app(models, limits=Limits(max_upload_bytes=2 * MB, max_pixels=200 * 200)))


@pytest.fixture(scope="module")
def live(models):
    """The app served by uvicorn from a background thread: its URL."""
    with serve_in_thread(create_app(models)) as url:
        yield url


def labels(height: int, width: int, seed: int = 3) -> torch.Tensor:
    """A uint8 (3, H, W) facades label map: synthetic facades side by side."""
    side = max(height, 32)
    tiles = [render_facade(seed + i, side)[1] for i in range(-(-width // side))]
    return torch.cat(tiles, dim=2)[:, :height, :width].contiguous()


def png(image: torch.Tensor) -> bytes:
    return encode_png(image).numpy().tobytes()


def decoded(data: bytes) -> torch.Tensor:
    return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8))


def post(client, image: bytes, **fields: Any):
    return client.post("/api/translate", data={k: str(v) for k, v in fields.items()},
                       files={"image": ("input.png", image, "image/png")})


# ------------------------------------------------------------------------------------------------
# The contract: InputSpec, its default and a method's own say


def test_the_default_input_spec_comes_from_the_recipe_and_the_geometry(models):
    label, sr, _ = models
    assert label.spec == InputSpec(kind="label_map", channels=3, palette=FACADES, modes=("paper", "eval"), scale=1)
    assert label.spec.default_mode == "paper"  # pix2pix's sample mode; its U-Net has dropout and batch norm
    assert sr.spec == InputSpec(kind="image", channels=3, modes=("eval",), scale=4)  # nothing paper mode changes


def test_a_method_declares_more_through_input_spec(toy_registry):
    recipe = load_recipe(TOY_RECIPE, registry=toy_registry)
    method = build_method(recipe, toy_registry)
    spec = describe_inputs(method, channels=3)
    assert (spec.kind, spec.multimodal, spec.style_image, spec.modes) == ("image", True, True, ("eval",))
    with pytest.raises(PluginError, match="declares a style image, but ToyClaimsStyle has no with_style"):
        describe_inputs(ToyClaimsStyle(nn.Conv2d(3, 3, 1)), channels=3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "label_map"}, "Expected a palette exactly when kind is 'label_map'"),
        ({"palette": FACADES}, "Expected a palette exactly when kind is 'label_map'"),
        ({"kind": "label_map", "palette": FACADES, "channels": 1}, "Expected 3 channels"),
        ({"modes": ()}, "Expected modes from 'paper' and 'eval'"),
        ({"modes": ("eval", "eval")}, "Expected modes from 'paper' and 'eval'"),
        ({"scale": 0}, "scale >= 1"),
    ],
)
def test_input_spec_refuses_what_cannot_be(fields, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**fields)


def test_palettes_are_components_and_the_recipe_check_knows_them(registry):
    assert registry.get("palette", "facades").plugin == "palettes"
    assert registry.create("palette", "facades") == FACADES
    with pytest.raises(UnknownComponentError, match=r"Unknown palette 'facade' \(--set data.palette=\"facade\"\)\. "
                       r"Did you mean 'facades'\?"):
        load_recipe(RECIPES / "quickstart.toml", ['data.palette="facade"'], registry=registry)
    with_palette = [p.stem for p in sorted(RECIPES.glob("*.toml")) if load_recipe(p).data.palette]
    assert {"pix2pix_facades", "pix2pix_timm_unet_facades", "pix2pixhd_facades", "quickstart"} <= set(with_palette)


# ------------------------------------------------------------------------------------------------
# The API


def test_models_lists_each_models_inputs_and_options(client):
    body = client.get("/api/models").json()
    label, sr, toy = body["models"]
    assert label["input"] == "label_map" and label["palette"]["names"][:3] == ["background", "facade", "window"]
    assert label["palette"]["colors"][0] == list(FACADES.colors[0])
    assert (label["modes"], label["default_mode"], label["canvas_size"], label["step"]) == (["paper", "eval"], "paper",
                                                                                            32, 2)
    assert (sr["input"], sr["palette"], sr["modes"], sr["scale"]) == ("image", None, ["eval"], 4)
    assert (toy["multimodal"], toy["style_image"]) == (True, True)
    assert body["limits"] == {"max_upload_bytes": 2 * MB, "max_pixels": 200 * 200, "max_samples": 8}
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and b'src="app.js"' in page.content
    assert b"api/translate" in client.get("/app.js").content and client.get("/style.css").status_code == 200


def test_a_translation_has_the_inputs_size_times_the_scale(client, models):
    image = labels(24, 40)
    same = post(client, png(image), model=models[0].name)
    assert same.status_code == 200 and same.headers["content-type"] == "image/png"
    out = decoded(same.content)
    assert out.shape == (3, 24, 40) and (same.headers["x-width"], same.headers["x-height"]) == ("40", "24")
    assert torch.equal(out, models[0].translate(image, mode="paper", seed=0)[0])  # seeded: repeatable
    upscaled = post(client, png(image), model="bicubic_x4", format="json").json()
    assert (upscaled["width"], upscaled["height"], upscaled["scale"], upscaled["mode"]) == (160, 96, 4, "eval")
    assert decoded(base64.b64decode(upscaled["images"][0])).shape == (3, 96, 160)


def test_a_multimodal_model_gives_seeded_samples_and_follows_a_style(client):
    image = png(labels(16, 16))

    def samples(seed: int, style: bytes | None = None) -> list[torch.Tensor]:
        files = {"image": ("a.png", image, "image/png")}
        if style is not None:
            files["style"] = ("s.png", style, "image/png")
        body = client.post("/api/translate", data={"model": "toy", "samples": "3", "seed": str(seed),
                                                   "format": "json"}, files=files).json()
        return [decoded(base64.b64decode(b)) for b in body["images"]]

    first = samples(5)
    assert len(first) == 3 and not torch.equal(first[0], first[1])  # each sample its own latent code
    assert all(torch.equal(a, b) for a, b in zip(first, samples(5)))  # the seed repeats them
    assert torch.equal(samples(6)[0], first[1])  # sample i is seed + i
    bright = samples(5, png(torch.full((3, 8, 8), 255, dtype=torch.uint8)))
    assert bright[0].float().mean() > first[0].float().mean() + 20


@pytest.mark.parametrize(
    ("fields", "body", "status", "message"),
    [
        ({"model": "bicubic_x"}, "png", 404, "Unknown model 'bicubic_x'. Did you mean 'bicubic_x4'?"),
        ({}, "png", 422, "Say which model: send the field 'model'"),
        ({"model": "bicubic_x4"}, b"GIF89a" + bytes(4), 415, "cannot be decoded: the file is truncated or damaged"),
        ({"model": "bicubic_x4"}, b"%PDF-1.7 not an image", 415, "not a PNG, JPEG, GIF or WebP image"),
        ({"model": "bicubic_x4"}, b"", 415, "is empty"),
        # 300 frames of a small canvas would decode to 300 canvases: refused before decoding.
        ({"model": "bicubic_x4"}, b"GIF89a" + bytes([4, 0, 4, 0, 0, 0, 0]) + 300 * bytes([0x2C, *[0] * 8, 0, 2, 1, 0, 0])
         + b";", 415, "is an animated GIF (300 frames)"),
        ({"model": "bicubic_x4"}, "truncated", 415, "cannot be decoded"),
        ({"model": "bicubic_x4"}, "large", 413, "is 100 x 60 pixels (its output 400 x 240), over this server's limit"),
        ({"model": "bicubic_x4", "mode": "paper"}, "png", 422, "has no 'paper' mode; choose eval"),
        ({"model": "bicubic_x4", "samples": "2", "format": "json"}, "png", 422, "is not multimodal"),
        ({"model": "toy", "samples": "2"}, "png", 422, "Several samples come back as JSON only"),
        ({"model": "toy", "samples": "99", "format": "json"}, "png", 422, "'samples' must be between 1 and 8"),
        ({"model": "toy", "seed": "x"}, "png", 422, "'seed' must be an integer"),
        ({"model": "toy", "format": "tiff"}, "png", 422, "Unknown format 'tiff'"),
    ],
)
def test_refusals_are_json_errors_that_say_what_to_do(client, fields, body, status, message):
    small = png(labels(12, 20))
    data = {"png": small, "truncated": small[: len(small) // 2], "large": png(labels(60, 100))}.get(body, body)
    response = post(client, data, **fields)
    assert response.status_code == status and message in response.json()["error"], response.text


def test_an_oversized_upload_is_refused_before_it_is_read(client):
    response = post(client, b"\x89PNG" + bytes(3 * MB), model="bicubic_x4")
    assert response.status_code == 413
    assert "larger than this server's limit of 2 MB per request (--max-upload-mb)" in response.json()["error"]
    form = client.post("/api/translate", json={"model": "toy"})
    assert form.status_code == 415 and "multipart/form-data" in form.json()["error"]
    # A body sent in chunks declares no length: the limit holds while it streams in.
    head = b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG'
    chunks = iter([head, *[bytes(MB)] * 3, b"\r\n--B--\r\n"])
    streamed = client.post("/api/translate", content=chunks, headers={"content-type": "multipart/form-data; boundary=B"})
    assert streamed.status_code == 413 and "--max-upload-mb" in streamed.json()["error"]


def test_uploads_stay_in_memory(client, monkeypatch):
    """Starlette spools uploads over 1 MB to a temporary file; the server's parser never does."""
    def rollover(self):  # noqa: ANN001
        raise AssertionError("an upload was written to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", rollover)
    padded = png(labels(12, 20)) + bytes(int(1.5 * MB))  # bytes after the PNG's end are ignored
    response = post(client, padded, model="bicubic_x4")
    assert response.status_code == 200 and decoded(response.content).shape == (3, 48, 80)


def test_large_images_go_through_the_network_in_tiles(models, registry):
    label = models[0]
    tiled = served_model("tiled", label.translator, registry, limits=Limits(tile=64))
    assert tiled.tile == 64  # a multiple of the U-Net's 32
    image = labels(70, 150)
    out = tiled.translate(image, mode="eval")[0]
    reference = Translator(label.translator.method, label.translator.recipe, device="cpu", tile=64, overlap=16)
    assert out.shape == (3, 70, 150) and torch.equal(out, reference(image))


def test_concurrent_requests_each_get_their_own_result(live, models):
    """Eight threads at once, two models, different images: every answer is its own input's,
    equal to the answer alone."""
    jobs = [(models[i % 2].name, labels(16 + 8 * i, 24 + 8 * (i % 3), seed=i)) for i in range(8)]
    expected = [m.translate(img, seed=0)[0] for (name, img) in jobs for m in models if m.name == name]
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        name, image = jobs[i]
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.post(live + "api/translate", data={"model": name},
                                 files={"image": ("x.png", png(image), "image/png")})
        results[i] = decoded(response.content) if response.status_code == 200 else response.text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, (result, want) in enumerate(zip(results, expected)):
        assert isinstance(result, torch.Tensor), f"request {i}: {result}"
        assert torch.equal(result, want), f"request {i} got another request's result"


# ------------------------------------------------------------------------------------------------
# The command


def test_serve_help_imports_neither_torch_nor_the_web_stack():
    code = ("import sys\nfrom translate_kit.cli import main\n"
            "try:\n    main(['serve', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in ('torch', 'starlette', 'uvicorn', 'translate_kit_plugins') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--max-upload-mb" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_serve_without_the_extra_says_how_to_install_it(monkeypatch, label_run):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(make_app(), ["serve", str(label_run)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "uvicorn is not installed" in result.output and "pip install 'translate-kit[serve]'" in result.output


def test_serve_a_folder_without_checkpoints_is_one_paragraph(tmp_path):
    result = CliRunner().invoke(make_app(), ["serve", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    assert f"{tmp_path} is a folder but holds no checkpoint" in result.output


def test_serve_prints_its_url_serves_and_stops_on_ctrl_c(label_run):
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "translate_kit", "serve", str(label_run), "--port", "0",
                                "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=ROOT)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Serving"):
                break
        assert lines and lines[-1].startswith("Serving 1 model(s) at http://127.0.0.1:"), "".join(lines)
        url = lines[-1].split(" at ")[1].split()[0]
        assert httpx.get(url + "api/models", timeout=10).json()["models"][0]["input"] == "label_map"
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == 130 and "Stopped." in rest  # Ctrl-C's status, as for every command
    assert "Loaded quickstart from" in "".join(lines) and "label map (12 classes) input" in "".join(lines)


# ------------------------------------------------------------------------------------------------
# The page, in a headless Chromium


# A file handed to the page as a drop on the drop zone, or as a paste.
DISPATCH = """
const [kind, data] = arguments;
const transfer = new DataTransfer();
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
transfer.items.add(new File([bytes], "handed.png", {type: "image/png"}));
const init = {bubbles: true, cancelable: true};
if (kind === "drop") document.getElementById("drop").dispatchEvent(new DragEvent("drop", {...init, dataTransfer: transfer}));
else document.dispatchEvent(new ClipboardEvent("paste", {...init, clipboardData: transfer}));
"""


def _status(driver) -> str:
    return driver.execute_script("return document.getElementById('status').textContent")


def _translated(driver, after: int) -> torch.Tensor:
    """Wait until the page shows a translation newer than the `after`-th and is idle; return it."""
    wait_for(driver, lambda d: d.execute_script(
        "const o = document.getElementById('output');"
        f"return window.tkit.shown > {after} && !window.tkit.busy() && o.complete && o.naturalWidth > 0"),
        what=f"translation {after + 1}", explain=_status)
    src = driver.execute_script("return document.getElementById('output').src")
    return decoded(base64.b64decode(src.split(",", 1)[1]))


def _shown(driver) -> int:
    return driver.execute_script("return window.tkit.shown")


def _canvas(driver) -> torch.Tensor:
    url = driver.execute_script("return document.getElementById('canvas').toDataURL('image/png')")
    return decoded(base64.b64decode(url.split(",", 1)[1]))[:3]


def test_the_page_paints_translates_uploads_and_compares(browser, live, models, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(live)
    blank = _translated(driver, 0)  # the canvas starts as background, and is translated at once
    assert blank.shape == (3, 32, 32)
    canvas = _canvas(driver)
    assert canvas.shape == (3, 32, 32) and (canvas == torch.tensor(FACADES.colors[0]).view(3, 1, 1)).all()

    # Paint two strokes of "window" with the largest brush.
    driver.find_element(By.CSS_SELECTOR, "#legend button[data-class-index='2']").click()
    driver.find_elements(By.CSS_SELECTOR, "#sizes button")[-1].click()
    element = driver.find_element(By.ID, "canvas")
    side = element.size["width"]
    shown = _shown(driver)
    (ActionChains(driver).move_to_element_with_offset(element, -side // 3, -side // 3).click_and_hold()
     .move_by_offset(side // 2, 0).move_by_offset(0, side // 2).release().perform())
    painted = _translated(driver, shown)
    drawn = _canvas(driver)
    window = torch.tensor(FACADES.colors[2]).view(3, 1, 1)
    colours = {tuple(c) for c in drawn.flatten(1).T.tolist()}
    assert colours == {FACADES.colors[0], FACADES.colors[2]}  # exact palette colours: no anti-aliasing
    assert (drawn == window).all(0).sum() > 40
    assert painted.shape == (3, 32, 32) and not torch.equal(painted, blank)  # the output follows the drawing
    # What the page shows is the server's translation of exactly that drawing, in its mode and seed.
    alone = httpx.post(live + "api/translate", data={"model": models[0].name, "mode": "paper", "seed": "0"},
                       files={"image": ("c.png", png(drawn), "image/png")})
    assert torch.equal(decoded(alone.content), painted)
    screenshot(driver, "serve.png")

    # Undo the strokes: the drawing, and so the translation, is the blank one again.
    shown = _shown(driver)
    driver.find_element(By.ID, "undo").click()
    assert torch.equal(_translated(driver, shown), blank)

    # Fill: the bucket turns the whole background into "door".
    shown = _shown(driver)
    driver.find_element(By.CSS_SELECTOR, "button[data-tool='fill']").click()
    driver.find_element(By.CSS_SELECTOR, "#legend button[data-class-index='3']").click()
    ActionChains(driver).move_to_element(element).click().perform()
    filled = _translated(driver, shown)
    assert (_canvas(driver) == torch.tensor(FACADES.colors[3]).view(3, 1, 1)).all() and not torch.equal(filled, blank)

    # Upload a label map of another size through the file input.
    upload = tmp_path / "labels.png"
    upload.write_bytes(png(labels(24, 40)))
    shown = _shown(driver)
    driver.find_element(By.ID, "file").send_keys(str(upload))
    uploaded = _translated(driver, shown)
    assert uploaded.shape == (3, 24, 40) and torch.equal(uploaded, models[0].translate(labels(24, 40), seed=0)[0])

    # The x4 model: the same upload comes back four times larger, the input shown upscaled beneath it.
    shown = _shown(driver)
    Select(driver.find_element(By.ID, "model")).select_by_value("bicubic_x4")
    assert _translated(driver, shown).shape == (3, 96, 160)
    assert driver.find_element(By.ID, "draw").is_displayed() is False
    before, after = (driver.find_element(By.ID, i) for i in ("before", "output"))
    assert before.size == after.size and before.location == after.location  # overlaid
    driver.find_element(By.CSS_SELECTOR, "input[name=view][value=side]").click()
    assert before.size == after.size and before.location["x"] + before.size["width"] <= after.location["x"]

    # Drag and drop, and paste, take an image too.
    for kind, (height, width) in (("drop", (20, 28)), ("paste", (12, 16))):
        shown = _shown(driver)
        driver.execute_script(DISPATCH, kind, base64.b64encode(png(labels(height, width))).decode())
        assert _translated(driver, shown).shape == (3, 4 * height, 4 * width), kind

    # A file that is not an image: the server's message is shown as an error.
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    driver.find_element(By.ID, "file").send_keys(str(bad))
    wait_for(driver, lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"), what="the error",
             explain=_status)
    assert "not a PNG, JPEG, GIF or WebP image" in _status(driver)
