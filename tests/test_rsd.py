"""RSD block (SRU + CRU with selective-kernel merge) and its insertion into nnU-Net's U-Nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_rc.blocks import BLOCKS
from nnunet_rc.blocks.insert import append_to_bottleneck, unwrap_network
from nnunet_rc.blocks.rsd import CRU, RSD, SRU


@pytest.mark.parametrize("conv_op,spatial", [(nn.Conv2d, (6, 5)), (nn.Conv3d, (4, 3, 5))])
@pytest.mark.parametrize("channels", [32, 48, 7])
def test_rsd_keeps_shape_and_every_parameter_gets_a_gradient(conv_op, spatial, channels):
    torch.manual_seed(0)
    block = RSD(channels, conv_op)
    x = torch.randn(2, channels, *spatial, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    (y ** 2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None


def test_rsd_registered_and_rejects_wrong_input():
    block = BLOCKS["RSD"](16, nn.Conv2d)
    assert isinstance(block, RSD)
    with pytest.raises(ValueError, match="RSD"):
        block(torch.randn(1, 16, 4, 4, 4))
    with pytest.raises(TypeError, match="conv_op"):
        RSD(16, nn.Linear)


def test_sru_matches_the_written_formula():
    torch.manual_seed(1)
    sru = SRU(8)
    with torch.no_grad():
        sru.norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
        sru.norm.bias.copy_(torch.linspace(-1, 1, 8))
    f = torch.randn(2, 8, 5, 5)
    g = sru.norm(f)
    w = (sru.norm.weight / sru.norm.weight.sum()).view(1, 8, 1, 1)
    r = torch.sigmoid(g * w)
    w1 = torch.where(r > 0.5, torch.ones_like(r), r)
    w2 = torch.where(r > 0.5, torch.zeros_like(r), r)
    x1, x2 = w1 * f, w2 * f
    expected = torch.cat((x1[:, :4] + x2[:, 4:], x1[:, 4:] + x2[:, :4]), dim=1)
    assert torch.allclose(sru(f), expected, atol=1e-6)
    assert sru.norm.num_groups == 8  # largest divisor of 8 that is <= 16
    assert SRU(48).norm.num_groups == 16 and SRU(7).norm.num_groups == 7


def test_cru_structure_and_selective_kernel_merge():
    cru = CRU(64, nn.Conv3d)
    assert cru.up_channels == 32 and cru.low_channels == 32
    assert cru.squeeze_up.out_channels == 16 and cru.squeeze_low.out_channels == 16
    assert cru.dw.groups == 16 and cru.dw.out_channels == 64  # depth-wise k=3
    assert cru.pw_low.out_channels == 64 - 16
    assert cru.fc.out_features == 32  # d = max(64 / 16, 32)
    assert CRU(1024, nn.Conv2d).fc.out_features == 64
    # zero logits -> both branches weighted 1/2
    with torch.no_grad():
        cru.branch_fc.weight.zero_()
        cru.branch_fc.bias.zero_()
    x = torch.randn(2, 64, 3, 3, 3)
    up = cru.squeeze_up(x[:, :32])
    low = cru.squeeze_low(x[:, 32:])
    y1 = cru.dw(up) + cru.pw_up(up)
    y2 = torch.cat((cru.pw_low(low), low), dim=1)
    assert torch.allclose(cru(x), 0.5 * (y1 + y2), atol=1e-5)


def test_rsd_is_residual_and_batch_size_one_works():
    block = RSD(32, nn.Conv2d).eval()
    x = torch.randn(1, 32, 4, 4)
    assert torch.allclose(block(x), x + block.cru(block.sru(x)))
    block.train()
    assert block(x).shape == x.shape
    size = block.compute_conv_feature_map_size((4, 4))
    assert isinstance(size, np.int64) and size == 11 * 32 * 16


# ---- insertion into dynamic_network_architectures' U-Nets --------------------------------------------------

def _plain_unet(dim: int):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    # 1 input channel, 4 stages, 3 classes
    return PlainConvUNet(1, 4, (8, 16, 32, 64), conv, 3, (1, 2, 2, 2), (2, 2, 2, 2), 3, (2, 2, 2),
                         conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def _resenc_unet(dim: int):
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    # 2 input channels, 4 stages, 3 classes
    return ResidualEncoderUNet(2, 4, (8, 16, 32, 64), conv, 3, (1, 2, 2, 2), (1, 2, 2, 2), 3, (1, 1, 1),
                               conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                               nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


@pytest.mark.parametrize("builder", [_plain_unet, _resenc_unet])
@pytest.mark.parametrize("dim", [2, 3])
def test_rsd_appended_after_deepest_stage(builder, dim):
    torch.manual_seed(0)
    net = builder(dim)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    patch = (32, 32) if dim == 2 else (16, 16, 16)
    in_channels = 1 if builder is _plain_unet else 2
    x = torch.randn(2, in_channels, *patch)
    out_before = [o.shape for o in net(x)]
    assert append_to_bottleneck(net, BLOCKS["RSD"]) is net
    stage = net.encoder.stages[-1]
    container = stage.blocks if hasattr(stage, "blocks") else stage
    assert isinstance(container[-1], RSD)
    assert container[-1].channels == 64 and container[-1].spatial_dims == dim
    after = net.state_dict()
    for k, v in before.items():  # existing names and values unchanged
        assert torch.equal(after[k], v), k
    new_keys = [k for k in after if k not in before]
    assert new_keys and all(".sru." in k or ".cru." in k for k in new_keys)
    outs = net(x)
    assert [o.shape for o in outs] == out_before  # deep supervision outputs unchanged
    # the bottleneck feature now goes through RSD
    skips = net.encoder(x)
    assert skips[-1].shape[1] == 64
    assert net.compute_conv_feature_map_size(patch) > 0
    net.decoder.deep_supervision = False
    assert net(x).shape == (2, 3, *patch)


def test_insertion_unwraps_compile_and_ddp_wrappers_and_rejects_other_networks():
    net = _plain_unet(2)

    class Compiled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    class DDP(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    wrapped = DDP(Compiled(net))
    assert unwrap_network(wrapped) is net
    assert append_to_bottleneck(wrapped, BLOCKS["RSD"]) is wrapped
    assert isinstance(net.encoder.stages[-1][-1], RSD)
    with pytest.raises(TypeError, match="encoder"):
        append_to_bottleneck(nn.Sequential(nn.Conv2d(1, 1, 1)), BLOCKS["RSD"])
