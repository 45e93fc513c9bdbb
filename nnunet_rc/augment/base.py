"""Common contract of the batched, on-device augmentations.

Every augmentation follows the batchgeneratorsv2 split (draw everything random first, then apply a
deterministic function) with Kornia's batched habit (per-sample parameters as tensors with a leading
batch dimension, one vectorized call, no Python loop over samples):

* ``get_parameters(x, generator)`` draws the random parameters for the ``n`` samples of ``x``
  (shape ``(n, C, *spatial)``) and returns a plain dict; tensors in it carry a leading dimension ``n``.
* ``apply(x, params)`` is a deterministic function of image and parameters.

``forward`` adds what all of them share (see ``../shared/docs/methods.md``): probability ``p`` per
sample, ``same_on_batch``, fp32 computation under no_grad with autocast off, re-standardization of the
output to each sample/channel's input mean and std, the optional ``keep_background`` rule for data
normalized inside a nonzero mask, and dtype/device preservation.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn

__all__ = [
    "AUGMENTATIONS",
    "BatchAugmentation",
    "register_augmentation",
    "match_mean_std",
    "rand",
    "randn",
    "randint",
]

#: name -> augmentation class, filled by :func:`register_augmentation` (used by the CLI preview and
#: the benchmarks).
AUGMENTATIONS: Dict[str, type] = {}


def register_augmentation(cls: type) -> type:
    """Class decorator: make an augmentation known to ``nnunet-rc preview`` and the benchmarks."""
    AUGMENTATIONS[cls.__name__] = cls
    return cls


# --- random draws on the generator's device, returned on the data's device --------------------------

def _gen_device(generator: Optional[torch.Generator], device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def rand(shape: Sequence[int], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """``U(0, 1)`` float32 samples of ``shape``; drawn where ``generator`` lives, returned on ``device``."""
    out = torch.rand(tuple(shape), generator=generator, device=_gen_device(generator, device))
    return out.to(device)


def randn(shape: Sequence[int], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """``N(0, 1)`` float32 samples of ``shape``; drawn where ``generator`` lives, returned on ``device``."""
    out = torch.randn(tuple(shape), generator=generator, device=_gen_device(generator, device))
    return out.to(device)


def randint(low: int, high: int, shape: Sequence[int], generator: Optional[torch.Generator],
            device: torch.device) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` (int64) of ``shape``, returned on ``device``."""
    out = torch.randint(low, high, tuple(shape), generator=generator, device=_gen_device(generator, device))
    return out.to(device)


# --- statistics ---------------------------------------------------------------------------------------

def _masked_mean_std(x: torch.Tensor, mask: Optional[torch.Tensor]):
    """Per-sample, per-channel mean and std of ``x`` (B, C, *S) over the spatial axes (inside ``mask``)."""
    dims = tuple(range(2, x.ndim))
    if mask is None:
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    else:
        m = mask.to(x.dtype)
        count = m.sum(dim=dims, keepdim=True).clamp_min(1.0)
        mean = (x * m).sum(dim=dims, keepdim=True) / count
        var = (((x - mean) * m) ** 2).sum(dim=dims, keepdim=True) / count
    return mean, var.clamp_min(0).sqrt()


def match_mean_std(out: torch.Tensor, ref: torch.Tensor, mask: Optional[torch.Tensor] = None,
                   eps: float = 1e-6) -> torch.Tensor:
    """Re-standardize ``out`` so each sample/channel has the mean and std of ``ref``.

    ``out``, ``ref``: ``(B, C, *spatial)``; ``mask``: optional bool ``(B, 1, *spatial)`` restricting the
    statistics (and only the statistics) to a region. A constant ``out`` becomes the constant ``ref``
    mean; nothing divides by zero, so the result is finite whenever the inputs are.
    """
    mu_o, sd_o = _masked_mean_std(out, mask)
    mu_r, sd_r = _masked_mean_std(ref, mask)
    scale = torch.where(sd_o > eps, sd_r / sd_o.clamp_min(eps), torch.zeros_like(sd_o))
    return (out - mu_o) * scale + mu_r


class BatchAugmentation(nn.Module):
    """Base class of the batched augmentations (RandConv, RASS, RMS, ...).

    Args:
        p: probability that a sample is augmented (drawn per sample; ``p=0`` is the identity).
        same_on_batch: draw one parameter set and use it for every augmented sample.
        keep_background: for data normalized inside a nonzero mask (nnU-Net's ``use_mask_for_norm``,
            background exactly 0 in every channel): leave background voxels at their input value and
            compute the re-standardization statistics over the foreground only.

    Input ``x``: float tensor ``(B, C, X, Y)`` or ``(B, C, X, Y, Z)`` on any device. Output: same shape,
    dtype and device. Runs without gradient and in fp32 even inside ``torch.autocast``.
    Subclasses implement :meth:`get_parameters` and :meth:`apply` and may set ``restandardize = False``.
    """

    restandardize: bool = True

    def __init__(self, p: float = 0.5, same_on_batch: bool = False, keep_background: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)
        self.same_on_batch = bool(same_on_batch)
        self.keep_background = bool(keep_background)

    # -- to implement -----------------------------------------------------------------------------------
    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        """Draw the random parameters for the ``x.shape[0]`` samples of ``x`` (fp32, on ``x.device``)."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """Deterministic transform of ``x`` (fp32) given ``params`` from :meth:`get_parameters`."""
        raise NotImplementedError

    # -- shared mechanics -------------------------------------------------------------------------------
    def _expand_params(self, params: dict, n: int) -> dict:
        """Broadcast a parameter set drawn for one sample to ``n`` samples (``same_on_batch``)."""
        out = {}
        for k, v in params.items():
            if torch.is_tensor(v) and v.ndim >= 1 and v.shape[0] == 1:
                out[k] = v.expand(n, *v.shape[1:]).contiguous()
            else:
                out[k] = v
        return out

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if x.ndim not in (4, 5):
            raise ValueError(f"{type(self).__name__} expects (B, C, X, Y) or (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"{type(self).__name__} expects a floating point tensor, got {x.dtype}")
        b = x.shape[0]
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            if self.p >= 1.0:
                idx = None
            else:
                chosen = rand((b,), generator, x.device) < self.p
                if not bool(chosen.any()):
                    return x
                idx = None if bool(chosen.all()) else chosen.nonzero().squeeze(1)
            xs = (x if idx is None else x[idx]).float()
            n = xs.shape[0]
            if self.same_on_batch:
                params = self._expand_params(self.get_parameters(xs[:1], generator), n)
            else:
                params = self.get_parameters(xs, generator)
            out = self.apply(xs, params)
            fg = (xs != 0).any(dim=1, keepdim=True) if self.keep_background else None
            if self.restandardize:
                out = match_mean_std(out, xs, fg)
            if fg is not None:
                out = torch.where(fg, out, xs)
            out = torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).to(x.dtype)
            if idx is None:
                return out
            result = x.clone()
            result[idx] = out
            return result

    def extra_repr(self) -> str:
        return f"p={self.p}, same_on_batch={self.same_on_batch}, keep_background={self.keep_background}"
