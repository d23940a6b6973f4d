"""translate-kit: plugin-based image-to-image translation (pix2pix and friends).

Importing the package is cheap: nothing here imports torch or loads plugins. Start from
`translate_kit.plugins.get_plugin_manager()` and `translate_kit.registry.Registry`, or the `tkit`
command line.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
