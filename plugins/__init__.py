"""translate-kit's first-party plugins, installed as `translate_kit_plugins`.

Each module is one plugin family, announced in pyproject.toml's `translate_kit` entry-point group
exactly as a third party's plugin would be; the core never imports them.
"""

__all__: list[str] = []
