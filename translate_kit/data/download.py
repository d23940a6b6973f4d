"""Download, unpack and verify the public datasets of the pix2pix and CycleGAN papers.

`DATASETS` lists every set the reference repository (junyanz/pytorch-CycleGAN-and-pix2pix,
`datasets/download_{pix2pix,cyclegan}_dataset.sh`) offers, from the same archives. A name is
`family/set`, and the `pix2pix/` family may be left out: `facades` is the paired pix2pix set
(`root/facades/{train,val,test}`, A|B side by side), `cyclegan/facades` the unpaired CycleGAN one
(`root/cyclegan/facades/{trainA,trainB,testA,testB}`). The name is also the folder under the root.

`download_dataset("facades", Path("data"))` streams the archive (resuming a partial download),
unpacks it safely, checks the layout and moves it into place. A set that is already complete is
not downloaded again. Cityscapes may not be redistributed: `cityscapes` explains how to get the
official files, and `prepare_cityscapes` builds the pix2pix pairs from them.

The catalogue needs only the standard library, so listing it is fast; the network and archive
modules load on first download, torchvision when images are decoded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from translate_kit.errors import DataError, did_you_mean

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Family",
    "ProgressCallback",
    "download_dataset",
    "get_spec",
    "prepare_cityscapes",
    "verify_dataset",
]

Family = Literal["pix2pix", "cyclegan"]
ProgressCallback = Callable[[int, int | None], None]
"""Called as `progress(bytes_done, bytes_total)` while downloading; the total is None when unknown."""

_CHUNK = 1 << 18
_HEADER_BYTES = 1 << 17  # a JPEG's frame header follows its EXIF and other segments (64 KiB each at most)
_MAX_LISTED = 5  # problems named in one error message
_RETRY_DELAY = 1.0  # seconds before the first retry of a broken transfer; doubles each time
_JPEG = (".jpg",)
_ANY_IMAGE = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """Where a dataset's archive lives and what its unpacked folder must hold.

    Tests build small specs (a few images per split) and pass them where a name is expected.
    """

    name: str  # what `tkit data download` takes: "facades", "cyclegan/maps"
    family: Family  # "pix2pix": A|B pairs in one image; "cyclegan": unpaired trainA/trainB/testA/testB
    url: str | None  # the public archive; None when the set may not be redistributed
    archive: str  # where the archive is saved, relative to the root folder
    folder: str  # the unpacked dataset, relative to the root folder
    splits: Mapping[str, int | None]  # split folder -> number of images; None: not verified, one or more
    image_size: tuple[int, int] | None  # (width, height) of every image; None when sizes vary
    approx_mib: float | None = None  # archive size for display (MiB, rounded); None when unknown
    source: str = ""  # where the images come from and whose terms apply, one short line
    domains: str = ""  # "A | B": left | right halves (pix2pix), A | B folders (cyclegan); "order ?": unverified
    manual: str = ""  # how to get the set by hand when `url` is None; "ROOT" stands for the root folder
    image_types: tuple[str, ...] = _JPEG  # file suffixes counted as images (any case)
    archive_bytes: int | None = None  # exact archive size; None when unpublished
    sha256: str | None = None  # archive digest; None when unpublished
    aliases: tuple[str, ...] = ()  # other names accepted for it ("pix2pix/facades")


_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
_CITYSCAPES_TERMS = "Cityscapes (Cordts et al. 2016): non-commercial licence, no redistribution"


def _pix2pix(
    name: str, splits: Mapping[str, int | None], size: tuple[int, int], mib: float | None, source: str, **kwargs
) -> DatasetSpec:
    return DatasetSpec(
        name=name, family="pix2pix", url=f"{_PIX2PIX_URL}/{name}.tar.gz", archive=f"{name}.tar.gz", folder=name,
        splits=splits, image_size=size, approx_mib=mib, source=source, aliases=(f"pix2pix/{name}",), **kwargs,
    )


def _cyclegan(name: str, counts: tuple[int, int, int, int], mib: float, source: str, domains: str) -> DatasetSpec:
    splits = dict(zip(("trainA", "trainB", "testA", "testB"), counts, strict=True))
    return DatasetSpec(
        name=f"cyclegan/{name}", family="cyclegan", url=f"{_CYCLEGAN_URL}/{name}.zip", archive=f"cyclegan/{name}.zip",
        folder=f"cyclegan/{name}", splits=splits, image_size=None, approx_mib=mib, source=source, domains=domains,
        image_types=_ANY_IMAGE,
    )


_CITYSCAPES_STEPS = (
    "Cityscapes cannot be downloaded automatically: its licence forbids redistribution, so the reference "
    "pix2pix code does not offer it either. To build it: (1) register at https://www.cityscapes-dataset.com "
    "and accept its terms; (2) download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip; (3) unzip "
    "both into one folder, say ~/cityscapes, so that it holds gtFine/ and leftImg8bit/; (4) run `tkit data "
    "prepare-cityscapes ~/cityscapes --out ROOT`, which writes ROOT/cityscapes/train (2975 pairs) and "
    "ROOT/cityscapes/val (500 pairs) as 512x256 JPEGs, photo (A) left and colour label map (B) right, the "
    "layout of the other pix2pix sets. If you already have a copy of the pix2pix cityscapes.tar.gz, pass "
    "--url with its path instead."
)

# Where the figures come from. Train counts of the pix2pix sets: the reference repository's docs and
# a published training configuration of all six (MindSpore's pix2pix README); maps val (1098) is
# described with the archive elsewhere and equals the CycleGAN maps test split; cityscapes is the
# official split. The val/test counts of edges2* and night2day could not be checked offline, so they
# are None: those splits are only checked to hold images. CycleGAN counts and archive sizes are what
# TensorFlow Datasets measured on the same archives (catalog `cycle_gan` 2.0.0); pix2pix archive
# sizes are the server's directory listing, rounded. Image sizes are those the pix2pix sets share.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _pix2pix("facades", {"train": 400, "val": 100, "test": 106}, (512, 256), 29,
                 "CMP Facade Database (Tylecek and Sara 2013)", domains="photo | label map"),
        _pix2pix("maps", {"train": 1096, "val": 1098}, (1200, 600), 239,
                 "Google Maps tiles; Google's terms apply", domains="aerial photo | map"),
        _pix2pix("edges2shoes", {"train": 49825, "val": None}, (512, 256), 2048,
                 "UT Zappos50K shoe photos (Yu and Grauman 2014), HED edges", domains="edges | photo"),
        _pix2pix("edges2handbags", {"train": 138567, "val": None}, (512, 256), 8192,
                 "Amazon handbag photos of iGAN (Zhu et al. 2016), HED edges", domains="edges | photo"),
        _pix2pix("night2day", {"train": 17823, "val": None, "test": None}, (512, 256), 1946,
                 "Transient Attributes webcams (Laffont et al. 2014)", domains="night | day"),
        replace(
            _pix2pix("cityscapes", {"train": 2975, "val": 500}, (512, 256), None, _CITYSCAPES_TERMS,
                     domains="photo | colour label map"),
            url=None, manual=_CITYSCAPES_STEPS,
        ),
        _cyclegan("horse2zebra", (1067, 1334, 120, 140), 111.45, "ImageNet photos", "horse | zebra"),
        _cyclegan("apple2orange", (995, 1019, 266, 248), 74.82, "ImageNet photos", "apple | orange"),
        _cyclegan("summer2winter_yosemite", (1231, 962, 309, 238), 126.50, "Flickr photos", "summer | winter"),
        _cyclegan("monet2photo", (1072, 6287, 121, 751), 291.09, "Wikiart paintings, Flickr photos", "Monet | photo"),
        _cyclegan("cezanne2photo", (525, 6287, 58, 751), 266.92, "Wikiart paintings, Flickr photos", "Cezanne | photo"),
        _cyclegan("ukiyoe2photo", (562, 6287, 263, 751), 279.38, "Wikiart prints, Flickr photos", "ukiyo-e | photo"),
        _cyclegan("vangogh2photo", (400, 6287, 400, 751), 292.39, "Wikiart paintings, Flickr photos",
                  "Van Gogh | photo"),
        _cyclegan("maps", (1096, 1096, 1098, 1098), 1413.12, "Google Maps tiles; Google's terms apply",
                  "aerial photos, maps (order ?)"),
        _cyclegan("cityscapes", (2975, 2975, 500, 500), 266.65, _CITYSCAPES_TERMS, "photos, label maps (order ?)"),
        _cyclegan("facades", (400, 400, 106, 106), 33.51, "CMP Facade Database", "photos, label maps (order ?)"),
        _cyclegan("iphone2dslr_flower", (1812, 3325, 569, 480), 324.22, "Flickr photos", "iPhone | DSLR flower photo"),
    )
}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The spec of a dataset name (`facades`, `pix2pix/facades`, `cyclegan/maps`), or the spec itself.

    Raises:
        DataError: For an unknown name, with the closest name and every name.

    Example:
        >>> get_spec("pix2pix/facades") is get_spec("facades")
        True
        >>> get_spec("cyclegan/maps").folder, dict(get_spec("maps").splits)
        ('cyclegan/maps', {'train': 1096, 'val': 1098})
    """
    if isinstance(name, DatasetSpec):
        return name
    for spec in DATASETS.values():
        if name == spec.name or name in spec.aliases:
            return spec
    hint = did_you_mean(name, DATASETS)
    if not hint and f"cyclegan/{name}" in DATASETS:
        hint = f" Did you mean 'cyclegan/{name}'?"
    family = " CycleGAN sets are named cyclegan/NAME." if "/" not in name and "cyclegan/" in hint else ""
    raise DataError(
        f"Unknown dataset '{name}'.{hint}{family} Available: {', '.join(DATASETS)} (`tkit data list` shows "
        "each with its size and source)."
    )


