"""Out-of-domain evaluation (``nnunet-rc evaluate`` / ``nnunet-rc benchmark``).

Python API::

    from nnunet_rc.evaluation import evaluate_folder
    result = evaluate_folder(pred_dir, ref_dir, dataset_json=None, mask_dir=None, groups=None,
                             lesion=False, out_dir=None)
    result["foreground_mean"]["Dice"]   # float, mean over foreground labels/regions
    result["per_label"]                 # {label_name: {"Dice": .., "HD95": .., ...}}
    result["per_case"]                  # [{"case": id, ...}, ...]
    result["groups"]                    # {group: {...}, "average": {...}} when groups is given
"""
from __future__ import annotations

from .evaluate import evaluate_folder  # noqa: F401

__all__ = ["evaluate_folder"]
