"""Data: decoding, preparation and caching, resumable order, on-device jitter, downloads, synthetic facades."""

__all__: list[str] = []
