"""tessera-transcode: move the TESSERA legacy embedding archive into sharded Zarr v3 stores."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tessera-transcode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
