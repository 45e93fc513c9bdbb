"""nnU-Net trainers of the nnunet_rc family (installed as ``nnunet_rc.trainers``).

Every ``nnUNetTrainer*`` class defined in a module of this package is collected here and listed in
``__all__``; nnU-Net finds them through ``export nnUNet_extTrainer=$(nnunet-rc trainer-path)``.
"""
import importlib as _importlib
import inspect as _inspect
import pkgutil as _pkgutil

__all__ = []
for _m in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _m.startswith("_"):
        continue
    _module = _importlib.import_module(f"{__name__}.{_m}")
    for _name, _obj in vars(_module).items():
        if (_name.startswith("nnUNetTrainer") and _inspect.isclass(_obj) and _obj.__module__ == _module.__name__):
            globals()[_name] = _obj
            __all__.append(_name)
__all__.sort()
