"""RSD — RAS4DG's reconstruction design at the bottleneck (Sec. 2.2, Fig. 3).

``out = F + CRU(SRU(F))`` for the deepest encoder feature map ``F`` of shape ``(B, C, *spatial)``
(2D or 3D, chosen by ``conv_op``). The residual makes the block start close to the identity path.

* **SRU** (spatial reconstruction unit, "separate and reconstruct"): ``G = GroupNorm(g, C)(F)``,
  ``w = gamma / sum(gamma)`` from the GroupNorm's learnable per-channel scale, ``R = sigmoid(G * w)``;
  ``W1 = where(R > 0.5, 1, R)`` (informative), ``W2 = where(R > 0.5, 0, R)`` (redundant);
  ``X1 = W1 * F``, ``X2 = W2 * F``; cross reconstruction ``[X1a + X2b, X1b + X2a]`` (halves a/b).
* **CRU** (channel reconstruction unit, "divide - transform - merge"): split ``alpha*C`` /
  ``(1-alpha)*C`` channels (``alpha = 1/2``), squeeze each with a 1x1 conv (ratio 2); upper:
  ``Y1 = DW3(up) + PW(up)`` (a k=3 depth-wise conv and a point-wise conv, both to ``C`` channels, summed
  as in SCConv); lower: ``Y2 = cat(PW(low), low)`` (back to ``C``); merge with SKNet selective-kernel
  attention: ``U = Y1 + Y2``, ``s = GAP(U)``, ``z = ReLU(Norm(FC(s)))`` with ``d = max(C / 16, 32)``,
  per-branch logits ``FC_i(z)``, softmax over the two branches per channel, ``a1 * Y1 + a2 * Y2``.

Decisions where the paper is silent: GroupNorm groups ``g`` = the largest divisor of ``C`` that is
``<= 16`` (SCConv's default 16); the cross reconstruction for odd ``C`` uses ``torch.roll`` by ``C // 2``
(for even ``C`` exactly the two halves swapped); the "depth-wise" conv on the ``C/4`` squeezed upper channels uses
``groups = gcd(C/4, C)`` (``= C/4``, truly depth-wise, whenever ``C`` is a multiple of 4); SKNet's ``Norm`` is a ``LayerNorm(d)``
(batch-size independent, unlike BatchNorm with nnU-Net's batch of 2 and inference batch of 1).
"""
from __future__ import annotations

import math
from typing import Sequence, Type

import numpy as np
import torch
from torch import nn

from . import BLOCKS

__all__ = ["RSD", "SRU", "CRU"]

_SPATIAL_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def _spatial_dims(conv_op: Type[nn.Module]) -> int:
    for op, d in _SPATIAL_DIMS.items():
        if conv_op is op or (isinstance(conv_op, type) and issubclass(conv_op, op)):
            return d
    raise TypeError(f"conv_op must be nn.Conv2d or nn.Conv3d (or a subclass), got {conv_op!r}")


class SRU(nn.Module):
    """Spatial reconstruction unit: gate ``F`` by GroupNorm-derived weights, cross-reconstruct halves.

    Input/output ``(B, C, *spatial)``.
    """

    def __init__(self, channels: int, max_groups: int = 16, gate: float = 0.5, eps: float = 1e-5):
        super().__init__()
        groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
        self.norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.gate = float(gate)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        g = self.norm(f)
        gamma = self.norm.weight
        w = (gamma / gamma.sum()).view(1, -1, *([1] * (f.ndim - 2)))
        r = torch.sigmoid(g * w)
        w1 = torch.where(r > self.gate, torch.ones_like(r), r)
        w2 = torch.where(r > self.gate, torch.zeros_like(r), r)
        x1, x2 = w1 * f, w2 * f
        return x1 + torch.roll(x2, shifts=f.shape[1] // 2, dims=1)


class CRU(nn.Module):
    """Channel reconstruction unit with a selective-kernel (SKNet) merge of its two branches.

    Input/output ``(B, C, *spatial)``.
    """

    def __init__(self, channels: int, conv_op: Type[nn.Module], alpha: float = 0.5, squeeze_ratio: int = 2,
                 kernel_size: int = 3, sk_reduction: int = 16, sk_min_dim: int = 32):
        super().__init__()
        c = int(channels)
        if c < 2:
            raise ValueError(f"CRU needs at least 2 channels, got {c}")
        self.up_channels = max(1, min(c - 1, int(round(alpha * c))))
        self.low_channels = c - self.up_channels
        up_s = max(1, self.up_channels // squeeze_ratio)
        low_s = max(1, self.low_channels // squeeze_ratio)
        self.squeeze_up = conv_op(self.up_channels, up_s, 1, bias=False)
        self.squeeze_low = conv_op(self.low_channels, low_s, 1, bias=False)
        self.dw = conv_op(up_s, c, kernel_size, padding=kernel_size // 2, groups=math.gcd(up_s, c))
        self.pw_up = conv_op(up_s, c, 1, bias=False)
        self.pw_low = conv_op(low_s, c - low_s, 1, bias=False)
        d = max(c // sk_reduction, sk_min_dim)
        self.fc = nn.Linear(c, d, bias=False)
        self.fc_norm = nn.LayerNorm(d)
        self.branch_fc = nn.Linear(d, 2 * c)
        self.channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        up = self.squeeze_up(x[:, :self.up_channels])
        y1 = self.dw(up) + self.pw_up(up)
        low = self.squeeze_low(x[:, self.up_channels:])
        y2 = torch.cat((self.pw_low(low), low), dim=1)
        s = (y1 + y2).mean(dim=tuple(range(2, x.ndim)))  # GAP(U), (B, C)
        z = torch.relu(self.fc_norm(self.fc(s)))
        a = torch.softmax(self.branch_fc(z).view(b, 2, c), dim=1)
        view = (b, c, *([1] * (x.ndim - 2)))
        return a[:, 0].view(view) * y1 + a[:, 1].view(view) * y2


class RSD(nn.Module):
    """RAS4DG's bottleneck block ``out = F + CRU(SRU(F))``; shape-keeping, 2D or 3D via ``conv_op``.

    Args:
        channels: ``C`` of the feature map.
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d`` (nnU-Net's ``encoder.conv_op``).

    Example::

        >>> RSD(32, nn.Conv3d)(torch.randn(2, 32, 4, 4, 4)).shape
        torch.Size([2, 32, 4, 4, 4])
    """

    def __init__(self, channels: int, conv_op: Type[nn.Module] = nn.Conv3d):
        super().__init__()
        if int(channels) < 2:
            raise ValueError(f"RSD needs at least 2 channels, got {channels}")
        self.spatial_dims = _spatial_dims(conv_op)
        self.channels = int(channels)
        self.sru = SRU(self.channels)
        self.cru = CRU(self.channels, conv_op)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != self.spatial_dims + 2 or f.shape[1] != self.channels:
            raise ValueError(f"RSD({self.channels}, {self.spatial_dims}D) got input of shape {tuple(f.shape)}")
        return f + self.cru(self.sru(f))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Feature-map elements the block stores (nnU-Net's VRAM estimate): GroupNorm, gated, SRU output,
        squeezed halves (~C/2), Y1 (two convs + sum), Y2, U, CRU output and the residual sum: ~11 C."""
        return np.prod([11 * self.channels, *[int(i) for i in input_size]], dtype=np.int64)


BLOCKS["RSD"] = lambda channels, conv_op: RSD(channels, conv_op)
