"""Has a training reached its plateau? nnU-Net's EMA pseudo-Dice over the last epochs.

nnU-Net logs every epoch's pseudo-Dice on its validation batches and its exponential moving average
``ema_t = 0.9·ema_(t-1) + 0.1·dice_t`` (``ema_fg_dice``, stored in every checkpoint under ``logging``;
the curve of ``progress.png``). A training of ``E`` epochs counts as **converged** when that EMA moves by
less than ``tol`` (default 0.01) over the last ``window`` (default 20 %) of its epochs: the range
(max − min) of the EMA over its last ``k + 1`` values, ``k = ceil(window · E)``, i.e. over the last ``k``
epoch-to-epoch steps. With fewer than ``1 / window`` epochs (5 at 20 %) the window is under one epoch's
worth of evidence and the answer is ``None`` (not determined), never ``True``. A curve that ends below ``tol``
is flat because the network still predicts (almost) no foreground -- on the 3D phantom at a coarse plan an
augmenting trainer stayed at pseudo-Dice 0 for more than 60 of 90 epochs -- so it is never a plateau:
``converged`` is ``False`` and ``no_foreground`` is ``True``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["plateau", "training_curve", "fold_convergence"]


def plateau(ema: Sequence[float], window: float = 0.2, tol: float = 0.01) -> dict:
    """``{"converged": bool | None, "change": float | None, "no_foreground": bool | None, "epochs": E,
    "window_epochs": k}`` for an EMA curve (one value per epoch, in order; NaN values, e.g. epochs without
    validation, are dropped). ``no_foreground``: the EMA ends below ``tol`` (then ``converged`` is ``False``)."""
    if not 0 < window <= 1:
        raise ValueError(f"window must be in (0, 1], got {window}")
    values = [float(v) for v in ema if v is not None and math.isfinite(float(v))]
    n = len(values)
    k = math.ceil(window * n) if n else 0
    if n < math.ceil(1 / window) or k < 1:
        return {"converged": None, "change": None, "no_foreground": None, "epochs": n, "window_epochs": k}
    last = values[-(k + 1):]
    change = max(last) - min(last)
    no_foreground = bool(values[-1] < tol)
    return {"converged": bool(change < tol and not no_foreground), "change": change, "no_foreground": no_foreground,
            "epochs": n, "window_epochs": k}


def training_curve(fold_dir) -> list:
    """The EMA pseudo-Dice per epoch of the nnU-Net training in ``fold_dir`` (from ``checkpoint_final.pth``,
    else ``checkpoint_latest.pth``); ``[]`` when neither exists or it holds no log."""
    import torch

    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        path = Path(fold_dir) / name
        if path.is_file():
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            return [float(v) for v in (ckpt.get("logging") or {}).get("ema_fg_dice", [])]
    return []


def fold_convergence(fold_dir, window: float = 0.2, tol: float = 0.01) -> dict:
    """:func:`plateau` of the training in ``fold_dir``."""
    return plateau(training_curve(fold_dir), window=window, tol=tol)
