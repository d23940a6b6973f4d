"""`tkit eval`: translate a dataset split with a trained model and score the results.

Per-pixel metrics (L1, MSE, PSNR, SSIM on [0, 1] images) compare each output with its target.
The FCN-score (Isola et al. 2017, Sec. 4.2) asks a segmenter to label the generated photos and
compares those labels with the ground-truth label map (for labels -> photo, the input itself),
from one confusion matrix over the whole split. The same segmenter on the real photos gives the
"ground truth" row: the ceiling every FCN-score is read against.

With an FID network (`translate_kit.eval.fid`), FID and KID compare the Inception features of all
generated outputs with those of all targets of the split.

For a multimodal method (`InputSpec.multimodal`), `EvalOptions.diversity_samples` draws that many
samples per input and measures how far apart they are (`translate_kit.eval.diversity`: BicycleGAN's
LPIPS protocol and a pixel-space L1), with the per-pixel metrics and the FCN-score of the samples, so
that diversity can be read against faithfulness.

Everything streams: a batch is read, translated, scored and written before the next is read.
Each batch goes through the method's own `prepare_batch` (as for sample pages: no jitter, a centre
crop), so inputs and targets are what the method trains on: for pix2pix the pairs themselves, for
a super-resolution method the degraded input it makes from a high-resolution image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from translate_kit.data.jitter import from_unit_range, to_unit_range
from translate_kit.data.loading import PreparedDataset, build_dataset, collate_items
from translate_kit.errors import DataError, OptionError, RecipeError
from translate_kit.eval.diversity import Diversity, describe_diversity, summarize_sample_fcn
from translate_kit.eval.fid import FIDKID
from translate_kit.eval.labels import encode_palette
from translate_kit.eval.lpips import LPIPS
from translate_kit.eval.metrics import ConfusionMatrix, PixelMetrics
from translate_kit.method import BatchSpec, EvalProtocol, PixelClassifier, test_time
from translate_kit.pages import save_png

__all__ = [
    "INCEPTION_KEYS",
    "EvalOptions",
    "EvalReport",
    "check_multimodal",
    "describe_diversity",
    "describe_inception",
    "describe_protocol",
    "diversity_rows",
    "eval_dataset",
    "evaluate",
    "format_value",
    "write_eval_page",
    "write_json",
]

INCEPTION_KEYS = ("fid", "kid_mean", "kid_std")  # the split's figures of `EvalReport.inception`


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """What to evaluate and how."""

    split: str = "test"  # dataset split; the run's dataset factory must take a `split` option
    batch_size: int = 8  # images per batch (1 when the method evaluates images at their stored size)
    limit: int = 0  # evaluate only the first N images; 0: all
    write_images: bool = True  # input/output/target PNGs for the page
    diversity_samples: int = 0  # samples per input for the diversity figures (multimodal methods); 0: none


@dataclass
class EvalReport:
    """Every figure of an evaluation; `to_dict()` is the `--json` file (keys in docs/metrics.md)."""

    checkpoint: str
    split: str
    images: int
    mode: str
    pixel: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)
    fcn: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    inception: dict[str, Any] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "split": self.split,
            "images": self.images,
            "mode": self.mode,
            "protocol": self.protocol,
            "pixel": self.pixel,
            "fcn": self.fcn,
            "inception": self.inception,
            "diversity": self.diversity,
            "per_image": self.per_image,
        }


def eval_dataset(recipe: Any, registry: Any, split: str, *, resize: bool = True) -> PreparedDataset:
    """The run's dataset on another split, at test-time size: images resized to crop_size, never
    cropped (the reference's test-time preprocessing), or with `resize=False` at their stored size
    (`EvalProtocol.resize`).
    """
    data = recipe.data
    spec = registry.get("dataset", data.dataset)
    if "split" not in {o.name for o in spec.options}:
        raise RecipeError(
            f"Dataset {data.dataset!r} has no 'split' option, so `tkit eval --split` cannot choose images; "
            "evaluate with a dataset that has splits (aligned, paired)."
        )
    return build_dataset(recipe, registry, split=split, load_size=data.crop_size if resize else 0, cache=False)


def check_multimodal(translator: Any, what: str = "--diversity") -> None:
    """Raise OptionError unless the translator's method is multimodal (draws many outputs per input)."""
    if not translator.spec.multimodal:
        raise OptionError(
            f"{what} measures how far apart a multimodal model's samples for one input are, and this model "
            f"({type(translator.method).__name__}) is not multimodal: it gives one output per input, so every "
            "sample would be the same image. Evaluate a multimodal model (one whose input_spec says multimodal, "
            f"e.g. SPADE with method.use_vae = true) or leave out {what}."
        )


def _per_image_accuracy(pred: torch.Tensor, true: torch.Tensor) -> list[float]:
    valid = true != 255
    correct = ((pred == true) & valid).flatten(1).sum(1).float()
    total = valid.flatten(1).sum(1).float()
    return [c / t if t > 0 else math.nan for c, t in zip(correct.tolist(), total.tolist())]


@torch.inference_mode()
def evaluate(
    translator: Any,
    dataset: PreparedDataset,
    *,
    options: EvalOptions,
    out_dir: Path | None,
    checkpoint: str,
    segmenter: Any | None = None,
    on_batch: Callable[[int], None] | None = None,
    protocol: EvalProtocol | None = None,
    fid_network: torch.nn.Module | None = None,
    lpips_network: LPIPS | None = None,
) -> EvalReport:
    """Translate `dataset` with `translator` and score it.

    Args:
        translator: a `translate_kit.inference.Translator`.
        dataset: pairs `{"A": input, "B": target, "name"}` as uint8, at the size to evaluate, and
            optionally `"grey"`: the target's original is a one-channel image (see `rgb_to_y`).
        options: split name (for the report), batch size, limit, whether to write images.
        out_dir: where images go (`images/`); None writes nothing.
        checkpoint: what is evaluated, for the report.
        segmenter: a Translator whose method is a `PixelClassifier`; None skips the FCN-score.
        on_batch: called with the number of images done after each batch.
        protocol: how to present and score the images (default: the method's `eval_protocol()`).
        fid_network: a `FIDInception` (`translate_kit.eval.fid.load_fid_inception`) for FID and KID
            between the outputs and the targets; None skips them.
        lpips_network: with `options.diversity_samples`, an `LPIPS` (`translate_kit.eval.lpips.load_lpips`)
            for BicycleGAN's diversity figure; None gives the pixel-space figure only.

    With `options.diversity_samples` = N, each input's N samples are drawn with the translator's
    seed + 0 ... N - 1 (`Translator.translate_samples`); sample 0 is the output scored as usual.

    Raises:
        OptionError: diversity asked of a method that is not multimodal.
        DataError: no image to evaluate, or too few for FID, or images too small for SSIM.
    """
    count = len(dataset) if not options.limit else min(options.limit, len(dataset))
    if count == 0:
        raise DataError(f"The {options.split} split holds no image to evaluate.")
    if fid_network is not None and count < 2:
        raise DataError(f"FID and KID need at least 2 images; the {options.split} split gives {count} to evaluate.")
    if options.diversity_samples:  # 0: off
        if options.diversity_samples < 2:
            raise OptionError(f"Diversity needs at least 2 samples per input (one pair), got {options.diversity_samples}; "
                              "ask for more (--diversity-samples, 20 by default).")
        check_multimodal(translator)
    protocol = protocol if protocol is not None else translator.method.eval_protocol()
    subset = torch.utils.data.Subset(dataset, range(count))
    batch_size = options.batch_size if protocol.resize else 1  # stored sizes differ
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_items)
    if segmenter is not None and not isinstance(segmenter.method, PixelClassifier):
        raise RecipeError(
            f"{segmenter.checkpoint} is not a segmenter run: its method labels no pixels (it is not a "
            "PixelClassifier). Train one with `tkit train fcn_facades`."
        )
    pixel = PixelMetrics(color=protocol.color, shave=protocol.shave)
    palette = segmenter.method.palette if segmenter is not None else None
    crop = translator.recipe.data.crop_size if protocol.resize else None
    spec = BatchSpec(torch.device("cpu"), crop, flip=False, train=False)
    if palette is not None:
        generated = ConfusionMatrix(palette.num_classes, class_names=palette.names)
        real = ConfusionMatrix(palette.num_classes, class_names=palette.names)
    fid_kid = FIDKID(fid_network) if fid_network is not None else None
    n_samples = options.diversity_samples
    diversity = Diversity(n_samples, lpips=lpips_network) if n_samples else None
    sample_pixel = PixelMetrics(color=protocol.color, shave=protocol.shave)
    if palette is not None and n_samples:  # one FCN-score per sample set: sample s of every input
        sample_fcn = [ConfusionMatrix(palette.num_classes, class_names=palette.names) for _ in range(n_samples)]
    rows: list[dict[str, Any]] = []
    grey_names: list[str] = []
    done = 0
    for batch in loader:
        prepared = translator.method.prepare_batch(batch, spec)  # the method's inputs and targets, uint8 again
        inputs, targets = from_unit_range(prepared["A"]), from_unit_range(prepared["B"])
        # uint8, the inputs' size; first_index keeps paper mode's per-image seeds across batches.
        if diversity is not None:  # per input, its samples; sample 0 is what translate_batch would give
            drawn = [torch.stack(s) for s in translator.translate_samples(list(inputs), n_samples,
                                                                          names=batch["name"], first_index=done)]
            outputs = torch.stack([s[0] for s in drawn])
        else:
            outputs = torch.stack(translator.translate_batch(list(inputs), names=batch["name"], first_index=done))
        if min(targets.shape[-2:]) - 2 * protocol.shave < pixel.window_size:
            raise DataError(
                f"Image {batch['name'][0]} of the {options.split} split is {targets.shape[-1]}x{targets.shape[-2]} "
                f"(WxH): with {protocol.shave} pixels shaved from each border it is smaller than SSIM's "
                f"{pixel.window_size}-pixel window; lower --shave or leave out such small images."
            )
        # A dataset may mark targets whose original file is one-channel ("grey"): scored as it is in Y.
        values = pixel.update(outputs.double() / 255, targets.double() / 255, grey=batch.get("grey"))
        if protocol.color == "y" and "grey" in batch:
            grey_names += [name for name, grey in zip(batch["name"], batch["grey"]) if grey]
        metrics = [{k: v[i].item() for k, v in values.items()} for i in range(len(outputs))]
        if fid_kid is not None:  # the PNGs' values, as for the pixel metrics
            fid_kid.update(outputs.float() / 255, real=False)
            fid_kid.update(targets.float() / 255, real=True)
        extra: list[dict[str, Any]] = [{} for _ in outputs]
        if segmenter is not None:  # labels -> photo: the input is the label map, the target the photo
            true = segmenter.method.decode_labels(inputs)
            predicted = _segment(segmenter, outputs)
            generated.update(predicted, true)
            real.update(_segment(segmenter, targets), true)
            for i, accuracy in enumerate(_per_image_accuracy(predicted, true)):
                extra[i]["fcn_pixel_accuracy"] = accuracy
            seg_images = encode_palette(predicted, palette)
        if diversity is not None:
            for i, samples in enumerate(drawn):
                extra[i].update(diversity.update(samples))
                grey = [bool(batch["grey"][i])] * n_samples if "grey" in batch else None
                sample_pixel.update(samples.double() / 255, targets[i].expand_as(samples).double() / 255, grey=grey)
            if segmenter is not None:
                accuracy = torch.zeros(len(drawn), dtype=torch.float64)
                for s in range(n_samples):  # sample 0 is the outputs, segmented above
                    labels = predicted if s == 0 else _segment(segmenter, torch.stack([d[s] for d in drawn]))
                    sample_fcn[s].update(labels, true)
                    accuracy += torch.tensor(_per_image_accuracy(labels, true), dtype=torch.float64)
                for i, value in enumerate((accuracy / n_samples).tolist()):
                    extra[i]["fcn_pixel_accuracy_samples"] = value
        for i, name in enumerate(batch["name"]):
            row = {"name": name, **metrics[i], **extra[i]}
            if out_dir is not None and options.write_images:
                folder = Path(out_dir) / "images"
                for key, image in (("input", inputs[i]), ("output", outputs[i]), ("target", targets[i])):
                    save_png(image, folder / f"{name}_{key}.png")
                row["images"] = {k: f"images/{name}_{k}.png" for k in ("input", "output", "target")}
                if segmenter is not None:
                    save_png(seg_images[i], folder / f"{name}_segmented.png")
                    row["images"]["segmented"] = f"images/{name}_segmented.png"
            rows.append(row)
        done += len(outputs)
        if on_batch is not None:
            on_batch(done)
    fcn: dict[str, Any] = {}
    if segmenter is not None:
        fcn = {"generated": generated.compute().to_dict(), "ground_truth": real.compute().to_dict()}
    inception: dict[str, Any] = {}
    if fid_kid is not None:
        inception = {**fid_kid.compute().to_dict(), "weights": getattr(fid_network, "weights_file", ""),
                     "weights_sha256": getattr(fid_network, "weights_sha256", "")}
    diversity_figures: dict[str, Any] = {}
    if diversity is not None:
        diversity_figures = {**diversity.compute(), "seed": translator.seed, "pixel": sample_pixel.compute()}
        if segmenter is not None:
            diversity_figures["fcn"] = summarize_sample_fcn(sample_fcn)
    described = {"resize": protocol.resize, "color": protocol.color, "shave": protocol.shave, "grey": grey_names}
    return EvalReport(checkpoint, options.split, done, translator.mode, pixel.compute(), described, fcn, rows,
                      inception, diversity_figures)


