"""RMS: voxels outside the boxes untouched, multisets inside unchanged, channels permuted alike."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_rc.augment import AUGMENTATIONS, RMS


def _box_masks(params: dict, spatial) -> torch.Tensor:
    """(n, K, *spatial) bool masks of the active boxes, built by slicing (independent of RMS.apply)."""
    n, k = params["active"].shape
    masks = torch.zeros(n, k, *spatial, dtype=torch.bool)
    for i in range(n):
        for j in range(k):
            if params["active"][i, j]:
                sl = tuple(slice(int(s), int(s) + int(z)) for s, z in zip(params["starts"][i, j], params["sizes"][i, j]))
                masks[(i, j, *sl)] = True
    return masks


def test_parameters_within_spec():
    aug = RMS()
    x = torch.zeros(400, 1, 60, 40, 13)
    p = aug.get_parameters(x, torch.Generator().manual_seed(0))
    sizes, starts, active = p["sizes"], p["starts"], p["active"]
    spatial = torch.tensor([60, 40, 13])
    assert (sizes >= 2).all()
    # 5-15 % of the side, rounded: 60 -> 3..9, 40 -> 2..6, 13 -> 2 (0.65..1.95 -> at least 2)
    assert sizes[..., 0].min() == 3 and sizes[..., 0].max() == 9
    assert sizes[..., 1].min() == 2 and sizes[..., 1].max() == 6
    assert (sizes[..., 2] == 2).all()
    assert (starts >= 0).all() and (starts + sizes <= spatial).all()
    counts = active.sum(dim=1)
    assert set(counts.tolist()) == {1, 2, 3}
    assert (active[:, 0]).all() and (active[:, :-1].int() >= active[:, 1:].int()).all()
    assert p["keys"].shape == (400, 3, 9 * 6 * 2)


@pytest.mark.parametrize("shape", [(3, 2, 40, 36), (2, 3, 20, 24, 18)])
def test_outside_boxes_bit_identical_inside_multiset_kept(shape):
    aug = RMS(p=1.0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g)
    params = aug.get_parameters(x, g)
    y = aug.apply(x, params)
    masks = _box_masks(params, shape[2:])
    union = masks.any(dim=1)  # (n, *spatial)
    outside = ~union[:, None].expand_as(x)
    assert torch.equal(y[outside], x[outside])
    inside = union[:, None].expand_as(x)
    assert not torch.equal(y[inside], x[inside])
    for i in range(shape[0]):
        for c in range(shape[1]):
            a = torch.sort(x[i, c][union[i]]).values
            b = torch.sort(y[i, c][union[i]]).values
            assert torch.equal(a, b)


def test_single_box_multiset_and_shared_channel_permutation():
    aug = RMS(p=1.0)
    g = torch.Generator().manual_seed(7)
    x = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(1, 2, 32, 32)
    x[:, 1] = x[:, 0] * 10 + 0.5  # channel 1 is a known function of channel 0
    params = aug.get_parameters(x, g)
    params["active"][:] = torch.tensor([[True, False, False]])
    params["starts"][0, 0] = torch.tensor([5, 9])
    params["sizes"][0, 0] = torch.tensor([4, 3])
    y = aug.apply(x, params)
    box = x[0, 0, 5:9, 9:12]
    assert not torch.equal(y[0, 0, 5:9, 9:12], box)
    assert torch.equal(torch.sort(y[0, 0, 5:9, 9:12].flatten()).values, torch.sort(box.flatten()).values)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[5:9, 9:12] = False
    assert torch.equal(y[0, :, outside], x[0, :, outside])
    # the same permutation in every channel: channel relation holds voxel-wise everywhere
    assert torch.equal(y[0, 1], y[0, 0] * 10 + 0.5)


def test_forward_contract_and_target_semantics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 16, 16, 16, generator=g)
    x[:, 1] = x[:, 0] * 2 - 1
    y = RMS(p=1.0)(x, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert torch.allclose(y[:, 1], y[:, 0] * 2 - 1)
    dims = (2, 3, 4)
    assert torch.allclose(y.mean(dim=dims), x.mean(dim=dims), atol=1e-5)
    assert torch.allclose(y.std(dim=dims), x.std(dim=dims), atol=1e-5)
    assert RMS.restandardize is False
    assert torch.equal(RMS(p=0.0)(x), x)
    c = torch.full((2, 1, 8, 8), 2.0)
    assert torch.equal(RMS(p=1.0)(c, generator=g), c)
    assert AUGMENTATIONS["RMS"] is RMS


def test_default_probability_is_half():
    aug = RMS()
    assert aug.p == 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 20, 20, generator=g)
    y = aug(x, generator=g)
    changed = (y != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.4 < changed < 0.6


def test_reproducible_and_overlapping_boxes_permute_union():
    x = torch.randn(2, 1, 12, 12)
    a = RMS(p=1.0)(x, generator=torch.Generator().manual_seed(9))
    b = RMS(p=1.0)(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    aug = RMS(p=1.0)
    params = aug.get_parameters(x, torch.Generator().manual_seed(1))
    params["active"][:] = True
    params["starts"][:, 0] = torch.tensor([2, 2])
    params["starts"][:, 1] = torch.tensor([3, 3])
    params["sizes"][:] = 2
    params["starts"][:, 2] = torch.tensor([8, 8])
    y = aug.apply(x, params)
    union = _box_masks(params, (12, 12)).any(dim=1)
    for i in range(2):
        assert torch.equal(torch.sort(y[i, 0][union[i]]).values, torch.sort(x[i, 0][union[i]]).values)
        assert torch.equal(y[i, 0][~union[i]], x[i, 0][~union[i]])
    assert math.prod(params["keys"].shape[:2]) == 6
