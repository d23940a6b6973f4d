"""`python -m translate_kit` is the same as `tkit`."""

from translate_kit.cli import main

main()
