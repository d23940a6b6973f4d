"""`tkit serve`: a local web app for trained models (docs/serve.md).

- `translate_kit.serve.models`: loading the models, what each takes (`InputSpec`), checked
  uploads and translation guarded by locks; no web framework;
- `translate_kit.serve.app`: the Starlette app and the uvicorn server (the `serve` extra:
  `pip install 'translate-kit[serve]'`);
- `static/`: the page (HTML, JavaScript, CSS), package data with no build step.

Example:
    >>> from translate_kit.serve import Limits
    >>> Limits().max_upload_bytes // 2**20
    20
"""

from __future__ import annotations

from translate_kit.serve.models import Limits, RequestError, ServedModel, load_models, served_model

__all__ = ["Limits", "RequestError", "ServedModel", "load_models", "served_model"]
