"""``nnunet-rc doctor``: check that nnU-Net and the plugin are set up, and say how to fix what is not."""
from __future__ import annotations

import contextlib
import io
import os

COMMAND = "doctor"
HELP = "check the nnU-Net set-up (version, path variables, nnUNet_extTrainer, trainer lookup, CUDA)"

MIN_NNUNET, MAX_NNUNET = (2, 8, 1), (2, 9)


def add_arguments(parser) -> None:
    pass


def _version_tuple(text: str):
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def run_checks():
    """Yield ``(ok, message)`` pairs; ``ok`` is True, False (a problem) or None (information)."""
    from importlib.metadata import PackageNotFoundError, version

    from nnunet_rc import trainer_path

    try:
        v = version("nnunetv2")
    except PackageNotFoundError:
        yield False, "nnunetv2 is not installed: pip install 'nnunetv2>=2.8.1,<2.9'"
        return
    ok = MIN_NNUNET <= _version_tuple(v) < MAX_NNUNET
    yield ok, (f"nnunetv2 {v}" if ok else f"nnunetv2 {v}: nnunet_rc needs >=2.8.1,<2.9 "
               "(2.8 is the first with nnUNet_extTrainer): pip install 'nnunetv2>=2.8.1,<2.9'")

    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        value = os.environ.get(var)
        if not value:
            yield False, f"{var} is not set: export {var}=/path/to/{var} (see nnU-Net's documentation/setting_up_paths.md)"
        elif not os.path.isdir(value):
            yield False, f"{var}={value} does not exist: mkdir -p {value}"
        else:
            yield True, f"{var}={value}"

    folder = trainer_path()
    ext = os.environ.get("nnUNet_extTrainer")
    if not ext:
        yield False, ("nnUNet_extTrainer is not set, so nnUNetv2_train/nnUNetv2_predict cannot find the nnunet_rc "
                      "trainers: export nnUNet_extTrainer=$(nnunet-rc trainer-path)")
        listed = False
    else:
        entries = [os.path.realpath(p) for p in ext.split(os.pathsep) if p.strip()]
        listed = os.path.realpath(folder) in entries
        if not listed:
            yield False, (f"nnUNet_extTrainer={ext} does not contain {folder}: "
                          "export nnUNet_extTrainer=$(nnunet-rc trainer-path)")
        else:
            yield True, f"nnUNet_extTrainer contains {folder}"
        for entry in entries:
            if os.path.basename(entry) in ("site-packages", "dist-packages"):
                yield False, (f"nnUNet_extTrainer lists {entry}: nnU-Net would import every module there; "
                              "list only $(nnunet-rc trainer-path)")

    if listed:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        import nnunet_rc.trainers as family

        missing = []
        for name in family.__all__:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    found = recursive_find_trainer_class_by_name(name)
            except Exception as e:  # nnU-Net raises RuntimeError when not found
                missing.append(f"{name} ({type(e).__name__})")
                continue
            if found.__module__ != getattr(family, name).__module__:
                missing.append(f"{name} (resolved to {found.__module__}.{found.__qualname__}, a name clash)")
        if missing:
            yield False, "trainers not found through nnU-Net's lookup: " + ", ".join(missing)
        else:
            yield True, f"all {len(family.__all__)} nnunet_rc trainers found through nnU-Net's lookup"

    import torch

    if torch.cuda.is_available():
        yield None, f"CUDA available: {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    else:
        yield None, (f"CUDA not available (torch {torch.__version__}): training runs on CPU "
                     "(nnUNetv2_train ... -device cpu), which is only practical for tiny datasets")


def run(args) -> int:
    problems = 0
    for ok, message in run_checks():
        tag = {True: "[ok]  ", False: "[FAIL]", None: "[info]"}[ok]
        problems += ok is False
        print(f"{tag} {message}")
    print(f"{problems} problem(s) found" if problems else "all checks passed")
    return 1 if problems else 0
