"""RMS — Random Mask Shuffle (RAS4DG, Sec. 2.2).

Per sample: ``n`` boxes (``n`` uniform in ``{1..max_boxes}``, default 3), each side a fraction
``U(min_frac, max_frac)`` (default 5-15 %) of the patch side, rounded, at least 2 voxels (at most the
side), at a uniform random position; inside each box the voxels are permuted at random and written back
in place. One permutation per box is shared by all channels of a sample (modalities stay aligned).

Batched on the data's device: a box is a hyper-rectangle, so its voxels are enumerated by a local index
``l < prod(sizes)`` (padded to the largest possible box); a random permutation of the valid local
indices is the ``argsort`` of uniform keys (invalid ones sorted last), and the shuffle is one ``gather``
plus one ``scatter`` over the flattened volume. The only Python loop is over the ``<= max_boxes`` box
slots; overlapping boxes are shuffled one after the other.

Decision: ``restandardize = False``. A shuffle keeps the multiset of values, so per-sample/channel mean
and std are unchanged anyway, and voxels outside the boxes stay bit-identical to the input.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch

from .base import BatchAugmentation, rand, randint, register_augmentation

__all__ = ["RMS"]


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


@register_augmentation
class RMS(BatchAugmentation):
    """Random Mask Shuffle: shuffle the voxels inside 1..3 random boxes per sample.

    Args:
        max_boxes: ``n`` is uniform in ``{1..max_boxes}`` (paper: 3).
        min_frac, max_frac: box side as a fraction of the patch side (paper: 0.05-0.15).
        min_side: smallest box side in voxels (2).
        p: probability per sample (paper: 0.5). Other args: see :class:`BatchAugmentation`.

    Input ``(B, C, X, Y[, Z])`` float; output same shape/dtype/device. Parameters (``n`` samples,
    ``K = max_boxes`` slots, ``d`` spatial dims): ``starts``/``sizes`` int64 ``(n, K, d)``, ``active`` bool
    ``(n, K)``, ``keys`` float ``(n, K, L)`` with ``L`` the volume of the largest possible box.

    Example::

        >>> x = torch.randn(2, 2, 32, 32, 32)
        >>> RMS(p=1.0)(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 2, 32, 32, 32])
    """

    restandardize = False

    def __init__(self, max_boxes: int = 3, min_frac: float = 0.05, max_frac: float = 0.15, min_side: int = 2,
                 p: float = 0.5, same_on_batch: bool = False, keep_background: bool = False):
        super().__init__(p=p, same_on_batch=same_on_batch, keep_background=keep_background)
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
        if not 0.0 < min_frac <= max_frac <= 1.0:
            raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
        self.max_boxes, self.min_frac, self.max_frac = int(max_boxes), float(min_frac), float(max_frac)
        self.min_side = int(min_side)

    def side_bounds(self, spatial: Sequence[int]) -> List[tuple]:
        """``(lo, hi)`` box side bounds in voxels per axis."""
        out = []
        for n in spatial:
            lo = min(self.min_side, int(n))
            hi = max(lo, min(int(n), _round_half_up(self.max_frac * n)))
            out.append((lo, hi))
        return out

    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        n, k, dev = x.shape[0], self.max_boxes, x.device
        spatial = list(x.shape[2:])
        bounds = self.side_bounds(spatial)
        frac = self.min_frac + (self.max_frac - self.min_frac) * rand((n, k, len(spatial)), generator, dev)
        size_n = torch.tensor(spatial, device=dev, dtype=torch.float32)
        lo = torch.tensor([b[0] for b in bounds], device=dev)
        hi = torch.tensor([b[1] for b in bounds], device=dev)
        sizes = torch.floor(frac * size_n + 0.5).long().clamp(min=lo, max=hi)
        u = rand((n, k, len(spatial)), generator, dev)
        starts = torch.floor(u * (size_n.long() - sizes + 1).float()).long()
        starts = torch.minimum(starts, size_n.long() - sizes)
        num = randint(1, k + 1, (n,), generator, dev)
        active = torch.arange(k, device=dev)[None, :] < num[:, None]
        volume = int(math.prod(b[1] for b in bounds))
        keys = rand((n, k, volume), generator, dev)
        return {"starts": starts, "sizes": sizes, "active": active, "keys": keys}

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        n, c = x.shape[:2]
        spatial = list(x.shape[2:])
        vox = int(math.prod(spatial))
        dev = x.device
        # flattened volume + one dummy slot (index vox) that absorbs the padded, invalid entries
        flat = torch.cat((x.reshape(n, c, vox), x.new_zeros(n, c, 1)), dim=2)
        strides = [int(math.prod(spatial[i + 1:])) for i in range(len(spatial))]
        starts, sizes, active, keys = params["starts"], params["sizes"], params["active"], params["keys"]
        local = torch.arange(keys.shape[-1], device=dev)
        for slot in range(keys.shape[1]):
            sz = sizes[:, slot]  # (n, d)
            st = starts[:, slot]
            vol = sz.prod(dim=1)  # (n,)
            valid = (local[None, :] < vol[:, None]) & active[:, slot, None]  # (n, L)
            # unravel the local index with per-sample box sizes (C order) -> global flat index
            rem = local[None, :].expand(n, -1)
            glob = torch.zeros_like(rem)
            for axis in reversed(range(len(spatial))):
                coord = rem % sz[:, axis, None]
                rem = torch.div(rem, sz[:, axis, None], rounding_mode="floor")
                glob = glob + (st[:, axis, None] + coord) * strides[axis]
            glob = torch.where(valid, glob, torch.full_like(glob, vox))
            perm = torch.argsort(torch.where(valid, keys[:, slot], torch.full_like(keys[:, slot], 2.0)), dim=1)
            src = torch.gather(glob, 1, perm)  # valid entries sort first, so src is valid where dst is
            vals = torch.gather(flat, 2, src[:, None, :].expand(n, c, -1))
            flat = flat.scatter(2, glob[:, None, :].expand(n, c, -1), vals)
        return flat[:, :, :vox].reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"max_boxes={self.max_boxes}, frac=({self.min_frac}, {self.max_frac}), min_side={self.min_side}, "
                + super().extra_repr())