def download_dataset(
    name: str | DatasetSpec,
    root: Path,
    *,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    keep_archive: bool = False,
    retries: int = 0,
) -> Path:
    """Download, unpack and verify a dataset into `root / spec.folder`; return that folder.

    Nothing is downloaded when the folder already holds the complete dataset, and an archive
    already at `root/<archive>` is used as it is. Otherwise the archive streams to
    `root/<archive>.part`; when that file exists from an interrupted run, the download resumes with
    an HTTP Range request (and starts over if the server does not honour it). The archive (tar or
    zip) is unpacked into a temporary folder, its layout is verified, and only then is it moved
    into place. An archive that cannot be unpacked, holds a path outside the folder or a link, or
    has the wrong layout is renamed `<archive>.bad`, so the next run downloads it afresh.

    Args:
        name: A key of `DATASETS` ("facades", "cyclegan/horse2zebra"), or a `DatasetSpec`.
        root: Folder to download into; created if missing.
        url: Another address for the same archive: a mirror, a `file://` URL or a local path.
        progress: Called as `progress(bytes_done, bytes_total)` while downloading.
        timeout: Seconds to wait for the server to connect or send data.
        keep_archive: Keep the downloaded archive next to the dataset instead of deleting it.
        retries: How many times a transfer that breaks off is resumed before giving up.

    Returns:
        The dataset folder, e.g. `root / "facades"` holding `train/`, `val/` and `test/`.

    Raises:
        DataError: If the name is unknown, the set has no public archive (the message gives the
            manual steps), the download fails, the archive is damaged or unsafe, or its contents
            do not have the expected layout. The message names the URL or path and the fix.
    """
    spec = get_spec(name)
    root = Path(root)
    target = root / spec.folder
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        problems = _problems(spec, target)
        if not problems:
            return target
        raise DataError(
            f"{target} exists but is not a complete {spec.name} dataset: {_listed(problems)}. "
            f"Move or delete {target} and run again to download a fresh copy."
        )
    if url is None and spec.url is None:
        raise DataError(spec.manual.replace("ROOT", str(root)))
    source = _as_url(url or spec.url or "")
    archive = root / spec.archive
    created = not archive.parent.exists()
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"Cannot create the download folder {archive.parent}: {error}. Choose another --root."
        ) from None
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        try:
            for attempt in range(retries + 1):
                try:
                    _fetch(source, part, progress=progress, timeout=timeout, spec=spec, root=root)
                    break
                except _Interrupted:
                    if attempt == retries:
                        raise
                    time.sleep(_RETRY_DELAY * 2**attempt)
        except BaseException:
            # Nothing arrived (offline, say): leave no empty folder behind; a .part file stays to resume.
            if created and not any(archive.parent.iterdir()):
                archive.parent.rmdir()
            raise
        _check_archive(spec, part, source)
        os.replace(part, archive)
    _unpack(spec, archive, target, source)
    if not keep_archive:
        archive.unlink()
    return target


