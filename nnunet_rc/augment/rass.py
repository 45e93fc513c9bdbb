"""RASS — Random Amplitude Spectrum Synthesis (RAS4DG, Eq. (1)-(2)).

Per sample and channel: ``F = FFT(x)`` over the spatial axes, amplitude ``A = |F|``, phase
``P = angle(F)``; ``A' = |delta| * A`` with ``delta ~ N(1, sigma^2)`` drawn per frequency;
``x' = IFFT(A' e^{iP})``. The frequency-dependent scale is

    sigma(m, n, p) = (2 * alpha * r) ** gamma + beta,   r = sqrt((m^2 + n^2 + p^2) / (H^2 + W^2 + D^2))

with signed, centred indices ``fftfreq(N) * N``: ``sigma(DC) = beta`` and, for even sizes,
``sigma(corner) = alpha ** gamma + beta`` (``r = 0.5``). See ``shared/docs/methods.md`` for why we read
Eq. (2) with the square root.

Decisions where the paper is silent:

* Computed with ``rfftn``/``irfftn`` over the spatial axes (real input, half the work); the last axis
  holds the non-negative indices ``rfftfreq(N) * N`` and sigma there is the full-grid formula.
* ``delta`` is drawn once per frequency *pair* ``{k, -k}`` (``delta(k) = delta(-k)``): this keeps the
  modified spectrum Hermitian, so ``x'`` is exactly real and its phase is exactly the input's (an
  independent draw at ``k`` and ``-k`` would make the inverse FFT complex). On the half grid this only
  concerns the planes ``last index = 0`` (and ``N/2`` for even ``N``).
* Multiplication by ``|delta| >= 0`` keeps the phase wherever ``delta != 0``.
* The output is re-standardized to the input's per-sample/channel mean and std (base class).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .base import BatchAugmentation, randn, register_augmentation

__all__ = ["RASS", "rass_sigma_grid"]


def rass_sigma_grid(spatial_shape: Sequence[int], alpha: float = 3.0, beta: float = 0.25, gamma: float = 2.0,
                    half: bool = True, device: Optional[torch.device] = None) -> torch.Tensor:
    """``sigma(m, n[, p]) = (2 alpha r)^gamma + beta`` on the frequency grid of ``spatial_shape``.

    ``half=True``: the ``rfftn`` grid (last axis ``N // 2 + 1`` non-negative indices ``rfftfreq(N) * N``);
    ``half=False``: the full ``fftn`` grid (indices ``fftfreq(N) * N``). Returns float32 of that shape.
    """
    shape = [int(s) for s in spatial_shape]
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"spatial_shape must be non-empty positive sizes, got {spatial_shape}")
    axes = []
    for i, n in enumerate(shape):
        if half and i == len(shape) - 1:
            k = torch.fft.rfftfreq(n, d=1.0 / n, device=device)
        else:
            k = torch.fft.fftfreq(n, d=1.0 / n, device=device)
        axes.append(k.double())
    grids = torch.meshgrid(*axes, indexing="ij")
    r = torch.sqrt(sum(g ** 2 for g in grids) / float(sum(n ** 2 for n in shape)))
    return ((2.0 * alpha * r) ** gamma + beta).float()


def _negate_index(t: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """``t[..., (-i) mod N, ...]`` along ``dims`` (the value at the conjugate frequency)."""
    return torch.roll(torch.flip(t, dims=list(dims)), shifts=[1] * len(dims), dims=list(dims))


def _hermitian_normal(shape: Sequence[int], spatial: Sequence[int], generator, device) -> torch.Tensor:
    """``N(0, 1)`` on the rfft grid ``shape = (n, C, *half)`` with ``z(k) = z(-k)`` on the self-paired
    planes of the last axis (index 0 and, for even N, N/2); independent everywhere else."""
    z = randn(shape, generator, device)
    lead = list(range(2, 2 + len(spatial) - 1))  # full-grid spatial axes of the half spectrum
    n_last = int(spatial[-1])
    planes = [0] + ([n_last // 2] if n_last % 2 == 0 and n_last > 1 else [])
    # points equal to their own conjugate inside a plane: every leading index is 0 or N/2
    selfconj = torch.ones([int(s) for s in spatial[:-1]], dtype=torch.bool, device=device)
    for j, n in enumerate(spatial[:-1]):
        idx = torch.arange(int(n), device=device)
        ok = (idx == 0) | ((idx * 2) == n)
        view = [1] * (len(spatial) - 1)
        view[j] = int(n)
        selfconj = selfconj & ok.view(view)
    for pl in planes:
        zp = z[..., pl]
        sym = (zp + _negate_index(zp, lead)) / math.sqrt(2.0) if lead else zp
        z[..., pl] = torch.where(selfconj, zp, sym)
    return z


@register_augmentation
class RASS(BatchAugmentation):
    """Random Amplitude Spectrum Synthesis: random, frequency-dependent scaling of the amplitude spectrum.

    Args:
        alpha, beta, gamma: sigma schedule ``(2 alpha r)^gamma + beta`` (paper: 3.0, 0.25, 2.0).
        p: probability per sample (paper: 1.0). Other args: see :class:`BatchAugmentation`.

    Input ``(B, C, X, Y[, Z])`` float; output same shape/dtype/device, real, finite, with each
    sample/channel's input mean and std. ``get_parameters`` returns ``{"delta": (n, C, *half_grid)}``
    (half grid: last spatial axis ``Z // 2 + 1``); ``apply`` multiplies the ``rfftn`` spectrum by
    ``|delta|``.

    Example::

        >>> x = torch.randn(2, 1, 64, 64)
        >>> RASS()(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, alpha: float = 3.0, beta: float = 0.25, gamma: float = 2.0, p: float = 1.0,
                 same_on_batch: bool = False, keep_background: bool = False):
        super().__init__(p=p, same_on_batch=same_on_batch, keep_background=keep_background)
        if beta < 0 or alpha < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def sigma_grid(self, spatial_shape: Sequence[int], device=None) -> torch.Tensor:
        """sigma on the ``rfftn`` grid of ``spatial_shape`` (see :func:`rass_sigma_grid`)."""
        return rass_sigma_grid(spatial_shape, self.alpha, self.beta, self.gamma, half=True, device=device)

    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        spatial = list(x.shape[2:])
        sigma = self.sigma_grid(spatial, device=x.device)
        shape = (x.shape[0], x.shape[1], *sigma.shape)
        z = _hermitian_normal(shape, spatial, generator, x.device)
        return {"delta": 1.0 + sigma * z}

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        spec = torch.fft.rfftn(x.float(), dim=dims)
        spec = spec * params["delta"].abs().to(spec.real.dtype)
        return torch.fft.irfftn(spec, s=x.shape[2:], dim=dims)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, " + super().extra_repr()
