"""tessera-transcode: move the TESSERA legacy embedding archive into sharded Zarr v3 stores.

The public API (one function per command-line verb; keywords are the verb's flags with '_' for '-'):
`inventory`, `plan`, `convert`, `extend`, `validate`, `verify_mirrors`, `codecs`, `bench_codecs`, `demo`; their
report types; and the typed errors and warnings of `transcode.errors`. Names load on first use, so importing the
package stays light (no numpy, zarr or boto3)."""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from transcode import errors as _errors

try:
    __version__ = version("tessera-transcode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it (imported on first use)
_LAZY = {
    "inventory": "transcode.api.archive", "InventoryReport": "transcode.api.archive",
    "plan": "transcode.api.archive", "PlanReport": "transcode.api.archive",
    "bench_codecs": "transcode.api.archive", "BenchReport": "transcode.api.archive",
    "convert": "transcode.api.store", "extend": "transcode.api.store", "ConvertReport": "transcode.engine.convert",
    "validate": "transcode.api.store", "ValidationReport": "transcode.validate.report",
    "Finding": "transcode.validate.report", "Problem": "transcode.legacy.problems",
    "verify_mirrors": "transcode.api.mirrors", "MirrorsReport": "transcode.api.mirrors",
    "codecs": "transcode.api.catalog", "CodecCatalog": "transcode.api.catalog",
    "demo": "transcode.api.demonstration", "DemoReport": "transcode.api.demonstration",
}
_ERRORS = sorted(name for name, value in vars(_errors).items()
                 if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == _errors.__name__)
globals().update({name: getattr(_errors, name) for name in _ERRORS})

__all__ = ["__version__", *_LAZY, *_ERRORS]  # noqa: PLE0604 - names built above, every one a str


def __getattr__(name: str) -> object:
    """PEP 562: an API name's module is imported when the name is first used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'transcode' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """`transcode.validate` and `transcode.codecs` are API functions that share their names with subpackages;
    importing a subpackage sets the package's attribute of that name, which must not hide the function."""


for _name in ("validate", "codecs"):
    setattr(_Package, _name, property(lambda self, n=_name: __getattr__(n), lambda self, value: None))
sys.modules[__name__].__class__ = _Package
