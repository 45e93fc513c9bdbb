"""Converters from public datasets, as downloaded, to nnU-Net raw datasets (``nnunet_rc.dataset_conversion``).

Each dataset module registers a :class:`~nnunet_rc.dataset_conversion.writer.Converter` with
:func:`~nnunet_rc.dataset_conversion.writer.register_converter`; ``nnunet-rc convert NAME`` lists them.
Every module of this package is imported here so the registry is complete.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .writer import CONVERTERS

for _m in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _m != "writer" and not _m.startswith("_"):
        _importlib.import_module(f"{__name__}.{_m}")

__all__ = ["CONVERTERS"]
