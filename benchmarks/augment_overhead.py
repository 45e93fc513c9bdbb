"""Cost of every batch augmentation and network block relative to one training step of nnU-Net's network.

For a 3d_fullres-like batch (default on CUDA: 2 x C x 128^3) and a 2d-like batch (12 x C x 512^2), times
each augmentation in ``nnunet_rc.augment.AUGMENTATIONS`` (p = 1) against one forward + backward of a
PlainConvUNet built like nnU-Net's default for that configuration, compares batched RandConv with a
Python loop over samples, and reports for every block in ``nnunet_rc.blocks.BLOCKS`` (inserted at the
bottleneck width) its parameter count and fwd+bwd time relative to the network. On CPU the default sizes
are smaller (2 x C x 64^3, 12 x C x 256^2). Prints a table and, with ``--csv``, writes it.

    python benchmarks/augment_overhead.py --device cpu --size3d 32 --size2d 128 --repeats 2
"""
from __future__ import annotations

import argparse
import csv
import time

import torch
from torch import nn


def build_unet(dim: int, in_channels: int, size: int, num_classes: int = 3):
    """PlainConvUNet with nnU-Net's default 3d_fullres (6 stages, 320 cap) / 2d (7 stages, 512 cap)
    settings; fewer stages for small patches so the bottleneck keeps >= 4 voxels per axis (as nnU-Net's
    planner does)."""
    import math

    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    n_stages = min(6 if dim == 3 else 7, int(math.log2(max(size, 4) / 4)) + 1)
    cap = 320 if dim == 3 else 512
    features = [min(32 * 2 ** i, cap) for i in range(n_stages)]
    strides = [[1] * dim] + [[2] * dim] * (n_stages - 1)
    net = PlainConvUNet(in_channels, n_stages, features, conv, 3, strides, [2] * n_stages, num_classes,
                        [2] * (n_stages - 1), conv_bias=True, norm_op=norm,
                        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                        nonlin_kwargs={"inplace": True}, deep_supervision=True)
    return net, features[-1], conv, n_stages


def timed(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def fwd_bwd(module, x):
    def run():
        module.zero_grad(set_to_none=True)
        out = module(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().mean().backward()
    return run


def looped(aug, x, g):
    return lambda: torch.cat([aug(x[i:i + 1], generator=g) for i in range(x.shape[0])])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--channels", type=int, default=1, help="image channels C (default 1)")
    parser.add_argument("--size3d", type=int, default=None, help="3D patch side (default 128 cuda / 64 cpu)")
    parser.add_argument("--size2d", type=int, default=None, help="2D patch side (default 512 cuda / 256 cpu)")
    parser.add_argument("--batch3d", type=int, default=2)
    parser.add_argument("--batch2d", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["2d", "3d"], default=None)
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)

    from nnunet_rc.augment import AUGMENTATIONS, RandConv
    from nnunet_rc.blocks import BLOCKS

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    cpu = device.type == "cpu"
    s3 = args.size3d or (64 if cpu else 128)
    s2 = args.size2d or (256 if cpu else 512)
    settings = [("3d", args.batch3d, s3, 3), ("2d", args.batch2d, s2, 2)]
    if args.only:
        settings = [s for s in settings if s[0] == args.only]
    rows = []
    for name, b, s, dim in settings:
        shape = (b, args.channels) + (s,) * dim
        net, bottleneck, conv, n_stages = build_unet(dim, args.channels, s)
        print(f"[{name}] batch {'x'.join(map(str, shape))}, {n_stages} stages, on {device} ({torch.cuda.get_device_name() if not cpu else 'CPU'})",
              flush=True)
        x = torch.randn(shape, device=device)
        net = net.to(device)
        n_params = sum(p.numel() for p in net.parameters())
        t_net = timed(fwd_bwd(net, x), device, args.repeats)
        rows.append((name, "network fwd+bwd", t_net, 1.0, n_params, 1.0))
        g = torch.Generator(device=device).manual_seed(0)
        for aug_name in sorted(AUGMENTATIONS):
            aug = AUGMENTATIONS[aug_name](p=1.0)
            t = timed(lambda: aug(x, generator=g), device, args.repeats)
            rows.append((name, f"aug {aug_name}", t, t / t_net, 0, 0.0))
        rc = RandConv(p=1.0)
        t_loop = timed(looped(rc, x, g), device, args.repeats)
        t_batch = timed(lambda: rc(x, generator=g), device, args.repeats)
        rows.append((name, "RandConv looped over samples", t_loop, t_loop / t_net, 0, 0.0))
        rows.append((name, "RandConv batched / looped", t_batch, t_batch / t_loop, 0, 0.0))
        feat = torch.randn((b, bottleneck) + (max(1, s // 2 ** (n_stages - 1)),) * dim, device=device,
                           requires_grad=True)
        for block_name in sorted(BLOCKS):
            block = BLOCKS[block_name](bottleneck, conv).to(device)
            bp = sum(p.numel() for p in block.parameters())
            t = timed(fwd_bwd(block, feat), device, args.repeats)
            rows.append((name, f"block {block_name}", t, t / t_net, bp, bp / n_params))
        del net, x

    header = ("config", "what", "seconds", "time / network", "params", "params / network")
    widths = [6, 32, 10, 15, 12, 16]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        cells = [r[0], r[1], f"{r[2]:.4f}", f"{r[3]:.3f}", f"{r[4]:,}" if r[4] else "-", f"{r[5]:.4f}" if r[4] else "-"]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
