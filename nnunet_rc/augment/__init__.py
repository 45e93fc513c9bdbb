"""Batched on-device augmentations (pure PyTorch). See :mod:`nnunet_rc.augment.base` for the contract.

Every module of this package is imported here, so each ``@register_augmentation`` class is listed in
:data:`AUGMENTATIONS` and importable as ``nnunet_rc.augment.<Name>``.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import AUGMENTATIONS, BatchAugmentation, match_mean_std, register_augmentation

for _m in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _m != "base" and not _m.startswith("_"):
        _importlib.import_module(f"{__name__}.{_m}")

globals().update(AUGMENTATIONS)
__all__ = ["AUGMENTATIONS", "BatchAugmentation", "match_mean_std", "register_augmentation", *AUGMENTATIONS]
