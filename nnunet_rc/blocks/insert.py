"""Insert a shape-keeping block after the deepest encoder stage of a U-Net (duck-typed, no nnU-Net import).

Works with dynamic_network_architectures' ``PlainConvUNet`` and ``ResidualEncoderUNet`` (2D and 3D), the
networks nnU-Net builds from its plans: the bottleneck is ``network.encoder.stages[-1]`` (a
``Sequential`` for PlainConvUNet, a ``StackedResidualBlocks`` with ``.blocks`` for ResEnc, possibly
wrapped in ``Sequential(pool, stage)``), with ``encoder.output_channels[-1]`` channels and
``encoder.conv_op``. The block is appended in place, so every existing parameter keeps its name
(checkpoints of the plain network still load their matching weights); the decoder and deep
supervision read ``skips[-1]`` unchanged in shape.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["unwrap_network", "append_to_bottleneck"]


def unwrap_network(network: nn.Module) -> nn.Module:
    """Strip ``torch.compile``'s ``._orig_mod`` and DDP's ``.module`` wrappers."""
    net = network
    while True:
        if hasattr(net, "_orig_mod") and isinstance(net._orig_mod, nn.Module):
            net = net._orig_mod
        elif isinstance(getattr(net, "module", None), nn.Module) and not hasattr(net, "encoder"):
            net = net.module
        else:
            return net


def append_to_bottleneck(network: nn.Module, factory: Callable[[int, type], nn.Module]) -> nn.Module:
    """Append ``factory(channels, conv_op)`` to the deepest encoder stage of ``network``, in place.

    Returns ``network`` (as given, wrappers included). Raises ``TypeError`` naming the network when it
    has no recognisable ``encoder.stages``.
    """
    net = unwrap_network(network)
    encoder = getattr(net, "encoder", None)
    stages = getattr(encoder, "stages", None)
    if encoder is None or stages is None or not len(stages) or not hasattr(encoder, "output_channels"):
        raise TypeError(f"{type(net).__name__}: expected a U-Net with encoder.stages and encoder.output_channels "
                        "(PlainConvUNet or ResidualEncoderUNet)")
    conv_op = getattr(encoder, "conv_op", None) or getattr(net, "conv_op", None)
    if conv_op is None:
        raise TypeError(f"{type(net).__name__}: cannot find conv_op on the network or its encoder")
    channels = int(encoder.output_channels[-1])
    stage = stages[-1]
    if isinstance(stage, nn.Sequential) and len(stage) and isinstance(getattr(stage[-1], "blocks", None), nn.Sequential):
        stage = stage[-1]  # ResEnc with pooling: Sequential(pool, StackedResidualBlocks)
    if isinstance(getattr(stage, "blocks", None), nn.Sequential):
        container = stage.blocks
    elif isinstance(stage, nn.Sequential):
        container = stage
    else:
        raise TypeError(f"{type(net).__name__}: deepest encoder stage is a {type(stage).__name__}, expected a "
                        "Sequential or a StackedResidualBlocks")
    block = factory(channels, conv_op)
    ref = next(container.parameters(), None)
    if ref is not None:
        block = block.to(device=ref.device, dtype=ref.dtype)
    container.append(block)
    return network
