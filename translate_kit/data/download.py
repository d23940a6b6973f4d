"""Download, unpack and verify the public datasets the recipes train on.

`download_dataset("facades", Path("data"))` fetches the archive the reference pix2pix code uses,
resumes a partial download, unpacks it safely and checks the layout, giving `data/facades/{train,
val,test}/N.jpg`. A dataset that is already there and complete is not downloaded again.
Only the standard library is needed to download; torchvision decodes a few sample images.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from translate_kit.errors import DataError, did_you_mean

__all__ = ["DATASETS", "DatasetSpec", "ProgressCallback", "download_dataset", "verify_dataset"]

ProgressCallback = Callable[[int, int | None], None]
"""Called as `progress(bytes_done, bytes_total)` while downloading; the total is None when unknown."""

_CHUNK = 1 << 18
_MAX_LISTED = 5  # problems named in one error message


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """Where a dataset's archive lives and what its unpacked folder must hold."""

    name: str
    url: str  # the archive's public address
    archive: str  # file name the archive is saved under in the root folder
    folder: str  # folder the archive unpacks to, created under the root folder
    splits: Mapping[str, int]  # split folder -> number of .jpg files it must hold
    image_size: tuple[int, int]  # (width, height) of every image
    archive_bytes: int | None = None  # expected archive size; None when unknown
    sha256: str | None = None  # expected archive digest; None when unknown


DATASETS: dict[str, DatasetSpec] = {
    "facades": DatasetSpec(
        name="facades",
        # The archive of the reference pix2pix code (Isola et al. 2017, datasets/download_pix2pix_dataset.sh).
        url="http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz",
        archive="facades.tar.gz",
        folder="facades",
        splits={"train": 400, "val": 100, "test": 106},  # 606 CMP facades, the paper's split
        image_size=(512, 256),  # photo (A) left, label map (B) right
        # The archive's size and sha256 are not published and could not be checked offline, so none
        # is stored; the layout check (counts, sizes, decodable JPEGs) guards the result instead.
        archive_bytes=None,
        sha256=None,
    ),
}


def download_dataset(
    name: str,
    root: Path,
    *,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    keep_archive: bool = False,
) -> Path:
    """Download, unpack and verify a dataset into `root / spec.folder`; return that folder.

    Nothing is downloaded when the folder already holds the complete dataset, and an archive
    already at `root/<archive>` is used as it is. Otherwise the archive streams to
    `root/<archive>.part`; when that file exists from an interrupted run, the download resumes with
    an HTTP Range request (and starts over if the server does not honour it). The archive is
    unpacked into a temporary folder, its layout is verified, and only then is it moved into place.

    Args:
        name: A key of `DATASETS`, e.g. "facades".
        root: Folder to download into; created if missing.
        url: Another address for the same archive: a mirror, a `file://` URL or a local path.
        progress: Called as `progress(bytes_done, bytes_total)` while downloading.
        timeout: Seconds to wait for the server to connect or send data.
        keep_archive: Keep the downloaded archive next to the dataset instead of deleting it.

    Returns:
        The dataset folder, e.g. `root / "facades"` holding `train/`, `val/` and `test/`.

    Raises:
        DataError: If the name is unknown, the download fails, the archive is damaged or unsafe,
            or its contents do not have the expected layout. The message names the URL or path and
            says how to fix it.
    """
    spec = _spec(name)
    root = Path(root)
    target = root / spec.folder
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        problems = _problems(spec, target)
        if not problems:
            return target
        raise DataError(
            f"{target} exists but is not a complete {name} dataset: {_listed(problems)}. "
            f"Move or delete {target} and run again to download a fresh copy."
        )
    source = _as_url(url or spec.url)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the download folder {root}: {error}. Choose another folder.") from None
    archive = root / spec.archive
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        _fetch(source, part, progress=progress, timeout=timeout, spec=spec, root=root)
        _check_archive(spec, part, source)
        os.replace(part, archive)
    _unpack(spec, archive, root, source)
    if not keep_archive:
        archive.unlink()
    return target


def verify_dataset(name: str, folder: Path) -> dict[str, int]:
    """Check that `folder` holds the complete dataset `name`; return the file count per split.

    Every split folder must exist with the expected number of `.jpg` files, every file must carry
    a JPEG header with the expected size, and a sample of files must decode.

    Raises:
        DataError: Naming the missing folders and the wrong files.
    """
    spec = _spec(name)
    problems = _problems(spec, Path(folder))
    if problems:
        raise DataError(
            f"{folder} is not a complete {name} dataset: {_listed(problems)}. "
            f"Download it again with `tkit data download {name}`."
        )
    return dict(spec.splits)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(
            f"Unknown dataset '{name}'.{did_you_mean(name, DATASETS)} Available: {', '.join(sorted(DATASETS))}."
        )
    return DATASETS[name]


