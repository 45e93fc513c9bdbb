"""Paired per-case statistics of a trainer against the baseline (``nnunet-rc benchmark``).

Decision: every case's metric is first averaged over the folds (seeds) a trainer was run with, so each
case contributes one value per trainer; the trainer and the baseline are then paired by case id and
compared with scipy's two-sided Wilcoxon signed-rank test. Cases without a finite value for either
trainer are dropped from the pair. The p-value is ``None`` ("n/a" in tables) when fewer than
:data:`MIN_PAIRS` pairs remain or every difference is zero (the test is undefined there).
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional

import numpy as np

MIN_PAIRS = 6


def case_values(per_case: Iterable[dict], metric: str) -> Dict[str, float]:
    """``{case: value}`` from ``evaluate_folder(...)["per_case"]``: ``Dice_mean`` for Dice, the mean of the
    finite per-label ``HD95_<label>`` values for HD95 (NaN when none is finite)."""
    out = {}
    for rec in per_case:
        if metric == "Dice":
            v = rec.get("Dice_mean")
        else:
            vals = [x for k, x in rec.items() if k.startswith("HD95_") and k[5:] not in ("one_empty", "both_empty")
                    and isinstance(x, (int, float)) and math.isfinite(x)]
            v = float(np.mean(vals)) if vals else math.nan
        out[rec["case"]] = math.nan if v is None else float(v)
    return out


def fold_mean(per_fold: List[Dict[str, float]]) -> Dict[str, float]:
    """Average each case over folds (ignoring non-finite values); cases missing in a fold are averaged over
    the folds that have them."""
    cases = sorted(set().union(*per_fold)) if per_fold else []
    out = {}
    for c in cases:
        vals = [f[c] for f in per_fold if c in f and math.isfinite(f[c])]
        out[c] = float(np.mean(vals)) if vals else math.nan
    return out


def paired_test(trainer: Dict[str, float], baseline: Dict[str, float]) -> dict:
    """``{"n", "mean_diff", "p"}`` of trainer − baseline over the cases both have finite values for."""
    from scipy.stats import wilcoxon

    cases = sorted(c for c in set(trainer) & set(baseline)
                   if math.isfinite(trainer[c]) and math.isfinite(baseline[c]))
    diff = np.array([trainer[c] - baseline[c] for c in cases], dtype=np.float64)
    res = {"n": len(cases), "mean_diff": float(diff.mean()) if len(cases) else None, "p": None}
    if len(cases) >= MIN_PAIRS and np.any(diff != 0):
        res["p"] = float(wilcoxon(diff).pvalue)
    return res
