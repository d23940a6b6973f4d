"""`tkit serve`: a local web app for trained models (docs/serve.md).

The web stack (Starlette, uvicorn, python-multipart) is the optional `serve` extra, imported only
when the command runs, so `tkit --help` and `tkit serve --help` stay fast and work without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from translate_kit.cli.common import cli_command, session
from translate_kit.errors import OptionError, TranslateKitError

__all__ = ["WEB_PACKAGES", "serve"]

# Import name -> distribution, for the message when one is missing.
WEB_PACKAGES = {"starlette": "starlette", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


class MissingExtraError(TranslateKitError):
    """The optional web packages of `tkit serve` are not installed."""


def _check_web_stack() -> None:
    missing = []
    for module, distribution in WEB_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
            found = False
        if not found:
            missing.append(distribution)
    if missing:
        raise MissingExtraError(
            f"tkit serve needs the optional web packages starlette, uvicorn and python-multipart, and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed in this environment. Install "
            "them with `pip install 'translate-kit[serve]'` (from a source checkout: `pip install -e '.[serve]'`), "
            "then run the command again."
        )


@cli_command
def serve(
    ctx: typer.Context,
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run folders (their newest checkpoint), checkpoint files or safetensors exports; the "
                       "page lets you choose among them.", show_default=False),
    ],
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. The default answers this machine only; 0.0.0.0 opens it to the "
                     "network, with no authentication."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    max_upload_mb: Annotated[
        float, typer.Option(min=0.01, help="Largest request (image, style image and options) in MB; larger "
                            "uploads are refused with status 413."),
    ] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest output in pixels (width x height, times the scale squared for "
                          "super-resolution); larger images are refused before decoding."),
    ] = 4096 * 4096,
    tile: Annotated[
        int, typer.Option(min=16, help="Images whose output side is larger than this many pixels go through the "
                          "network in overlapping tiles of about this size, so memory stays bounded."),
    ] = 1024,
    ema: Annotated[
        bool, typer.Option("--ema/--no-ema", help="Use the moving averages of the weights when the run kept them."),
    ] = True,
) -> None:
    """Serve trained models in a local web app: paint a label map or upload an image, see the translation.

    Every model is loaded once, at start; the page and its JSON API are served until Ctrl-C.
    Uploads are decoded in memory and nothing is written to disk. See docs/serve.md.
    """
    _check_web_stack()
    from translate_kit.serve.app import bind, create_app, run_server, url_of
    from translate_kit.serve.models import MB, Limits, load_models

    console = Console()
    limits = Limits(max_upload_bytes=round(max_upload_mb * MB), max_pixels=max_pixels, tile=tile)
    state = session(ctx)

    def loaded(model) -> None:  # noqa: ANN001 - a ServedModel
        spec = model.spec
        kind = f"label map ({spec.palette.num_classes} classes)" if spec.palette is not None else "image"
        extra = f", x{spec.scale}" if spec.scale > 1 else ""
        console.print(f"Loaded [bold]{escape(model.name)}[/] from {escape(str(model.translator.checkpoint))}: "
                      f"{kind} input{extra}, modes {'/'.join(spec.modes)}, on {model.translator.device}.")

    models = load_models(runs, registry=state.registry, device=device, use_ema=ema, limits=limits, on_load=loaded)
    app = create_app(models, limits=limits)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise OptionError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Choose another --port (0 picks a free one) "
            "or another --host."
        ) from None
    console.print(f"Serving {len(models)} model(s) at [bold]{url_of(sock)}[/] (Ctrl-C stops).")
    try:
        stopped = run_server(app, sock)
    except KeyboardInterrupt:  # after the requests in progress are answered
        stopped = True
    if stopped:
        console.print("Stopped.")
        raise typer.Exit(code=130)  # as every command stopped by Ctrl-C