def _as_url(url: str) -> str:
    """Let users pass a plain path to a local archive where a URL is expected."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        return url
    return Path(url).expanduser().resolve().as_uri()


def _listed(problems: list[str]) -> str:
    more = len(problems) - _MAX_LISTED
    return "; ".join(problems[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _download_error(spec: DatasetSpec, url: str, root: Path, reason: str) -> DataError:
    return DataError(
        f"Could not download the {spec.name} dataset from {url}: {reason}. Check your connection and "
        f"run the command again (a partial download resumes), or download the archive by hand from "
        f"{url} and extract it to {root} (so that {root / spec.folder} holds {', '.join(spec.splits)}), or pass "
        f"--url with a mirror or a file:// URL of a local copy of {spec.archive}."
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
        raise _download_error(spec, url, root, str(error.reason)) from None
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
            raise _download_error(spec, url, root, reason) from None
    if total is not None and done != total:
        raise _download_error(spec, url, root, f"the transfer ended after {done:,} of {total:,} bytes")


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-\d+/", content_range or "")
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _check_archive(spec: DatasetSpec, path: Path, url: str) -> None:
    """Compare the archive with the known size and digest, if any; delete it when wrong."""
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


def _unpack(spec: DatasetSpec, archive: Path, root: Path, url: str) -> None:
    """Unpack into a temporary folder under `root`, verify, then move the dataset into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-unpack-", dir=root))
    fix = f"Move or delete {archive} and run again to download it afresh, or pass --url with another copy."
    try:
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    path = PurePosixPath(member.name)
                    if path.is_absolute() or ".." in path.parts or member.name.startswith("\\"):
                        raise DataError(
                            f"Refusing to unpack {archive} (from {url}): its member '{member.name}' would "
                            f"land outside {root}, so the archive is damaged or malicious. {fix}"
                        )
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise DataError(f"Cannot unpack {archive} (from {url}): {error}. The archive is damaged. {fix}") from None
        # Most archives hold one top folder (facades/...); accept the splits at the top level too.
        unpacked = staging / spec.folder if (staging / spec.folder).is_dir() else staging
        problems = _problems(spec, unpacked)
        if problems:
            raise DataError(
                f"The archive {archive} (from {url}) does not hold the {spec.name} dataset: "
                f"{_listed(problems)}. {fix}"
            )
        os.replace(unpacked, root / spec.folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _problems(spec: DatasetSpec, folder: Path) -> list[str]:
    """What is missing or wrong in an unpacked dataset folder; empty when it is complete."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems: list[str] = []
    samples: list[Path] = []
    width, height = spec.image_size
    for split, expected in spec.splits.items():
        split_dir = folder / split
        if not split_dir.is_dir():
            problems.append(f"the split folder {split_dir} is missing")
            continue
        files = sorted(split_dir.glob("*.jpg"))
        if len(files) != expected:
            problems.append(f"{split_dir} holds {len(files)} .jpg files, expected {expected}")
        for file in files:
            size = _jpeg_size(file)
            if size is None:
                problems.append(f"{file} is not a JPEG image")
            elif size != (width, height):
                problems.append(f"{file} is {size[0]}x{size[1]} pixels, expected {width}x{height}")
        samples += files[:1] + files[-1:]
    if not problems:
        problems += _undecodable(samples)
    return problems


def _undecodable(paths: list[Path]) -> list[str]:
    """Fully decode a few files: the header check does not catch damaged image data."""
    from torchvision.io import decode_jpeg, read_file

    problems = []
    for path in paths:
        try:
            decode_jpeg(read_file(str(path)))
        except RuntimeError as error:
            problems.append(f"{path} does not decode ({str(error).splitlines()[0]})")
    return problems


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, reading only the headers; None if not a JPEG."""
    # Segments are FF <marker> <2-byte length> <payload>; the SOFn frame header holds the size.
    with path.open("rb") as f:
        if f.read(2) != b"\xff\xd8":
            return None
        while True:
            if f.read(1) != b"\xff":
                return None
            marker = f.read(1)
            while marker == b"\xff":  # fill bytes
                marker = f.read(1)
            if not marker:
                return None
            code = marker[0]
            if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a payload
                continue
            if code in (0xD9, 0xDA):  # end of image or start of scan before any frame header
                return None
            length = int.from_bytes(f.read(2), "big")
            if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
                header = f.read(5)
                if len(header) < 5:
                    return None
                return int.from_bytes(header[3:5], "big"), int.from_bytes(header[1:3], "big")
            if length < 2:
                return None
            f.seek(length - 2, os.SEEK_CUR)