def verify_dataset(name: str | DatasetSpec, folder: Path) -> dict[str, int]:
    """Check that `folder` holds the complete dataset `name`; return the image count per split.

    Every split folder must exist with the expected number of images (at least one where the count
    is not known), every image must carry a JPEG or PNG header of the expected size, and the first
    and last image of each split must decode.

    Raises:
        DataError: Naming the missing folders and the wrong files.
    """
    spec = get_spec(name)
    folder = Path(folder)
    problems = _problems(spec, folder)
    if problems:
        raise DataError(
            f"{folder} is not a complete {spec.name} dataset: {_listed(problems)}. "
            f"Download it again with `tkit data download {spec.name}`."
        )
    return {split: len(_images(spec, folder / split)) for split in spec.splits}


def prepare_cityscapes(
    source: Path,
    root: Path,
    *,
    size: int = 256,
    spec: DatasetSpec | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> Path:
    """Build the pix2pix Cityscapes pairs from the official files; return `root / "cityscapes"`.

    `source` holds `leftImg8bit/` and `gtFine/`, unzipped from `leftImg8bit_trainvaltest.zip` and
    `gtFine_trainvaltest.zip`. For the train and val splits, each `*_leftImg8bit.png` photo and its
    `*_gtFine_color.png` label map are resized to `size` x `size` and written side by side (photo A
    left, labels B right) as `N.jpg`, numbered in the sorted order of the photos. The photo is
    resized with antialiased bilinear filtering, the label map with nearest neighbour so that its
    class colours stay exact; JPEG quality is 95. The folder is built in a temporary folder and
    verified before it is moved into place. The test split is skipped: its labels are not public.

    Args:
        source: The folder holding `leftImg8bit/` and `gtFine/`.
        root: Folder to write `cityscapes/` into.
        size: Side of each half, in pixels (256 gives the 512x256 pairs of the pix2pix paper).
        spec: The spec to verify against (tests pass a small one); the `cityscapes` entry by default.
        on_image: Called as `on_image(done, total)` after each pair is written.

    Raises:
        DataError: If a folder or a label map is missing, an image does not decode, or the result
            is not the complete set.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.io import encode_jpeg, write_file

    from translate_kit.data.io import read_image, to_channels

    spec = replace(spec or DATASETS["cityscapes"], image_size=(2 * size, size))
    source, root = Path(source), Path(root)
    target = root / spec.folder
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise DataError(f"{target} already exists. Move or delete it, then run again to rebuild it.")
    pairs = _cityscapes_pairs(source, list(spec.splits))
    total = sum(len(p) for p in pairs.values())
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cityscapes-prepare-", dir=root))
    try:
        done = 0
        for split, split_pairs in pairs.items():
            (staging / split).mkdir()
            for i, (photo_path, label_path) in enumerate(split_pairs, start=1):
                photo = to_channels(read_image(photo_path), 3)[None].float()
                label = to_channels(read_image(label_path), 3)[None].float()
                photo = F.interpolate(photo, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                label = F.interpolate(label, size=(size, size), mode="nearest-exact")
                pair = torch.cat((photo, label), dim=3)[0].round().clamp(0, 255).to(torch.uint8)
                write_file(str(staging / split / f"{i}.jpg"), encode_jpeg(pair, quality=95))
                done += 1
                if on_image is not None:
                    on_image(done, total)
        problems = _problems(spec, staging)
        if problems:
            raise DataError(
                f"The Cityscapes files in {source} do not give the complete {spec.name} set: {_listed(problems)}. "
                "Unzip both archives completely into that folder and run again."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _cityscapes_pairs(source: Path, splits: list[str]) -> dict[str, list[tuple[Path, Path]]]:
    """(photo, colour label map) paths per split, from the official folder layout."""
    photos_dir, labels_dir = source / "leftImg8bit", source / "gtFine"
    for folder, archive in ((photos_dir, "leftImg8bit_trainvaltest.zip"), (labels_dir, "gtFine_trainvaltest.zip")):
        if not folder.is_dir():
            raise DataError(
                f"{folder} does not exist. Unzip {archive} (from https://www.cityscapes-dataset.com) into {source}, "
                "or pass the folder that holds leftImg8bit/ and gtFine/."
            )
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    missing: list[str] = []
    for split in splits:
        photos = sorted((photos_dir / split).glob("*/*_leftImg8bit.png"))
        if not photos:
            missing.append(f"{photos_dir / split} holds no */*_leftImg8bit.png photos")
        pairs[split] = []
        for photo in photos:
            label = labels_dir / split / photo.parent.name / photo.name.replace("_leftImg8bit.png", "_gtFine_color.png")
            if label.is_file():
                pairs[split].append((photo, label))
            else:
                missing.append(f"{label} (the label map of {photo.name}) is missing")
    if missing:
        raise DataError(
            f"Cannot build the Cityscapes pairs from {source}: {_listed(missing)}. Unzip gtFine_trainvaltest.zip "
            "and leftImg8bit_trainvaltest.zip completely into that folder and run again."
        )
    return pairs


def _as_url(url: str) -> str:
    """Let users pass a plain path to a local archive where a URL is expected."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        return url
    return Path(url).expanduser().resolve().as_uri()


def _listed(problems: list[str]) -> str:
    more = len(problems) - _MAX_LISTED
    return "; ".join(problems[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


class _Interrupted(DataError):
    """A transfer that broke off after it started: worth resuming."""


def _download_error(spec: DatasetSpec, url: str, root: Path, reason: str, kind: type = DataError) -> DataError:
    folder = root / spec.folder
    return kind(
        f"Could not download the {spec.name} dataset from {url}: {reason}. Check your connection and "
        f"run the command again (a partial download resumes), or download the archive by hand from "
        f"{url} and extract it so that {folder} holds {', '.join(spec.splits)}, or pass "
        f"--url with a mirror or a file:// URL of a local copy of {PurePosixPath(spec.archive).name}."
    )


def _fetch(
    url: str,
    part: Path,
    *,
    progress: ProgressCallback | None,
    timeout: float,
    spec: DatasetSpec,
    root: Path,
    resume: bool = True,
) -> None:
    """Stream `url` into `part`, resuming from its current size when the server allows."""
    import http.client
    import urllib.error
    import urllib.request

    offset = part.stat().st_size if resume and part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "translate-kit"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            # Range not satisfiable: the part may be complete already; otherwise start over.
            if _range_total(error.headers.get("Content-Range")) == offset:
                return
            return _fetch(url, part, progress=progress, timeout=timeout, spec=spec, root=root, resume=False)
        raise _download_error(spec, url, root, f"the server answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        offline = " (is this machine offline?)" if url.startswith(("http:", "https:")) else ""
        raise _download_error(spec, url, root, f"{error.reason}{offline}") from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # timeouts, malformed URLs
        raise _download_error(spec, url, root, str(error) or type(error).__name__) from None

    with response:
        # 206 continues the part; 200 (or a file:// URL, which has no status) sends the whole file.
        partial = response.status == 206
        if partial and _range_start(response.headers.get("Content-Range")) != offset:
            if not offset:
                raise _download_error(spec, url, root, "the server sent part of the file when asked for all of it")
            response.close()
            return _fetch(url, part, progress=progress, timeout=timeout, spec=spec, root=root, resume=False)
        offset = offset if partial else 0
        total = _range_total(response.headers.get("Content-Range")) if partial else None
        length = response.headers.get("Content-Length")
        if total is None and length is not None and length.isdigit():
            total = offset + int(length)
        done = offset
        try:
            with part.open("ab" if offset else "wb") as out:
                if progress is not None:
                    progress(done, total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as error:
            reason = f"the transfer broke off after {done:,} bytes ({error or type(error).__name__})"
            raise _download_error(spec, url, root, reason, _Interrupted) from None
    if total is not None and done != total:
        raise _download_error(spec, url, root, f"the transfer ended after {done:,} of {total:,} bytes", _Interrupted)


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/", content_range or "")
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _check_archive(spec: DatasetSpec, path: Path, url: str) -> None:
    """Compare the archive with the known size and digest, if any; delete it when wrong."""
    import hashlib

    found = expected = None
    size = path.stat().st_size
    if spec.archive_bytes is not None and size != spec.archive_bytes:
        found, expected = f"{size:,} bytes", f"{spec.archive_bytes:,}"
    elif spec.sha256 is not None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != spec.sha256.lower():
            found, expected = f"sha256 {digest.hexdigest()}", spec.sha256
    if found is not None:
        path.unlink()
        raise DataError(
            f"The archive downloaded from {url} is not the expected {spec.archive}: it has {found}, "
            f"expected {expected}. It was deleted; run the command again, or pass --url with another mirror."
        )


class _Unsafe(Exception):
    """An archive member that must not be unpacked; the message says why."""


def _unpack(spec: DatasetSpec, archive: Path, target: Path, url: str) -> None:
    """Unpack into a temporary folder beside `target`, verify, then move the dataset into place.

    A refused archive is renamed `<archive>.bad`: kept for inspection, out of the next run's way.
    """
    import tarfile
    import zipfile
    import zlib

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-unpack-", dir=target.parent))
    bad = archive.with_name(archive.name + ".bad")
    fix = (
        f"It was kept as {bad}; delete it and run again to download the archive afresh, "
        "or pass --url with another copy."
    )
    try:
        try:
            if zipfile.is_zipfile(archive):
                _unzip(archive, staging)
            else:
                _untar(archive, staging)
        except _Unsafe as reason:
            os.replace(archive, bad)
            raise DataError(
                f"Refusing to unpack {archive} (from {url}): {reason}, so the archive is damaged or malicious. {fix}"
            ) from None
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            os.replace(archive, bad)
            raise DataError(f"Cannot unpack {archive} (from {url}): {error}. The archive is damaged. {fix}") from None
        # Most archives hold one top folder (facades/...); accept the splits at the top level too.
        top = staging / target.name
        unpacked = top if top.is_dir() else staging
        problems = _problems(spec, unpacked)
        if problems:
            os.replace(archive, bad)
            raise DataError(
                f"The archive {archive} (from {url}) does not hold the {spec.name} dataset: {_listed(problems)}. {fix}"
            )
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _outside(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name) is not None


def _untar(archive: Path, staging: Path) -> None:
    import tarfile

    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if _outside(member.name):
                raise _Unsafe(f"its member '{member.name}' would land outside {staging.parent}")
            if member.issym() or member.islnk():
                raise _Unsafe(f"its member '{member.name}' is a link to '{member.linkname}' (datasets hold only files)")
            if not (member.isfile() or member.isdir()):
                raise _Unsafe(f"its member '{member.name}' is a device or pipe, not a file")
        tar.extractall(staging, filter="data")


def _unzip(archive: Path, staging: Path) -> None:
    import stat
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if _outside(info.filename):
                raise _Unsafe(f"its member '{info.filename}' would land outside {staging.parent}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _Unsafe(f"its member '{info.filename}' is a link (datasets hold only files)")
        zf.extractall(staging)  # reads every member, so a CRC mismatch raises BadZipFile here


def _images(spec: DatasetSpec, folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in spec.image_types and p.is_file())


def _problems(spec: DatasetSpec, folder: Path) -> list[str]:
    """What is missing or wrong in an unpacked dataset folder; empty when it is complete."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems: list[str] = []
    samples: list[Path] = []
    kinds = "/".join(spec.image_types)
    for split, expected in spec.splits.items():
        split_dir = folder / split
        if not split_dir.is_dir():
            problems.append(f"the split folder {split_dir} is missing")
            continue
        files = _images(spec, split_dir)
        if expected is None and not files:
            problems.append(f"{split_dir} holds no {kinds} files")
        elif expected is not None and len(files) != expected:
            problems.append(f"{split_dir} holds {len(files)} {kinds} files, expected {expected}")
        for file in files:
            size = _header_size(file)
            if size is None:
                problems.append(f"{file} is not a {'PNG' if file.suffix.lower() == '.png' else 'JPEG'} image")
            elif spec.image_size is not None and size != spec.image_size:
                width, height = spec.image_size
                problems.append(f"{file} is {size[0]}x{size[1]} pixels, expected {width}x{height}")
        samples += files[:1] + files[-1:]
    if not problems:
        problems += _undecodable(samples)
    return problems


def _undecodable(paths: list[Path]) -> list[str]:
    """Fully decode a few files: the header check does not catch damaged image data."""
    from torchvision.io import decode_image, read_file

    problems = []
    for path in paths:
        try:
            decode_image(read_file(str(path)))
        except RuntimeError as error:
            problems.append(f"{path} does not decode ({str(error).splitlines()[0]})")
    return problems


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header (`image_size`), reading only its first bytes."""
    from translate_kit.data.io import image_size  # imports torch: not at `tkit data --help`

    with path.open("rb") as f:
        head = f.read(_HEADER_BYTES)
    return image_size(head)
