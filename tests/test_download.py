"""Dataset download: a local HTTP server stands in for the real one; no test touches the network.

The "facades" entry of DATASETS is shrunk per test (a few 32x16 images) with monkeypatch, so the
code paths are the real ones while the archive stays tiny.
"""

from __future__ import annotations

import dataclasses
import io
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg

from translate_kit.data import download
from translate_kit.data.download import DatasetSpec, download_dataset, verify_dataset
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
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["facades.tar.gz"], "no temp folder left"


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


def test_jpeg_size_reads_the_header(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg(40, 24))
    assert download._jpeg_size(image) == (40, 24)
    image.write_bytes(b"\xff\xd8\xff")
    assert download._jpeg_size(image) is None
    image.write_bytes(b"PNG, not JPEG")
    assert download._jpeg_size(image) is None


def test_archive_already_in_root_is_used(tmp_path, server, tiny_facades):
    (tmp_path / "facades").mkdir()  # an empty folder is fine to fill
    (tmp_path / "facades.tar.gz").write_bytes(make_archive())
    assert_tiny_dataset(download_dataset("facades", tmp_path))
    assert server.ranges == []


def test_cli_download_with_progress_and_offline_error(tmp_path, server, tiny_facades):
    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    server.serve(make_archive())
    result = CliRunner().invoke(make_app(), ["data", "download", "facades", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "facades is ready" in result.output
    assert_tiny_dataset(tmp_path / "facades")

    url = f"http://127.0.0.1:{closed_port()}/facades.tar.gz"
    result = CliRunner().invoke(make_app(), ["data", "download", "facades", "--root", str(tmp_path / "b"), "--url", url])
    assert result.exit_code == 1 and url in result.output
    assert isinstance(result.exception, SystemExit)
