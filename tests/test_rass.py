"""RASS: the sigma grid, phase preservation, the amplitude-ratio distribution, the augmentation contract."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_rc.augment import AUGMENTATIONS, RASS
from nnunet_rc.augment.rass import rass_sigma_grid


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (8, 8, 8), (7, 9, 5), (6, 5, 8)])
def test_sigma_grid_dc_corner_and_half_grid(shape):
    alpha, beta, gamma = 3.0, 0.25, 2.0
    half = rass_sigma_grid(shape, alpha, beta, gamma, half=True)
    full = rass_sigma_grid(shape, alpha, beta, gamma, half=False)
    assert tuple(full.shape) == shape
    assert tuple(half.shape) == (*shape[:-1], shape[-1] // 2 + 1)
    assert half[(0,) * len(shape)].item() == pytest.approx(beta)
    # highest frequency: |k| = N/2 (even) or (N-1)/2 (odd) on every axis
    kmax = [n // 2 for n in shape]
    r = math.sqrt(sum(k * k for k in kmax) / sum(n * n for n in shape))
    expected = (2 * alpha * r) ** gamma + beta
    corner_full = tuple(n // 2 for n in shape)  # index of +-N//2 in fftfreq order
    assert full[corner_full].item() == pytest.approx(expected, rel=1e-6)
    assert full.max().item() == pytest.approx(expected, rel=1e-6)
    assert half[(*corner_full[:-1], shape[-1] // 2)].item() == pytest.approx(expected, rel=1e-6)
    if all(n % 2 == 0 for n in shape):
        assert expected == pytest.approx(alpha ** gamma + beta)
    # the half grid is the full-grid formula at the non-negative last-axis indices
    assert torch.allclose(half, full[..., : shape[-1] // 2 + 1])


def test_sigma_grid_one_off_value_by_hand():
    # 2D (8, 6): point (m, n) = (1, -2) -> r^2 = 5 / 100
    full = rass_sigma_grid((8, 6), 1.0, 0.5, 1.0, half=False)
    assert full[1, 4].item() == pytest.approx(2 * math.sqrt(0.05) + 0.5, rel=1e-6)


def _phase_close(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    d = torch.angle(a[mask]) - torch.angle(b[mask])
    return torch.atan2(torch.sin(d), torch.cos(d)).abs().max()


@pytest.mark.parametrize("shape", [(2, 3, 24, 20), (2, 2, 12, 10, 9), (1, 1, 11, 13)])
def test_output_keeps_phase_and_is_real_standardized(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).float() * 2 + 0.3
    y = RASS()(x, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.allclose(y, x)
    dims = tuple(range(2, x.ndim))
    assert torch.allclose(y.mean(dim=dims), x.mean(dim=dims), atol=1e-5)
    assert torch.allclose(y.std(dim=dims), x.std(dim=dims), atol=1e-4)
    fx = torch.fft.fftn(x.double(), dim=dims)
    fy = torch.fft.fftn(y.double(), dim=dims)
    mask = (fx.abs() > 1e-3 * fx.abs().amax()) & (fy.abs() > 1e-3 * fy.abs().amax())
    mask[(slice(None), slice(None), *([0] * len(dims)))] = False  # DC: re-standardization shifts it
    assert mask.float().mean() > 0.5
    assert _phase_close(fy, fx, mask) < 1e-3


def test_apply_scales_amplitude_by_abs_delta_exactly():
    aug = RASS()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 16, 12, generator=g)
    params = aug.get_parameters(x, g)
    y = aug.apply(x, params)
    dims = (2, 3)
    ratio = torch.fft.rfftn(y.double(), dim=dims).abs() / torch.fft.rfftn(x.double(), dim=dims).abs()
    assert torch.allclose(ratio, params["delta"].abs().double(), rtol=1e-3, atol=1e-4)


def test_delta_is_hermitian_symmetric_on_self_paired_planes():
    aug = RASS()
    x = torch.zeros(1, 1, 8, 6, 10)
    d = aug.get_parameters(x, torch.Generator().manual_seed(0))["delta"][0, 0]
    for plane in (0, 5):  # last-axis index 0 and N/2
        p = d[..., plane]
        neg = torch.roll(torch.flip(p, (0, 1)), (1, 1), (0, 1))
        assert torch.equal(p, neg)
    # independent elsewhere
    assert not torch.equal(d[1, 1, 1], d[7, 5, 1])


def _folded_normal_mean(mu: float, sigma: float) -> float:
    return sigma * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sigma * sigma)) + mu * math.erf(
        mu / (sigma * math.sqrt(2)))


def test_amplitude_ratio_matches_folded_normal_low_vs_high_frequency():
    """Mean of |FFT(out)| / |FFT(in)| (restandardization off) against E|N(1, sigma^2)|, at DC (sigma =
    beta) and at the highest frequency (sigma = alpha^gamma + beta), over many samples."""
    aug = RASS()
    aug.restandardize = False
    g = torch.Generator().manual_seed(123)
    x = torch.randn(4000, 1, 8, 8, generator=g) + 1.0
    y = aug(x, generator=g)
    fx = torch.fft.rfftn(x.double(), dim=(2, 3)).abs()
    fy = torch.fft.rfftn(y.double(), dim=(2, 3)).abs()
    ratio = (fy / fx)[:, 0]
    lo = ratio[:, 0, 0]
    hi = ratio[:, 4, 4]  # (N/2, N/2): sigma = 9.25
    for values, sigma in ((lo, 0.25), (hi, 3.0 ** 2 + 0.25)):
        expected = _folded_normal_mean(1.0, sigma)
        std = math.sqrt(1 + sigma ** 2 - expected ** 2)
        assert values.mean().item() == pytest.approx(expected, abs=4 * std / math.sqrt(values.numel()))
    # a general point, (1, 2): sigma = (6 sqrt(5/128))^2 + 0.25
    mid = ratio[:, 1, 2]
    sigma = (6 * math.sqrt(5 / 128)) ** 2 + 0.25
    expected = _folded_normal_mean(1.0, sigma)
    std = math.sqrt(1 + sigma ** 2 - expected ** 2)
    assert mid.mean().item() == pytest.approx(expected, abs=4 * std / math.sqrt(mid.numel()))


def test_constant_image_and_p_zero_and_dtype():
    x = torch.full((2, 1, 8, 8, 8), 3.0)
    y = RASS()(x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all() and torch.allclose(y, x)
    z = torch.randn(2, 2, 16, 16)
    assert torch.equal(RASS(p=0.0)(z), z)
    h = RASS()(z.half(), generator=torch.Generator().manual_seed(0))
    assert h.dtype == torch.float16 and torch.isfinite(h).all()


def test_reproducible_with_generator_and_registered():
    x = torch.randn(2, 1, 16, 16)
    a = RASS()(x, generator=torch.Generator().manual_seed(5))
    b = RASS()(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert AUGMENTATIONS["RASS"] is RASS


def test_same_on_batch_gives_same_transform():
    x = torch.randn(1, 1, 16, 16).expand(3, -1, -1, -1).contiguous()
    y = RASS(same_on_batch=True)(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(y[0], y[1]) and torch.allclose(y[0], y[2])
