"""Network blocks (pure PyTorch), e.g. RAS4DG's RSD bottleneck.

:data:`BLOCKS` maps a block name to a factory ``(channels: int, conv_op: type) -> nn.Module`` (a
shape-keeping block); the benchmarks time every registered block. Every module of this package is
imported here so the registry is complete.
"""
import importlib as _importlib
import pkgutil as _pkgutil
from typing import Callable, Dict

BLOCKS: Dict[str, Callable] = {}

for _m in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if not _m.startswith("_"):
        _importlib.import_module(f"{__name__}.{_m}")
