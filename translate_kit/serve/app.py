"""The web app of `tkit serve`: a Starlette app with a JSON API and one hand-written page.

Routes (docs/serve.md has the details):

- `GET /`, `/app.js`, `/style.css`: the page, shipped as package data (no CDN, no build step);
- `GET /api/models`: the models and what each takes (`ServedModel.info`), and the limits;
- `POST /api/translate`: multipart form `model`, `image`, and optionally `mode`, `seed`, `samples`,
  `style`, `format` ("png", the default: the PNG bytes; "json": base64 PNGs and their size).

Requests are read into memory up to `Limits.max_upload_bytes` and parsed there (the multipart
parser's files never roll over to disk), then translated in a worker thread under the model's lock.
Needs the `serve` extra: `pip install 'translate-kit[serve]'`.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from translate_kit.errors import TranslateKitError
from translate_kit.serve.models import MB, Limits, RequestError, ServedModel, decode_upload, encode_png

__all__ = ["bind", "create_app", "run_server", "serve_in_thread", "url_of"]

PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8")}
FIELDS = ("model", "image", "mode", "seed", "samples", "style", "format")


def create_app(models: Sequence[ServedModel], *, limits: Limits = Limits()) -> Starlette:
    """The app serving `models` (distinct names), with `limits` on every request."""
    by_name = {m.name: m for m in models}
    if len(by_name) != len(models):
        raise ValueError(f"Expected distinct model names, got {[m.name for m in models]}")
    static = resources.files("translate_kit.serve") / "static"
    page = {route: (static.joinpath(file).read_bytes(), kind) for route, (file, kind) in PAGE_FILES.items()}

    class InMemoryParser(MultiPartParser):
        spool_max_size = limits.max_upload_bytes + 1  # files stay in memory: nothing is written

    async def page_file(request: Request) -> Response:
        body, kind = page[request.url.path]
        return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"models": [m.info() for m in models], "limits": limits.info()})

    async def translate(request: Request) -> Response:
        try:
            form = await _read_form(request, limits, InMemoryParser)
            model = _choose(form, by_name)
            options = _options(form, model, limits)
            fmt = _text(form, "format") or "png"
            if fmt not in ("png", "json"):
                raise RequestError(f"Unknown format {fmt!r}; choose png or json.", 422)
            if fmt == "png" and options["samples"] != 1:
                raise RequestError("Several samples come back as JSON only: send format=json.", 422)
            scale = model.spec.scale
            image_data = await _file(form, "image", required=True)
            style_data = await _file(form, "style", required=False)

            def work() -> tuple[list[bytes], tuple[int, int], float]:
                # Decoding, translating and encoding all run in a worker thread: a large image
                # must not stall the event loop, and with it every other tab's request.
                image = decode_upload(image_data, what="The image", max_pixels=limits.max_pixels, scale=scale)
                style = (decode_upload(style_data, what="The style image", max_pixels=limits.max_pixels)
                         if style_data is not None else None)
                started = time.perf_counter()
                outputs = model.translate(image, style=style, **options)
                elapsed = time.perf_counter() - started
                return [encode_png(o) for o in outputs], tuple(outputs[0].shape[-2:]), elapsed

            pngs, (height, width), elapsed = await run_in_threadpool(work)
        except RequestError as exc:
            return _error(str(exc), exc.status)
        except TranslateKitError as exc:  # anything else the model refuses, said as the CLI says it
            return _error(str(exc), 422)
        if fmt == "png":
            headers = {"X-Model": model.name, "X-Width": str(width), "X-Height": str(height)}
            return Response(pngs[0], media_type="image/png", headers=headers)
        return JSONResponse({
            "model": model.name, "width": width, "height": height, "scale": scale, **options,
            "seconds": round(elapsed, 4), "images": [str(base64.b64encode(p), "ascii") for p in pngs],
        })

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(f"The server failed on this request ({type(exc).__name__}: {exc}); see its console.", 500)

    routes = [Route(path, page_file) for path in PAGE_FILES]
    routes += [Route("/api/models", list_models), Route("/api/translate", translate, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={Exception: server_error})


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _read_form(request: Request, limits: Limits, parser: type[MultiPartParser]) -> FormData:
    """The multipart form, read into memory and refused as soon as it passes the size limit."""
    limit = limits.max_upload_bytes
    too_large = RequestError(
        f"The upload is larger than this server's limit of {limit / MB:g} MB per request (--max-upload-mb). "
        "Send a smaller image (PNG or JPEG), or restart the server with a larger limit.", 413,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(f"Send a multipart/form-data form with the fields {', '.join(FIELDS)}.", 415)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)

    async def body() -> AsyncIterator[bytes]:
        yield b"".join(chunks)

    try:
        return await parser(request.headers, body(), max_files=2, max_fields=len(FIELDS)).parse()
    except MultiPartException as exc:
        raise RequestError(f"The form cannot be read: {exc.message}", 400) from None


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if isinstance(value, UploadFile):
        raise RequestError(f"Field {key!r} must be text, not a file.", 422)
    return value


async def _file(form: FormData, key: str, *, required: bool) -> bytes | None:
    value = form.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, UploadFile):
        raise RequestError(f"Field {key!r} must be an uploaded image file.", 422)
    return await value.read()


def _choose(form: FormData, models: Mapping[str, ServedModel]) -> ServedModel:
    from translate_kit.errors import did_you_mean

    name = _text(form, "model")
    if name is None and len(models) == 1:
        return next(iter(models.values()))
    if not name:
        raise RequestError(f"Say which model: send the field 'model', one of {', '.join(models)}.", 422)
    if name not in models:
        hint = did_you_mean(name, models)
        raise RequestError(f"Unknown model {name!r}.{hint} This server has: {', '.join(models)}.", 404)
    return models[name]


def _options(form: FormData, model: ServedModel, limits: Limits) -> dict[str, Any]:
    def integer(key: str, default: int, low: int, high: int) -> int:
        text = _text(form, key)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise RequestError(f"Field {key!r} must be an integer, got {text!r}.", 422) from None
        if not low <= value <= high:
            raise RequestError(f"Field {key!r} must be between {low} and {high}, got {value}.", 422)
        return value

    mode = _text(form, "mode") or model.spec.default_mode
    return {"mode": mode, "seed": integer("seed", 0, 0, 2**31 - 1),
            "samples": integer("samples", 1, 1, limits.max_samples)}


# ------------------------------------------------------------------------------------------------
# Serving


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: a free port), for `run_server`.

    Raises:
        OSError: the address is in use or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app: Starlette) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


def run_server(app: Starlette, sock: socket.socket) -> bool:
    """Serve `app` on `sock` until Ctrl-C or SIGTERM; uvicorn finishes the requests in progress.

    Returns:
        Whether a signal stopped the server. uvicorn raises the signal again once it has shut
        down, but a Ctrl-C then reaches asyncio's own handler, which turns it into a
        `KeyboardInterrupt` only if the serving task has not finished yet: the caller must treat
        both a `KeyboardInterrupt` and a True return as a Ctrl-C.
    """
    server = _server(app)
    server.run(sockets=[sock])
    return server.should_exit


@contextmanager
def serve_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread inside the block; yields its URL (tests, notebooks).

    Example:
        >>> with serve_in_thread(create_app(models)) as url:  # doctest: +SKIP
        ...     httpx.get(url + "api/models").json()
    """
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The server thread did not start")
            time.sleep(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