def _segment(segmenter: Any, images_uint8: torch.Tensor) -> torch.Tensor:
    # Deterministic test time: batch norm with running statistics and dropout off, so a score
    # depends neither on the batch size nor on chance.
    x = to_unit_range(images_uint8.to(segmenter.device))
    with test_time(segmenter.method, "eval"):
        return segmenter.method.classify(x).cpu()


def describe_protocol(protocol: Mapping[str, Any]) -> str:
    """The scoring convention in words, printed with every figure: "RGB" or "luma (Y)", the
    shaved border, whether images kept their stored size, which images were scored as grey."""
    if not protocol:
        return "RGB"
    words = "luma (Y)" if protocol.get("color") == "y" else "RGB"
    if protocol.get("shave"):
        words += f", {protocol['shave']} px shaved at the border"
    if protocol.get("resize") is False:
        words += ", images at their stored size"
    if protocol.get("grey"):
        words += f"; one-channel originals scored on their grey channel: {', '.join(protocol['grey'])}"
    return words


def describe_inception(inception: Mapping[str, Any]) -> str:
    """How FID and KID were measured, in words, printed with them."""
    return (
        f"{inception['generated_images']} generated vs {inception['real_images']} real images, pytorch-fid's "
        f"Inception pool3 features (weights {inception['weights'] or 'not from a file'}, sha256 "
        f"{inception['weights_sha256'][:12] or '-'}); KID over {inception['kid_subsets']} subsets of "
        f"{inception['kid_subset_size']}. FID is biased upwards on small sets: compare at equal image counts."
    )


