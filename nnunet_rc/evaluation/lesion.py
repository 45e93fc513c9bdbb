"""Lesion-wise detection (e.g. MS lesions) by connected components.

Masks are boolean arrays ``(X, Y[, Z])``. Rules (spec silent, chosen here):
- Components by ``scipy.ndimage.label`` with full connectivity (8-neighbourhood in 2D, 26 in 3D).
- Components with fewer than ``min_size`` voxels are dropped from both reference and prediction
  before anything is counted (voxel Dice is computed separately, on the unfiltered masks).
- A reference lesion is *detected* when the fraction of its voxels covered by predicted voxels is
  ``> overlap`` (default 0: any overlapping voxel). A predicted lesion is a *true positive* when
  the fraction of its voxels inside the reference is ``> overlap``; otherwise it is a false positive.
  So one reference lesion predicted as two pieces counts 1 detected and 2 true predicted lesions.
- ``TPR = detected / n_ref``, ``PPV = true predicted / n_pred``, ``F1 = 2 TPR PPV / (TPR + PPV)``.
  With no reference lesions TPR is undefined (``None``) and the case is reported as an empty-ref case
  (only its false-positive count is meaningful); with no predicted lesions PPV is ``None``.
  F1 is ``None`` for empty-reference cases, 0 when lesions exist but none is predicted.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def components(mask: np.ndarray, min_size: int = 0):
    """``(labelled, sizes)`` of the full-connectivity components of ``mask`` with >= ``min_size`` voxels,
    relabelled 1..n."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    structure = np.ones((3,) * mask.ndim, bool)
    lab, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return lab, np.zeros(0, np.int64)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes >= max(min_size, 1)) + 1
    remap = np.zeros(n + 1, lab.dtype)
    remap[keep] = np.arange(1, len(keep) + 1)
    return remap[lab], sizes[keep - 1]


def _covered_fraction(lab: np.ndarray, sizes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each component 1..n of ``lab``: fraction of its voxels that lie in ``other``."""
    if len(sizes) == 0:
        return np.zeros(0)
    hit = np.bincount(lab[other & (lab > 0)].ravel(), minlength=len(sizes) + 1)[1:]
    return hit / sizes


def lesion_metrics(mask_ref: np.ndarray, mask_pred: np.ndarray, min_size: int = 0,
                   overlap: float = 0.0) -> dict:
    """Lesion counts and rates for one case (see module docstring)."""
    lab_ref, size_ref = components(mask_ref, min_size)
    lab_pred, size_pred = components(mask_pred, min_size)
    ref_f, pred_f = lab_ref > 0, lab_pred > 0
    detected = int(np.sum(_covered_fraction(lab_ref, size_ref, pred_f) > overlap))
    true_pred = int(np.sum(_covered_fraction(lab_pred, size_pred, ref_f) > overlap))
    n_ref, n_pred = len(size_ref), len(size_pred)
    tpr: Optional[float] = detected / n_ref if n_ref else None
    ppv: Optional[float] = true_pred / n_pred if n_pred else None
    if tpr is None:
        f1 = None
    elif ppv is None:  # reference lesions, no predicted lesion: everything missed
        f1 = 0.0
    else:
        f1 = 2 * tpr * ppv / (tpr + ppv) if (tpr + ppv) > 0 else 0.0
    return {"n_ref_lesions": n_ref, "n_pred_lesions": n_pred, "detected": detected, "missed": n_ref - detected,
            "true_pred": true_pred, "false_pos": n_pred - true_pred, "lesion_TPR": tpr, "lesion_PPV": ppv,
            "lesion_F1": f1}
