"""Palettes: the named classes and colours of label-map inputs, a component kind of this plugin.

A recipe whose inputs are colour label maps names its palette in `data.palette` (`"facades"`);
the recipe check looks the name up among the registered palettes, and `tkit serve` offers its
classes to paint with. Another plugin adds a palette the same way:

    @register("palette")
    def cityscapes() -> Palette:
        return Palette(names=(...), colors=(...))

Example:
    >>> facades().num_classes, facades().names[0]
    (12, 'background')
"""

from __future__ import annotations

from translate_kit.api import FACADES, Palette, register

__all__ = ["facades"]


@register("palette")
def facades() -> Palette:
    """The 12 CMP classes of the pix2pix facades label maps (Tyleček and Šára, GCPR 2013)."""
    return FACADES
