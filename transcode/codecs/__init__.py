"""Codecs: codec specs, their Zarr v3 configurations and encoders, the extra codecs, the reader catalogue."""