def diversity_rows(diversity: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The diversity figures as (heading, formatted value) pairs, for the console table and the page:
    LPIPS and L1 between consecutive samples (mean ± standard deviation over inputs), the samples'
    mean L1, PSNR and SSIM to the target, and with a segmenter the FCN per-pixel accuracy of the
    sample sets (mean ± standard deviation over sets, and the worst set)."""
    rows = []
    if "lpips" in diversity:
        rows.append((f"LPIPS ({diversity['lpips_net']})",
                     f"{format_value(diversity['lpips'])} ± {format_value(diversity['lpips_std'])}"))
    rows.append(("L1 between samples ([-1, 1])", f"{format_value(diversity['l1'])} ± {format_value(diversity['l1_std'])}"))
    for key, heading in (("l1", "samples' L1 to target ([0, 1])"), ("psnr", "samples' PSNR to target"),
                         ("ssim", "samples' SSIM to target")):
        rows.append((heading, format_value(diversity["pixel"][key])))
    if "fcn" in diversity:
        fcn = diversity["fcn"]
        rows.append(("samples' FCN per-pixel acc.", f"{format_value(fcn['pixel_accuracy'])} ± "
                     f"{format_value(fcn['pixel_accuracy_std'])} (min {format_value(fcn['pixel_accuracy_min'])})"))
    return rows


def format_value(value: Any) -> str:
    """A figure for tables and pages: 4 decimals, "nan", "inf"."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.4f}")
    return str(value)


