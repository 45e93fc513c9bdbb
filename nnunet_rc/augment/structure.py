"""How much of the input's structure an augmented image keeps: the structure score.

``structure_score(x, y)`` is, per sample, the Pearson correlation between the **edge maps** of ``x``
and ``y``: the gradient magnitude ``|∇ G_s * h|`` (central differences after a small Gaussian blur
``G_s``, ``s = 1`` voxel, that keeps anatomy edges and damps pixel noise), summed over channels.

* Range ``[-1, 1]``; ``1``: the edges are where they were, in the same proportions; ``≈ 0``: the edge
  map has nothing to do with the input's (a checkerboard, pure noise, a flat image).
* Invariant to what the intensity augmentations are meant to change: any affine intensity map per
  channel, contrast inversion included (``|∇(-h)| = |∇h|``), and to per-sample scaling.
* A draw with a score below :data:`COLLAPSE_THRESHOLD` (0.3) counts as **collapsed**: the structure the
  label describes is no longer visible in it. (Chosen on the preview images: draws under 0.3 show no
  vessel to a reader; draws above 0.5 show every major vessel.)

Shapes: ``x``, ``y`` of shape ``(B, C, X, Y)`` or ``(B, C, X, Y, Z)`` (``C`` may differ between them,
e.g. an RGB input and a 1-channel output); returns ``(B,)`` float32 on the input's device. Constant
images (no edges at all) score 0. Pure torch, batched, no gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["structure_score", "edge_map", "COLLAPSE_THRESHOLD", "collapse_share"]

#: a draw whose structure score is below this has lost the input's structure
COLLAPSE_THRESHOLD = 0.3


def _gaussian_blur(h: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of ``(B, C, *S)`` (reflect padding, radius 2σ)."""
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, device=h.device, dtype=h.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    b, c = h.shape[:2]
    spatial = h.shape[2:]
    d = len(spatial)
    conv = F.conv2d if d == 2 else F.conv3d
    out = h.reshape(b * c, 1, *spatial)
    for axis in range(d):
        if spatial[axis] <= radius:
            continue
        shape = [1, 1] + [1] * d
        shape[2 + axis] = k.numel()
        pad = [0, 0] * d
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="reflect"), k.view(shape))
    return out.reshape(b, c, *spatial)


def edge_map(h: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gradient magnitude of the blurred image, summed over channels: ``(B, C, *S)`` -> ``(B, *S)``.
    Each channel is standardized first so no channel dominates by its scale."""
    h = h.float()
    dims = tuple(range(2, h.ndim))
    h = (h - h.mean(dims, keepdim=True)) / h.std(dims, keepdim=True).clamp_min(1e-8)
    h = _gaussian_blur(h, sigma)
    g2 = torch.zeros_like(h)
    for axis in range(2, h.ndim):
        g2 = g2 + torch.gradient(h, dim=axis)[0] ** 2
    return g2.sqrt().sum(1)


@torch.no_grad()
def structure_score(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Pearson correlation of the edge maps of ``x`` and ``y`` per sample, ``(B,)`` in ``[-1, 1]``."""
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"structure_score: x {tuple(x.shape)} and y {tuple(y.shape)} must share batch and "
                         "spatial size")
    ex = edge_map(x, sigma).flatten(1)
    ey = edge_map(y, sigma).flatten(1)
    ex = ex - ex.mean(1, keepdim=True)
    ey = ey - ey.mean(1, keepdim=True)
    den = ex.norm(dim=1) * ey.norm(dim=1)
    return torch.where(den > 1e-12, (ex * ey).sum(1) / den.clamp_min(1e-12), torch.zeros_like(den))


def collapse_share(scores: torch.Tensor, threshold: float = COLLAPSE_THRESHOLD) -> float:
    """Fraction of draws whose score is below ``threshold``."""
    return float((scores < threshold).float().mean())
