"""Voxel metrics: Dice/IoU (nnU-Net's own counting) and HD95 (SimpleITK distance maps).

Arrays are label maps of identical shape ``(X, Y[, Z])`` (any integer dtype); ``spacing`` is the
physical voxel size in the same axis order as the array.

Decisions (spec silent):
- Dice ``= 2TP / (2TP + FP + FN)`` counted by ``nnunetv2.evaluation.evaluate_predictions.
  compute_tp_fp_fn_tn``; NaN when reference and prediction are both empty (nnU-Net's convention;
  means use ``nanmean``, so such cases do not count).
- HD95: surface voxels of a mask are mask voxels with a background face-neighbour (or on the image
  border). For each surface voxel of A, the distance to the nearest surface voxel of B is read from
  ``max(sitk.SignedMaurerDistanceMap(surface_B), 0)`` (physical spacing; voxels of the
  surface itself are 0); HD95 is the 95th percentile
  (numpy's linear interpolation) of the union of A->B and B->A distances.
  Both masks empty -> HD95 is not defined (``None``, excluded from means). Exactly one empty ->
  ``NaN`` (excluded from means too, but counted in ``HD95_one_empty`` so it is visible).
- Voxels of the reference's ignore label are excluded from Dice (nnU-Net's rule) and are removed
  from the prediction mask before distances are computed.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

LabelOrRegion = Union[int, Tuple[int, ...]]


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface of a boolean mask: voxels with at least one background face-neighbour."""
    from scipy import ndimage

    if not mask.any():
        return mask.copy()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _distance_to(surface_mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Physical distance of every voxel to the nearest voxel of ``surface_mask`` (SimpleITK Maurer)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(surface_mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in reversed(list(spacing))))  # sitk order is reversed numpy order
    dist = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(dist), 0.0)  # surface voxels (negative inside) -> 0


def hd95(mask_ref: np.ndarray, mask_pred: np.ndarray, spacing: Optional[Sequence[float]] = None,
         percentile: float = 95.0) -> Optional[float]:
    """Symmetric 95th-percentile Hausdorff distance between two boolean masks (physical units).

    Returns ``None`` when both masks are empty and ``nan`` when exactly one is empty.
    """
    mask_ref = np.asarray(mask_ref, bool)
    mask_pred = np.asarray(mask_pred, bool)
    if mask_ref.shape != mask_pred.shape:
        raise ValueError(f"shape mismatch: reference {mask_ref.shape} vs prediction {mask_pred.shape}")
    spacing = [1.0] * mask_ref.ndim if spacing is None else list(spacing)
    has_ref, has_pred = mask_ref.any(), mask_pred.any()
    if not has_ref and not has_pred:
        return None
    if not has_ref or not has_pred:
        return math.nan
    s_ref, s_pred = surface(mask_ref), surface(mask_pred)
    d = np.concatenate([_distance_to(s_ref, spacing)[s_pred], _distance_to(s_pred, spacing)[s_ref]])
    return float(np.percentile(d, percentile))


def label_metrics(seg_ref: np.ndarray, seg_pred: np.ndarray, labels_or_regions: Sequence[LabelOrRegion],
                  ignore_label: Optional[int] = None, spacing: Optional[Sequence[float]] = None,
                  compute_hd95: bool = True) -> dict:
    """Per label/region: Dice, IoU, TP, FP, FN, n_ref, n_pred, HD95 (see module docstring)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn, region_or_label_to_mask

    if seg_ref.shape != seg_pred.shape:
        raise ValueError(f"shape mismatch: reference {seg_ref.shape} vs prediction {seg_pred.shape}")
    ignore_mask = (seg_ref == ignore_label) if ignore_label is not None else None
    out = {}
    for r in labels_or_regions:
        m_ref = region_or_label_to_mask(seg_ref, r)
        m_pred = region_or_label_to_mask(seg_pred, r)
        tp, fp, fn, _ = (int(v) for v in compute_tp_fp_fn_tn(m_ref, m_pred, ignore_mask))
        denom = 2 * tp + fp + fn
        res = {"Dice": (2 * tp / denom) if denom else math.nan,
               "IoU": (tp / (tp + fp + fn)) if denom else math.nan,
               "TP": tp, "FP": fp, "FN": fn, "n_ref": tp + fn, "n_pred": tp + fp}
        if compute_hd95:
            if ignore_mask is not None:
                m_ref = m_ref & ~ignore_mask
                m_pred = m_pred & ~ignore_mask
            res["HD95"] = hd95(m_ref, m_pred, spacing)
        out[r] = res
    return out