def write_eval_page(report: EvalReport, out_dir: Path) -> Path:
    """`index.html`: the summary, the FCN-score table, and input | output | target per image with its
    metrics, sortable by any column (click a heading)."""
    import html

    def fmt(value: Any) -> str:
        return html.escape(format_value(value))

    metric_keys = [k for k in report.per_image[0] if k not in ("name", "images")] if report.per_image else []
    head = "".join(f"<th onclick='sortBy({i + 1})'>{html.escape(k)} &#8597;</th>" for i, k in enumerate(metric_keys))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>translate-kit eval</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 8px;text-align:center}th{cursor:pointer;background:#eee}"
        "img{width:160px;image-rendering:pixelated}tr:nth-child(even){background:#fafafa}",
        "</style></head><body>",
        f"<h1>Evaluation: {html.escape(report.checkpoint)}</h1>",
        f"<p>split {html.escape(report.split)}, {report.images} images, test-time mode {html.escape(report.mode)}; "
        f"{html.escape(describe_protocol(report.protocol))}</p>",
        "<h2>Per-pixel metrics (mean over images)</h2><table><tr>"
        + "".join(f"<th>{html.escape(k)}</th>" for k in report.pixel)
        + "</tr><tr>"
        + "".join(f"<td>{fmt(v)}</td>" for v in report.pixel.values())
        + "</tr></table>",
    ]
    if report.inception:
        parts.append(f"<h2>FID and KID</h2><p>{html.escape(describe_inception(report.inception))}</p><table><tr>"
                     + "".join(f"<th>{k}</th>" for k in INCEPTION_KEYS) + "</tr><tr>"
                     + "".join(f"<td>{fmt(report.inception[k])}</td>" for k in INCEPTION_KEYS) + "</tr></table>")
    if report.diversity:
        parts.append(f"<h2>Diversity of the samples</h2><p>{html.escape(describe_diversity(report.diversity))}</p>"
                     "<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k, _ in diversity_rows(report.diversity))
                     + "</tr><tr>" + "".join(f"<td>{html.escape(v)}</td>" for _, v in diversity_rows(report.diversity))
                     + "</tr></table>")
    if report.fcn:
        parts.append("<h2>FCN-score</h2><table><tr><th></th><th>per-pixel acc.</th><th>per-class acc.</th><th>class IoU</th></tr>")
        for row, label in (("generated", "generated photos"), ("ground_truth", "real photos (ceiling)")):
            s = report.fcn[row]
            parts.append(
                f"<tr><td>{label}</td><td>{fmt(s['pixel_accuracy'])}</td><td>{fmt(s['mean_class_accuracy'])}</td>"
                f"<td>{fmt(s['mean_iou'])}</td></tr>"
            )
        parts.append("</table><h3>Per class (generated)</h3><table><tr><th>class</th><th>accuracy</th><th>IoU</th><th>pixels</th></tr>")
        for c in report.fcn["generated"]["per_class"]:
            parts.append(
                f"<tr><td>{html.escape(c['name'])}</td><td>{fmt(c['accuracy'])}</td><td>{fmt(c['iou'])}</td>"
                f"<td>{c['gt_pixels']}</td></tr>"
            )
        parts.append("</table>")
    parts.append(f"<h2>Images</h2><table id='images'><tr><th onclick='sortBy(0)'>name &#8597;</th>{head}"
                 "<th>input</th><th>output</th><th>target</th>" + ("<th>segmented output</th>" if report.fcn else "") + "</tr>")
    for row in report.per_image:
        cells = "".join(f"<td data-v='{row[k]}'>{fmt(row[k])}</td>" for k in metric_keys)
        images = "".join(f"<td><img src='{html.escape(p)}' alt='{k}'></td>" for k, p in row.get("images", {}).items())
        parts.append(f"<tr><td data-v='{html.escape(row['name'])}'>{html.escape(row['name'])}</td>{cells}{images}</tr>")
    parts.append("</table>")
    parts.append(
        "<script>let dir={};function sortBy(c){const t=document.getElementById('images');"
        "const rows=Array.from(t.rows).slice(1);dir[c]=!dir[c];rows.sort((a,b)=>{"
        "const x=a.cells[c].dataset.v,y=b.cells[c].dataset.v;const nx=parseFloat(x),ny=parseFloat(y);"
        "const r=(isNaN(nx)||isNaN(ny))?x.localeCompare(y,undefined,{numeric:true}):nx-ny;return dir[c]?r:-r;});"
        "rows.forEach(r=>t.appendChild(r));}</script></body></html>"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page


def write_json(report: EvalReport, path: Path) -> None:
    """The report as JSON; non-finite floats become the strings "nan" / "inf" (JSON has none)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(report.to_dict()), indent=2), encoding="utf-8")
