"""Dataset download: a local HTTP server stands in for the real one; no test touches the network.

The "facades" and "cyclegan/horse2zebra" entries of DATASETS are shrunk per test (a few tiny images)
with monkeypatch or passed as specs, so the code paths are the real ones while the archives stay
tiny: a .tar.gz in the pix2pix layout, a .zip in the CycleGAN layout.
"""

from __future__ import annotations

import dataclasses
import io
import re
import socket
import stat
import struct
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image, encode_jpeg, encode_png, read_file

from translate_kit.data import download
from translate_kit.data.download import (
    DATASETS,
    DatasetSpec,
    download_dataset,
    get_spec,
    prepare_cityscapes,
    verify_dataset,
)
from translate_kit.errors import DataError

TINY_SPLITS = {"train": 3, "val": 1, "test": 2}
TINY_SIZE = (32, 16)  # (width, height)
REAL_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


def jpeg(width: int = TINY_SIZE[0], height: int = TINY_SIZE[1], seed: int = 0) -> bytes:
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return bytes(encode_jpeg(image).tolist())


def make_archive(
    splits: dict[str, int] = TINY_SPLITS,
    *,
    top: str = "facades",
    size: tuple[int, int] = TINY_SIZE,
    extra: dict[str, bytes] | None = None,
) -> bytes:
    """A .tar.gz in the pix2pix layout: `top/{split}/{i}.jpg`, plus `extra` members verbatim."""
    members = {f"{top}/{split}/{i}.jpg": jpeg(*size, seed=i) for split, n in splits.items() for i in range(1, n + 1)}
    members.update(extra or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Server:
    """What the test HTTP server serves, and what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []  # the Range header of every request, None when absent
        self.honour_range = True
        self.break_after: int | None = None  # send only this many body bytes, then hang up
        self.break_once = False  # hang up only on the first request, then serve normally
        self.url = ""

    def serve(self, data: bytes, path: str = "/facades.tar.gz") -> str:
        self.files[path] = data
        return self.url + path


class Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state = self.server_state
        requested = self.headers.get("Range")
        state.ranges.append(requested)
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and state.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.break_after is not None:
            body = body[: state.break_after]
            self.close_connection = True
            if state.break_once:
                state.break_after = None
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    handler = type("BoundHandler", (Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def tiny_facades(monkeypatch, server) -> DatasetSpec:
    """The real facades entry, pointed at the local server and expecting a tiny layout."""
    spec = dataclasses.replace(
        download.DATASETS["facades"], url=server.url + "/facades.tar.gz", splits=TINY_SPLITS, image_size=TINY_SIZE
    )
    monkeypatch.setitem(download.DATASETS, "facades", spec)
    return spec


def assert_tiny_dataset(folder: Path) -> None:
    for split, n in TINY_SPLITS.items():
        assert sorted(p.name for p in (folder / split).iterdir()) == [f"{i}.jpg" for i in range(1, n + 1)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_default_facades_entry_expects_the_real_layout():
    spec = download.DATASETS["facades"]
    assert spec.url == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    assert dict(spec.splits) == {"train": 400, "val": 100, "test": 106}
    assert spec.image_size == (512, 256)


@pytest.mark.skipif(not REAL_FACADES.is_dir(), reason=f"the real facades set is not at {REAL_FACADES}")
def test_real_facades_copy_passes_verification():
    assert verify_dataset("facades", REAL_FACADES) == {"train": 400, "val": 100, "test": 106}


def test_download_unpacks_and_verifies(tmp_path, server, tiny_facades):
    archive = make_archive()
    server.serve(archive)
    seen = []
    folder = download_dataset("facades", tmp_path / "data", progress=lambda done, total: seen.append((done, total)))
    assert folder == tmp_path / "data" / "facades"
    assert_tiny_dataset(folder)
    assert seen[0] == (0, len(archive)) and seen[-1] == (len(archive), len(archive))
    assert server.ranges == [None]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["facades"], "no archive, part or temp left"


def test_keep_archive(tmp_path, server, tiny_facades):
    archive = make_archive()
    server.serve(archive)
    download_dataset("facades", tmp_path, keep_archive=True)
    assert (tmp_path / "facades.tar.gz").read_bytes() == archive


def test_complete_dataset_is_not_downloaded_again(tmp_path, server, tiny_facades):
    server.serve(make_archive())
    first = download_dataset("facades", tmp_path)
    server.ranges.clear()
    assert download_dataset("facades", tmp_path) == first
    assert server.ranges == []


def test_resume_sends_range_and_appends(tmp_path, server, tiny_facades):
    archive = make_archive()
    server.serve(archive)
    (tmp_path / "facades.tar.gz.part").write_bytes(archive[:100])
    seen = []
    download_dataset("facades", tmp_path, progress=lambda done, total: seen.append((done, total)), keep_archive=True)
    assert server.ranges == ["bytes=100-"]
    assert seen[0] == (100, len(archive))
    assert (tmp_path / "facades.tar.gz").read_bytes() == archive
    assert_tiny_dataset(tmp_path / "facades")


def test_broken_transfer_resumes_on_the_next_run(tmp_path, server, tiny_facades):
    archive = make_archive()
    url = server.serve(archive)
    server.break_after = 200
    with pytest.raises(DataError, match="broke off|ended after") as info:
        download_dataset("facades", tmp_path, timeout=5)
    assert url in str(info.value)
    assert (tmp_path / "facades.tar.gz.part").read_bytes() == archive[:200]
    server.break_after = None
    download_dataset("facades", tmp_path, timeout=5)
    assert server.ranges == [None, "bytes=200-"]
    assert_tiny_dataset(tmp_path / "facades")


def test_server_ignoring_range_restarts_from_zero(tmp_path, server, tiny_facades):
    archive = make_archive()
    server.serve(archive)
    server.honour_range = False
    (tmp_path / "facades.tar.gz.part").write_bytes(b"stale bytes from another file")
    download_dataset("facades", tmp_path, keep_archive=True)
    assert server.ranges == ["bytes=29-"]
    assert (tmp_path / "facades.tar.gz").read_bytes() == archive


def test_complete_part_is_not_fetched_again(tmp_path, server, tiny_facades):
    archive = make_archive()
    server.serve(archive)
    (tmp_path / "facades.tar.gz.part").write_bytes(archive)
    download_dataset("facades", tmp_path)
    assert server.ranges == [f"bytes={len(archive)}-"]  # answered 416 with the total: nothing to fetch
    assert_tiny_dataset(tmp_path / "facades")


def test_unreachable_server_names_the_url(tmp_path, tiny_facades):
    url = f"http://127.0.0.1:{closed_port()}/facades.tar.gz"
    with pytest.raises(DataError) as info:
        download_dataset("facades", tmp_path, url=url, timeout=5)
    message = str(info.value)
    assert url in message and "--url" in message and str(tmp_path) in message
    assert "\n" not in message


def test_http_404_names_the_url_and_status(tmp_path, server, tiny_facades):
    url = server.url + "/missing.tar.gz"
    with pytest.raises(DataError, match="HTTP 404") as info:
        download_dataset("facades", tmp_path, url=url)
    assert url in str(info.value)
    assert not (tmp_path / "facades").exists()


def test_file_url_and_plain_path(tmp_path, tiny_facades):
    local = tmp_path / "copy" / "facades.tar.gz"
    local.parent.mkdir()
    local.write_bytes(make_archive())
    assert_tiny_dataset(download_dataset("facades", tmp_path / "a", url=local.as_uri()))
    assert_tiny_dataset(download_dataset("facades", tmp_path / "b", url=str(local)))


def test_missing_local_file_is_a_data_error(tmp_path, tiny_facades):
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(DataError, match="Could not download") as info:
        download_dataset("facades", tmp_path / "data", url=url)
    assert url in str(info.value)


@pytest.mark.parametrize("evil", ["facades/../../evil.txt", "../evil.txt", "/tmp/translate_kit_evil.txt"])
def test_unsafe_member_is_refused(tmp_path, server, tiny_facades, evil):
    server.serve(make_archive(extra={evil: b"gotcha"}))
    with pytest.raises(DataError, match="Refusing to unpack") as info:
        download_dataset("facades", tmp_path / "data")
    assert evil in str(info.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "facades").exists()
    assert not Path("/tmp/translate_kit_evil.txt").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["facades.tar.gz.bad"], "kept as .bad, no temp left"


def test_missing_split_is_named(tmp_path, server, tiny_facades):
    server.serve(make_archive({"train": 3, "test": 2}))
    with pytest.raises(DataError, match=r"split folder .*val is missing"):
        download_dataset("facades", tmp_path)
    assert not (tmp_path / "facades").exists()


def test_wrong_count_and_size_are_named(tmp_path, server, tiny_facades):
    server.serve(make_archive({"train": 2, "val": 1, "test": 2}, size=(16, 16)))
    with pytest.raises(DataError) as info:
        download_dataset("facades", tmp_path)
    message = str(info.value)
    assert "holds 2 .jpg files, expected 3" in message and "16x16 pixels, expected 32x16" in message


def test_archive_without_top_folder_is_accepted(tmp_path, server, tiny_facades):
    server.serve(make_archive(top="."))
    assert_tiny_dataset(download_dataset("facades", tmp_path))


def test_damaged_archive(tmp_path, server, tiny_facades):
    server.serve(b"this is not a tar.gz file")
    with pytest.raises(DataError, match="damaged"):
        download_dataset("facades", tmp_path)


def test_wrong_archive_size_is_deleted(tmp_path, server, tiny_facades, monkeypatch):
    archive = make_archive()
    server.serve(archive)
    spec = dataclasses.replace(tiny_facades, archive_bytes=len(archive) + 1)
    monkeypatch.setitem(download.DATASETS, "facades", spec)
    with pytest.raises(DataError, match=f"{len(archive):,} bytes"):
        download_dataset("facades", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_existing_folder_is_not_overwritten(tmp_path, server, tiny_facades):
    (tmp_path / "facades" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="exists but is not a complete facades dataset"):
        download_dataset("facades", tmp_path)
    assert server.ranges == []


def test_unknown_dataset_suggests_a_name(tmp_path):
    with pytest.raises(DataError, match="Did you mean 'facades'"):
        download_dataset("facade", tmp_path)


def test_image_sizes_come_from_the_headers(tmp_path):
    from torchvision.io import encode_png

    from translate_kit.data.io import image_size

    picture = jpeg(40, 24)
    # An APP1 (EXIF-like) segment before the frame header: the walk must skip it.
    exif = b"\xff\xe1" + (2 + 1000).to_bytes(2, "big") + bytes(1000)
    png = encode_png(torch.zeros(3, 24, 40, dtype=torch.uint8)).numpy().tobytes()
    for data, expected in [
        (picture, (40, 24)), (picture[:2] + exif + picture[2:], (40, 24)), (png, (40, 24)),
        (b"\xff\xd8\xff", None), (picture[:20], None), (b"PNG, not JPEG", None),
    ]:
        assert image_size(data) == expected
    image = tmp_path / "a.jpg"
    image.write_bytes(picture[:2] + exif + picture[2:])
    assert download._header_size(image) == (40, 24)


def test_archive_already_in_root_is_used(tmp_path, server, tiny_facades):
    (tmp_path / "facades").mkdir()  # an empty folder is fine to fill
    (tmp_path / "facades.tar.gz").write_bytes(make_archive())
    assert_tiny_dataset(download_dataset("facades", tmp_path))
    assert server.ranges == []


def test_cli_download_with_progress_and_offline_error(tmp_path, server, tiny_facades):
    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    server.serve(make_archive())
    result = CliRunner().invoke(make_app(), ["data", "download", "facades", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "facades is ready" in result.output
    assert_tiny_dataset(tmp_path / "facades")

    url = f"http://127.0.0.1:{closed_port()}/facades.tar.gz"
    result = CliRunner().invoke(make_app(), ["data", "download", "facades", "--out", str(tmp_path / "b"), "--url", url])
    assert result.exit_code == 1 and url in result.output
    assert isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------------------------
# The catalogue: every set of the reference scripts, with consistent specs

PIX2PIX_REFERENCE = {"cityscapes", "night2day", "edges2handbags", "edges2shoes", "facades", "maps"}
CYCLEGAN_REFERENCE = {
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo", "ukiyoe2photo",
    "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
}


def test_catalogue_holds_every_set_of_the_reference_scripts():
    assert {s.name for s in DATASETS.values() if s.family == "pix2pix"} == PIX2PIX_REFERENCE
    cyclegan = {s.name for s in DATASETS.values() if s.family == "cyclegan"}
    assert cyclegan == {f"cyclegan/{n}" for n in CYCLEGAN_REFERENCE}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_spec_is_consistent(name):
    spec = DATASETS[name]
    assert get_spec(name) is spec and spec.folder == spec.name and spec.source and spec.domains
    assert all(n is None or n > 0 for n in spec.splits.values())
    if spec.family == "pix2pix":
        assert get_spec(f"pix2pix/{name}") is spec
        width, height = spec.image_size
        assert width == 2 * height, "pix2pix images are A|B side by side"
        expected_url = f"http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
    else:
        assert list(spec.splits) == ["trainA", "trainB", "testA", "testB"] and spec.image_size is None
        expected_url = f"http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name.split('/')[1]}.zip"
    if name == "cityscapes":
        assert spec.url is None and "cityscapes-dataset.com" in spec.manual
    else:
        assert spec.url == expected_url and spec.approx_mib and spec.archive.endswith(expected_url.rsplit("/", 1)[1])


def test_fixed_image_sizes_of_the_pix2pix_sets():
    sizes = {name: DATASETS[name].image_size for name in PIX2PIX_REFERENCE}
    assert sizes == {"facades": (512, 256), "maps": (1200, 600), "edges2shoes": (512, 256),
                     "edges2handbags": (512, 256), "night2day": (512, 256), "cityscapes": (512, 256)}


def test_names_shared_by_both_families_resolve_to_pix2pix_unless_prefixed():
    for name in ("facades", "maps", "cityscapes"):
        assert get_spec(name).family == "pix2pix" and get_spec(f"cyclegan/{name}").family == "cyclegan"
        assert get_spec(name).folder != get_spec(f"cyclegan/{name}").folder
    with pytest.raises(DataError, match=r"Did you mean 'cyclegan/horse2zebra'\? CycleGAN sets are named cyclegan/NAME"):
        get_spec("horse2zebra")


# ------------------------------------------------------------------------------------------------
# A CycleGAN set: a .zip with trainA/trainB/testA/testB

TINY_AB = {"trainA": 3, "trainB": 2, "testA": 1, "testB": 2}


def png(width: int = 24, height: int = 24, seed: int = 0) -> bytes:
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return bytes(encode_png(image).tolist())


def make_zip(
    splits: dict[str, int] = TINY_AB, *, top: str = "horse2zebra", extra: dict[str, bytes] | None = None
) -> bytes:
    """A .zip in the CycleGAN layout, stored uncompressed; images of varying size, one of them a PNG."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for split, n in splits.items():
            zf.writestr(f"{top}/{split}/", b"")
            for i in range(1, n + 1):
                if split == "trainB" and i == 1:
                    zf.writestr(f"{top}/{split}/{i}.png", png(seed=i))
                else:
                    zf.writestr(f"{top}/{split}/n0238_{i}.jpg", jpeg(24 + i, 24, seed=i))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def tiny_horse2zebra(monkeypatch, server) -> DatasetSpec:
    """The real cyclegan/horse2zebra entry, pointed at the local server and expecting a tiny layout."""
    spec = dataclasses.replace(DATASETS["cyclegan/horse2zebra"], url=server.url + "/horse2zebra.zip", splits=TINY_AB)
    monkeypatch.setitem(download.DATASETS, "cyclegan/horse2zebra", spec)
    return spec


@pytest.fixture
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(download, "_RETRY_DELAY", 0.0)


def assert_tiny_cyclegan(folder: Path) -> None:
    assert {split: len(list((folder / split).iterdir())) for split in TINY_AB} == TINY_AB


def test_cyclegan_zip_downloads_into_its_family_folder(tmp_path, server, tiny_horse2zebra):
    archive = make_zip()
    server.serve(archive, "/horse2zebra.zip")
    seen = []
    folder = download_dataset(tiny_horse2zebra, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert folder == tmp_path / "cyclegan" / "horse2zebra"
    assert_tiny_cyclegan(folder)
    assert (folder / "trainB" / "1.png").is_file()
    assert seen[-1] == (len(archive), len(archive)) and server.ranges == [None]
    assert [p.name for p in (tmp_path / "cyclegan").iterdir()] == ["horse2zebra"], "no archive or temp left"
    assert verify_dataset(tiny_horse2zebra, folder) == TINY_AB


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_interrupted_download_resumes_within_one_call(tmp_path, server, tiny_facades, tiny_horse2zebra, no_retry_wait,
                                                      family):
    spec = tiny_facades if family == "pix2pix" else tiny_horse2zebra
    archive = make_archive() if family == "pix2pix" else make_zip()
    server.serve(archive, "/facades.tar.gz" if family == "pix2pix" else "/horse2zebra.zip")
    server.break_after, server.break_once = len(archive) // 2, True
    folder = download_dataset(spec, tmp_path, timeout=5, retries=1, keep_archive=True)
    assert server.ranges == [None, f"bytes={len(archive) // 2}-"]
    assert (tmp_path / spec.archive).read_bytes() == archive
    (assert_tiny_dataset if family == "pix2pix" else assert_tiny_cyclegan)(folder)


def test_retries_give_up_with_the_transfer_error(tmp_path, server, tiny_horse2zebra, no_retry_wait):
    archive = make_zip()
    url = server.serve(archive, "/horse2zebra.zip")
    server.break_after = 100  # every request hangs up after 100 bytes
    with pytest.raises(DataError, match="broke off|ended after") as info:
        download_dataset(tiny_horse2zebra, tmp_path, timeout=5, retries=2)
    assert url in str(info.value) and len(server.ranges) == 3
    assert (tmp_path / "cyclegan" / "horse2zebra.zip.part").read_bytes() == archive[:300], "each retry resumed"


def test_corrupt_zip_is_refused_kept_as_bad_and_fetched_afresh(tmp_path, server, tiny_horse2zebra):
    archive = make_zip()
    first = jpeg(25, 24, seed=1)
    start = archive.index(first)
    damaged = archive[: start + 50] + bytes([archive[start + 50] ^ 0xFF]) + archive[start + 51 :]
    server.serve(damaged, "/horse2zebra.zip")
    with pytest.raises(DataError, match="damaged") as info:
        download_dataset(tiny_horse2zebra, tmp_path)
    bad = tmp_path / "cyclegan" / "horse2zebra.zip.bad"
    assert str(bad) in str(info.value) and bad.read_bytes() == damaged
    assert not (tmp_path / "cyclegan" / "horse2zebra").exists()
    server.serve(archive, "/horse2zebra.zip")
    assert_tiny_cyclegan(download_dataset(tiny_horse2zebra, tmp_path))


def test_truncated_tar_is_refused(tmp_path, server, tiny_facades):
    server.serve(make_archive()[:-200])
    with pytest.raises(DataError, match="damaged"):
        download_dataset("facades", tmp_path)
    assert (tmp_path / "facades.tar.gz.bad").is_file() and not (tmp_path / "facades").exists()


def test_cyclegan_archive_with_the_wrong_layout_is_refused(tmp_path, server, tiny_horse2zebra):
    server.serve(make_zip({"train": 3, "test": 2}), "/horse2zebra.zip")  # a pix2pix-style layout
    with pytest.raises(DataError, match=r"does not hold the cyclegan/horse2zebra dataset: the split folder .*trainA"):
        download_dataset(tiny_horse2zebra, tmp_path)
    assert (tmp_path / "cyclegan" / "horse2zebra.zip.bad").is_file()


def test_wrong_count_in_zip_is_named(tmp_path, server, tiny_horse2zebra):
    server.serve(make_zip({**TINY_AB, "testB": 1}), "/horse2zebra.zip")
    with pytest.raises(DataError, match=r"testB holds 1 \.jpg/\.jpeg/\.png files, expected 2"):
        download_dataset(tiny_horse2zebra, tmp_path)


@pytest.mark.parametrize("evil", ["horse2zebra/../../evil.txt", "/tmp/translate_kit_evil_zip.txt", "C:/evil.txt"])
def test_unsafe_zip_member_is_refused(tmp_path, server, tiny_horse2zebra, evil):
    server.serve(make_zip(extra={evil: b"gotcha"}), "/horse2zebra.zip")
    with pytest.raises(DataError, match="Refusing to unpack") as info:
        download_dataset(tiny_horse2zebra, tmp_path / "data")
    assert evil in str(info.value)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/translate_kit_evil_zip.txt").exists()
    assert [p.name for p in (tmp_path / "data" / "cyclegan").iterdir()] == ["horse2zebra.zip.bad"]


def test_links_are_refused_in_zip_and_tar(tmp_path, server, tiny_facades, tiny_horse2zebra):
    buffer = io.BytesIO(make_zip())
    with zipfile.ZipFile(buffer, "a") as zf:
        link = zipfile.ZipInfo("horse2zebra/trainA/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    server.serve(buffer.getvalue(), "/horse2zebra.zip")
    with pytest.raises(DataError, match="is a link"):
        download_dataset(tiny_horse2zebra, tmp_path)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [(f"facades/{s}/{i}.jpg", jpeg()) for s, n in TINY_SPLITS.items() for i in range(1, n + 1)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("facades/train/4.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
        tar.addfile(link)
    server.serve(buffer.getvalue())
    with pytest.raises(DataError, match="is a link to '../../../../etc/passwd'"):
        download_dataset("facades", tmp_path)


def test_split_of_unknown_count_must_hold_images(tmp_path, server, tiny_facades):
    spec = dataclasses.replace(tiny_facades, splits={"train": 3, "val": None, "test": None})
    server.serve(make_archive({"train": 3, "val": 1, "test": 0}, extra={"facades/test/README": b"empty"}))
    with pytest.raises(DataError, match=r"test holds no \.jpg files"):
        download_dataset(spec, tmp_path)
    server.serve(make_archive({"train": 3, "val": 5, "test": 2}))
    (tmp_path / "facades.tar.gz.bad").unlink()
    assert verify_dataset(spec, download_dataset(spec, tmp_path)) == {"train": 3, "val": 5, "test": 2}


def test_offline_cyclegan_error_names_the_url_and_the_way_out(tmp_path, tiny_horse2zebra):
    url = f"http://127.0.0.1:{closed_port()}/horse2zebra.zip"
    with pytest.raises(DataError) as info:
        download_dataset(tiny_horse2zebra, tmp_path, url=url, timeout=5, retries=3)
    message = str(info.value)
    assert url in message and "offline" in message and "--url" in message and "file://" in message
    assert "horse2zebra.zip" in message and str(tmp_path / "cyclegan" / "horse2zebra") in message
    assert list(tmp_path.iterdir()) == []  # no empty cyclegan/ folder left behind


# ------------------------------------------------------------------------------------------------
# Cityscapes: manual steps, and the pairs built from tiny fake official folders


def test_cityscapes_gives_the_manual_steps_without_touching_the_network(tmp_path, server):
    with pytest.raises(DataError) as info:
        download_dataset("cityscapes", tmp_path / "data")
    message = str(info.value)
    for needed in ("licence", "cityscapes-dataset.com", "gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip",
                   f"tkit data prepare-cityscapes ~/cityscapes --out {tmp_path / 'data'}", "--url"):
        assert needed in message
    assert server.ranges == [] and not (tmp_path / "data").exists()


def rgba_png(image: torch.Tensor) -> bytes:
    """A (4, H, W) uint8 image as an RGBA PNG, which torchvision cannot encode (gtFine_color.png is RGBA)."""
    _, height, width = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = image.permute(1, 2, 0).contiguous().numpy()
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


ROAD, CAR = (128, 64, 128), (0, 0, 142)  # two Cityscapes label colours


def fake_cityscapes(root: Path, cities: dict[str, dict[str, int]]) -> list[tuple[int, int, int]]:
    """Official-style leftImg8bit/ and gtFine/ folders with 64x32 photos of one flat colour each."""
    colours = []
    for split, per_city in cities.items():
        for city, n in per_city.items():
            for k in range(n):
                stem = f"{city}_{k:06d}_000019"
                colour = (20 + 40 * len(colours), 100, 200)
                colours.append(colour)
                photo = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 64).contiguous()
                label = torch.empty(4, 32, 64, dtype=torch.uint8)
                label[:3, :, :32] = torch.tensor(ROAD, dtype=torch.uint8).view(3, 1, 1)
                label[:3, :, 32:] = torch.tensor(CAR, dtype=torch.uint8).view(3, 1, 1)
                label[3] = 255
                photos, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
                photos.mkdir(parents=True, exist_ok=True)
                labels.mkdir(parents=True, exist_ok=True)
                (photos / f"{stem}_leftImg8bit.png").write_bytes(bytes(encode_png(photo).tolist()))
                (labels / f"{stem}_gtFine_color.png").write_bytes(rgba_png(label))
                (labels / f"{stem}_gtFine_labelIds.png").write_bytes(png(64, 32))  # ignored
                (labels / f"{stem}_gtFine_polygons.json").write_text("{}")  # ignored
    return colours


@pytest.fixture
def tiny_cityscapes(monkeypatch) -> DatasetSpec:
    spec = dataclasses.replace(DATASETS["cityscapes"], splits={"train": 3, "val": 1})
    monkeypatch.setitem(download.DATASETS, "cityscapes", spec)
    return spec


def close(pixel: torch.Tensor, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool((pixel.int() - torch.tensor(colour)).abs().max() <= tolerance)


def test_prepare_cityscapes_builds_side_by_side_pairs(tmp_path, tiny_cityscapes):
    colours = fake_cityscapes(tmp_path / "cs", {"train": {"bremen": 1, "aachen": 2}, "val": {"lindau": 1}})
    folder = prepare_cityscapes(tmp_path / "cs", tmp_path / "data", size=16, spec=tiny_cityscapes)
    assert folder == tmp_path / "data" / "cityscapes"
    assert verify_dataset(dataclasses.replace(tiny_cityscapes, image_size=(32, 16)), folder) == {"train": 3, "val": 1}
    # Numbered in sorted order: aachen_000000, aachen_000001, bremen_000000, then val's lindau.
    expected = {"train/1.jpg": colours[1], "train/2.jpg": colours[2], "train/3.jpg": colours[0],
                "val/1.jpg": colours[3]}
    for name, colour in expected.items():
        pair = decode_image(read_file(str(folder / name)))
        assert pair.shape == (3, 16, 32)
        assert close(pair[:, 8, 4], colour), "photo (A) on the left"
        assert close(pair[:, 8, 18], ROAD) and close(pair[:, 8, 29], CAR), "colour labels (B) on the right"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cityscapes"], "no temp folder left"


def test_prepared_cityscapes_counts_as_downloaded(tmp_path, tiny_cityscapes):
    fake_cityscapes(tmp_path / "cs", {"train": {"aachen": 3}, "val": {"lindau": 1}})
    folder = prepare_cityscapes(tmp_path / "cs", tmp_path)  # the default 256: 512x256 pairs, as the spec says
    assert download_dataset("cityscapes", tmp_path) == folder


def test_prepare_cityscapes_names_what_is_missing(tmp_path, tiny_cityscapes):
    with pytest.raises(DataError, match=r"leftImg8bit does not exist\. Unzip leftImg8bit_trainvaltest\.zip"):
        prepare_cityscapes(tmp_path, tmp_path / "out")
    fake_cityscapes(tmp_path / "cs", {"train": {"aachen": 3}, "val": {"lindau": 1}})
    (tmp_path / "cs" / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_color.png").unlink()
    with pytest.raises(DataError, match=r"lindau_000000_000019_gtFine_color\.png \(the label map of"):
        prepare_cityscapes(tmp_path / "cs", tmp_path / "out")
    fake_cityscapes(tmp_path / "few", {"train": {"aachen": 1}, "val": {"lindau": 1}})  # 1 train pair, 3 expected
    with pytest.raises(DataError, match=r"do not give the complete cityscapes set: .*train holds 1 \.jpg files"):
        prepare_cityscapes(tmp_path / "few", tmp_path / "out", size=16)
    assert not (tmp_path / "out" / "cityscapes").exists()


# ------------------------------------------------------------------------------------------------
# The command line: every set listed, CycleGAN and Cityscapes paths, errors as one paragraph


def invoke(*args: str):
    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    return CliRunner().invoke(make_app(), list(args), env={"COLUMNS": "200"})


def test_cli_list_and_help_show_every_set_with_its_family():
    listed, helped = invoke("data", "list"), invoke("data", "download", "--help")
    assert listed.exit_code == 0 and helped.exit_code == 0, listed.output + helped.output
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if line.count("│") > 3}
    for spec in DATASETS.values():
        assert spec.family in rows[spec.name] and str(next(iter(spec.splits.values())) or "?") in rows[spec.name]
        line = next(line for line in helped.output.splitlines() if line.strip().startswith(f"{spec.name} "))
        assert spec.family in line and spec.source in line
    assert "8.0 GiB" in helped.output and "manual" in helped.output and "29 MiB" in helped.output


def test_cli_downloads_a_cyclegan_set_with_resume(tmp_path, server, tiny_horse2zebra, no_retry_wait):
    archive = make_zip()
    server.serve(archive, "/horse2zebra.zip")
    server.break_after, server.break_once = 300, True
    result = invoke("data", "download", "cyclegan/horse2zebra", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "cyclegan/horse2zebra is ready" in result.output and server.ranges == [None, "bytes=300-"]
    assert_tiny_cyclegan(tmp_path / "cyclegan" / "horse2zebra")


def test_cli_cityscapes_prints_the_steps_and_exits_1(tmp_path):
    result = invoke("data", "download", "cityscapes", "--out", str(tmp_path))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Error: Cityscapes cannot be downloaded automatically" in result.output
    assert "gtFine_trainvaltest.zip" in result.output and "Traceback" not in result.output


def test_cli_prepare_cityscapes(tmp_path, tiny_cityscapes):
    fake_cityscapes(tmp_path / "cs", {"train": {"aachen": 3}, "val": {"lindau": 1}})
    result = invoke("data", "prepare-cityscapes", str(tmp_path / "cs"), "--out", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert "cityscapes is ready" in result.output
    assert verify_dataset("cityscapes", tmp_path / "data" / "cityscapes") == {"train": 3, "val": 1}
    result = invoke("data", "prepare-cityscapes", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "leftImg8bit does not exist" in result.output


def test_cli_unknown_name_suggests_the_cyclegan_one():
    result = invoke("data", "download", "horse2zebra")
    assert result.exit_code == 1 and "Did you mean 'cyclegan/horse2zebra'?" in result.output
