"""Random-convolution augmentations: RandConv, ProgressiveRandConv and GIN (see ``methods.md``).

All three are shallow random CNNs applied to the image batch ``x`` of shape ``(B, C, X, Y[, Z])``.
Per-sample kernels run in **one** grouped convolution per layer: the batch is folded into the channel
axis (``(1, B*C, *S)``) and the kernels of all samples are stacked, ``groups = B`` (kernels span all
``C`` channels, ``mix_channels=True``) or ``groups = B*C`` (one kernel per modality,
``mix_channels=False``). Kernel sizes that differ between samples are embedded, centred, in the
largest size drawn in the batch (zeros outside the sample's own ``k``); depths that differ between
samples run the largest depth drawn and keep each sample's output at its own depth with
``torch.where`` -- the only Python loops are over layers, never over samples.

Padding keeps the spatial size with ``reflect`` (``replicate`` when a side is too short to reflect),
never zeros. Nothing here has parameters or gradients; :class:`BatchAugmentation` adds ``p``,
``same_on_batch``, fp32/no-grad, re-standardization and ``keep_background``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import BatchAugmentation, match_mean_std, rand, randint, randn, register_augmentation

__all__ = ["RandConv", "ProgressiveRandConv", "ProgressiveRandConvDeform", "GIN", "grouped_random_conv",
           "random_jitter_offsets", "jitter_warp", "jitter_warp_plan", "DEFAULT_KERNEL_SIZES", "plan_scale",
           "kernel_sizes_within_reach"]

#: RandConv's default kernel sizes by number of spatial axes (methods.md)
DEFAULT_KERNEL_SIZES = {2: (1, 3, 5, 7), 3: (1, 3, 5)}


def _conv_nd(ndim_spatial: int):
    return F.conv2d if ndim_spatial == 2 else F.conv3d


def grouped_random_conv(x: torch.Tensor, weight: torch.Tensor, groups_per_sample: int,
                        bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Convolve every sample of ``x`` with its own kernels in one grouped convolution.

    Args:
        x: ``(B, C_in, *S)``, ``S`` 2D or 3D.
        weight: ``(B, C_out, C_in // G, K, ..., K)`` with odd ``K`` (``G = groups_per_sample``).
        bias: optional ``(B, C_out)``.
    Returns ``(B, C_out, *S)``, same spatial size (reflect padding, replicate for short sides).
    """
    b, c_in = x.shape[:2]
    spatial = x.shape[2:]
    k = weight.shape[-1]
    pad = k // 2
    y = x.reshape(1, b * c_in, *spatial)
    if pad > 0:
        mode = "reflect" if min(spatial) > pad else "replicate"
        y = F.pad(y, [pad] * (2 * len(spatial)), mode=mode)
    w = weight.reshape(-1, *weight.shape[2:])
    bias = None if bias is None else bias.reshape(-1)
    if x.device.type == "cpu" and len(spatial) == 3 and b * groups_per_sample == 1 and spatial[0] > 1:
        return _conv3d_in_two_halves(y, w, bias, spatial[0]).reshape(b, weight.shape[1], *spatial)
    out = _conv_nd(len(spatial))(y, w, bias, groups=b * groups_per_sample)
    return out.reshape(b, weight.shape[1], *spatial)


def _conv3d_in_two_halves(y: torch.Tensor, w: torch.Tensor, bias: Optional[torch.Tensor], d: int) -> torch.Tensor:
    """``conv3d(y, w, bias)`` of one padded volume ``(1, C_in, D + 2p, ...)`` as a 2-group convolution of its
    two overlapping halves along D (same values). A single-sample, single-group 3D convolution with a
    small kernel falls to PyTorch's slow native CPU kernel (2.4 ms for a 64³ volume on 2 cores, against
    1.1 ms in halves): that is what is left of the batch after its shallower samples have finished in
    :func:`repeat_per_sample`."""
    half = (d + 1) // 2
    halo = y.shape[2] - d  # 2p
    halves = torch.cat([y[:, :, :half + halo], y[:, :, d - half:]], 1)
    out = F.conv3d(halves, w.repeat(2, 1, 1, 1, 1), None if bias is None else bias.repeat(2), groups=2)
    c_out = w.shape[0]
    return torch.cat([out[:, :c_out], out[:, c_out:, 2 * half - d:]], 2)


def _centre_mask(k: torch.Tensor, size: int, ndim: int) -> torch.Tensor:
    """``(n, *[size]*ndim)`` float mask: 1 inside the centred ``k[i]``-wide window, 0 outside."""
    offs = (torch.arange(size, device=k.device) - size // 2).abs()
    inside = offs[None, :] <= (k[:, None] // 2)  # (n, size)
    mask = inside
    for _ in range(ndim - 1):
        mask = mask[..., None] & inside.view(inside.shape[0], *([1] * (mask.ndim - 1)), size)
    return mask.float()


def _crop_kernel(w: torch.Tensor, ndim: int, k: int) -> torch.Tensor:
    """Crop the last ``ndim`` axes of ``w`` (size ``K``) to their centred ``k``."""
    big = w.shape[-1]
    lo = (big - k) // 2
    for ax in range(w.ndim - ndim, w.ndim):
        w = w.narrow(ax, lo, k)
    return w


def repeat_per_sample(x: torch.Tensor, depth: torch.Tensor, step) -> torch.Tensor:
    """Apply ``step(h, i, rows)`` ``depth[b]`` times to sample ``b`` of ``x``, batched.

    Step ``i`` runs once on the samples still active (``depth > i``): ``rows`` is ``None`` while all are,
    else the active samples' indices (``h`` then holds only those rows, and ``step`` uses their
    parameters); finished samples keep their result and cost nothing more.
    """
    out = x
    for i in range(int(depth.max())):
        active = depth > i
        if bool(active.all()):
            out = step(out, i, None)
        else:
            rows = active.nonzero().squeeze(1)
            out = out.index_copy(0, rows, step(out.index_select(0, rows), i, rows))
    return out


def _rows(t: torch.Tensor, rows: Optional[torch.Tensor]) -> torch.Tensor:
    return t if rows is None else t.index_select(0, rows)


def _mix_with_input(out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The mix of RandConv's "mix" variant, ``a·out + (1-a)·x`` with ``a = alpha[b]`` per sample ``b``
    (``alpha``: ``(B,)``; ``out``, ``x``: ``(B, C, *S)``)."""
    a = alpha.view((-1,) + (1,) * (x.ndim - 1))
    return a * out + (1 - a) * x


def _check_sizes(kernel_sizes: Sequence[int], what: str) -> tuple:
    ks = tuple(int(k) for k in kernel_sizes)
    if not ks or any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"{what}: kernel sizes must be odd positive integers, got {kernel_sizes}")
    return ks


def plan_scale(plan_spacing: Sequence[float], original_spacing: Sequence[float]) -> float:
    """How many of the dataset's own voxels one voxel of a plan spans: the largest ratio
    ``plan_spacing[i] / original_spacing[i]`` over the plan's axes (``original_spacing`` may have more
    axes, as nnU-Net's ``original_median_spacing_after_transp`` has for 2D data; its last ones are used).
    1 at nnU-Net's full-resolution plans, 3 at a plan with 3x the spacing."""
    plan = [float(v) for v in plan_spacing]
    orig = [float(v) for v in original_spacing][-len(plan):]
    if len(orig) != len(plan) or min(plan + orig) <= 0:
        raise ValueError(f"plan_scale: spacings {plan_spacing} and {original_spacing} do not match")
    return max(a / b for a, b in zip(plan, orig))


def kernel_sizes_within_reach(kernel_sizes: Sequence[int], scale: float, max_reach: float = 3.0) -> tuple:
    """The sizes ``k`` of ``kernel_sizes`` whose reach in the dataset's own voxels, ``(k - 1) / 2 * scale``,
    is at most ``max_reach`` (``1`` has no reach and is always kept; when nothing is left the answer is
    ``(1,)``, a per-voxel random channel mix). With ``scale`` from :func:`plan_scale`: ``(1, 3, 5, 7)``
    stays whole at ``scale = 1`` and becomes ``(1, 3)`` at ``scale = 3``."""
    ks = _check_sizes(kernel_sizes, "kernel_sizes_within_reach")
    if scale <= 0:
        raise ValueError(f"kernel_sizes_within_reach: scale must be positive, got {scale}")
    kept = tuple(k for k in ks if k == 1 or (k - 1) / 2 * scale <= max_reach + 1e-6)
    return kept or (1,)


@register_augmentation
class RandConv(BatchAugmentation):
    """Random Convolutions (RC): a shallow random linear CNN, drawn anew per sample and batch.

    ``x_{l+1} = W_l * x_l`` for ``l < L``, ``W_l ~ N(0, σ²)`` of size ``k`` per spatial axis,
    ``σ = 1/sqrt(C_in·k^d)``, ``C_out = C_in = C`` (``mix_channels=True``; ``C_in = 1`` per modality
    otherwise). Optional mix (RandConv's "mix" variant): ``out = a·RC(x) + (1-a)·x``, ``a ~ U(0,1)``.

    Args:
        kernel_sizes: odd sizes ``k`` is drawn from, uniformly per sample (same ``k`` in all its layers).
            Default ``(1, 3, 5, 7)`` for 2D input, ``(1, 3, 5)`` for 3D.
        depths: depths ``L`` are drawn from, uniformly per sample (default ``1..4``).
        mix_channels: kernels span all channels (default) or one kernel per modality.
        mix: mix with the input as above (default off).
        p, same_on_batch, keep_background: see :class:`BatchAugmentation`; ``p=0.5`` as in the RC code.

    Shapes: ``(B, C, X, Y)`` or ``(B, C, X, Y, Z)`` in and out. Example::

        >>> aug = RandConv(p=1.0)
        >>> aug(torch.randn(2, 1, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, kernel_sizes: Optional[Sequence[int]] = None, depths: Sequence[int] = (1, 2, 3, 4),
                 mix_channels: bool = True, mix: bool = False, p: float = 0.5, same_on_batch: bool = False,
                 keep_background: bool = False):
        super().__init__(p=p, same_on_batch=same_on_batch, keep_background=keep_background)
        self.kernel_sizes = None if kernel_sizes is None else _check_sizes(kernel_sizes, "RandConv")
        self.depths = tuple(int(d) for d in depths)
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"RandConv: depths must be positive integers, got {depths}")
        self.mix_channels = bool(mix_channels)
        self.mix = bool(mix)

    def _sizes(self, x: torch.Tensor) -> tuple:
        if self.kernel_sizes is not None:
            return self.kernel_sizes
        return DEFAULT_KERNEL_SIZES[x.ndim - 2]

    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        n, c = x.shape[:2]
        d = x.ndim - 2
        sizes = torch.tensor(self._sizes(x), device=x.device)
        depths = torch.tensor(self.depths, device=x.device)
        k = sizes[randint(0, len(sizes), (n,), generator, x.device)]
        depth = depths[randint(0, len(depths), (n,), generator, x.device)]
        big = int(sizes.max())
        c_in = c if self.mix_channels else 1
        l_max = int(depths.max())
        w = randn((n, l_max, c, c_in, *([big] * d)), generator, x.device)
        sigma = 1.0 / torch.sqrt(c_in * k.float() ** d)
        w = w * (sigma.view(n, 1, 1, 1, *([1] * d)) * _centre_mask(k, big, d).view(n, 1, 1, 1, *([big] * d)))
        params = {"k": k, "depth": depth, "weight": w}
        if self.mix:
            params["alpha"] = rand((n,), generator, x.device)
        return params

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        d = x.ndim - 2
        k_used = int(params["k"].max())
        depth = params["depth"]
        weight = _crop_kernel(params["weight"], d, k_used)
        groups = 1 if self.mix_channels else x.shape[1]
        out = repeat_per_sample(
            x, depth, lambda h, layer, rows: grouped_random_conv(h, _rows(weight[:, layer], rows), groups))
        if self.mix:
            out = _mix_with_input(out, x, params["alpha"])
        return out

    def extra_repr(self) -> str:
        return (f"kernel_sizes={self.kernel_sizes or 'default'}, depths={self.depths}, "
                f"mix_channels={self.mix_channels}, mix={self.mix}, " + super().extra_repr())


def _dc_ratio(w: torch.Tensor, ndim: int, grid: int = 8) -> torch.Tensor:
    """``||H(0)||_F / max_f ||H(f)||_F`` of kernels ``w`` of shape ``(..., C_out, C_in, k, ..., k)``:
    1 when the kernel passes low frequencies at least as strongly as any other (a smoothing-like
    kernel), near 0 for a band-/high-pass kernel. ``H`` is evaluated on a ``grid^d`` frequency grid."""
    h = torch.fft.fftn(w, s=(grid,) * ndim, dim=tuple(range(-ndim, 0))).abs().pow(2).sum((-ndim - 2, -ndim - 1))
    h = h.flatten(-ndim).sqrt()
    return h[..., 0] / h.max(-1).values.clamp_min(1e-12)


def random_jitter_offsets(shape, std: torch.Tensor, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Independent ``N(0, std_b²)`` offsets in voxels for every voxel and axis of sample ``b``, clipped to
    ``[-1, 1]`` voxel so that every voxel reads between its direct neighbours (at ``std_b = 0.3`` the clip
    touches 0.09 % of the offsets; it is what lets :func:`jitter_warp` sample a volume slice by slice).
    ``shape``: the image's ``(B, C, *S)``; returns ``(B, *S, d)``, axes in ``grid_sample``'s ``(x, y[, z])``
    order (``x`` = last spatial axis)."""
    b, spatial = shape[0], shape[2:]
    d = len(spatial)
    return randn((b, *spatial, d), generator, device).mul_(std.view(b, *([1] * d), 1)).clamp_(-1.0, 1.0)


def _identity_grid(spatial, device) -> torch.Tensor:
    """``grid_sample``'s identity grid ``(*S, d)``, normalized, ``(x, y[, z])`` order, ``align_corners=True``."""
    axes = [torch.linspace(-1, 1, s, device=device) for s in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], -1)


def jitter_warp_plan(offsets: torch.Tensor):
    """What :func:`jitter_warp` needs from :func:`random_jitter_offsets` ``(B, *S, d)``, computed once for the
    ``L`` repetitions that reuse it: in 2D the sampling grid ``(B, H, W, 2)``; in 3D the in-slice grid
    ``(B, D, H, W, 2)`` and the z weights ``(B, D, 3, H, W)`` of each voxel's lower, own and upper slice."""
    spatial = offsets.shape[1:-1]
    hw = spatial[-2:]
    scale = torch.tensor([2.0 / max(s - 1, 1) for s in hw[::-1]], device=offsets.device)
    grid = torch.addcmul(_identity_grid(hw, offsets.device), offsets[..., :2], scale)
    if len(spatial) == 2:
        return grid
    dz = offsets[..., 2]
    w_lo, w_hi = (-dz).clamp_min(0), dz.clamp_min(0)
    return grid, torch.stack([w_lo, 1 - w_lo - w_hi, w_hi], 2)


def jitter_warp(h: torch.Tensor, plan, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``h`` read at every voxel's own offset (bilinear / trilinear, border padding, the values of
    ``grid_sample(h, identity + offsets, align_corners=True)``), given the offsets'
    :func:`jitter_warp_plan`: ``h`` ``(B, C, *S)`` -> same shape; ``rows``: the samples of the plan that
    ``h`` holds (``None``: all).

    3D is computed exactly as 2D bilinear sampling of each voxel's own slice and its two neighbours (one
    batched 2D ``grid_sample`` over ``B·D`` slices with ``3C`` channels), mixed linearly by the z offset
    (``|Δz| <= 1`` voxel): the values of a 3D ``grid_sample``, in less than half its time on CPU, where 3D
    sampling has no vectorized kernel (2 × 1 × 64³: 2.7 ms against 6.2 ms on 2 cores).
    """
    if h.ndim == 4:
        return F.grid_sample(h, _rows(plan, rows), mode="bilinear", padding_mode="border", align_corners=True)
    g2, w_z = (_rows(t, rows) for t in plan)
    b, c, d, hh, w = h.shape
    padded = F.pad(h, (0, 0, 0, 0, 1, 1), mode="replicate").transpose(1, 2)  # (B, D+2, C, H, W)
    slices = padded.unfold(1, 3, 1).permute(0, 1, 2, 5, 3, 4).reshape(b * d, c * 3, hh, w)
    s = F.grid_sample(slices, g2.view(b * d, hh, w, 2), mode="bilinear", padding_mode="border",
                      align_corners=True).view(b, d, c, 3, hh, w)
    out = s[:, :, :, 0] * w_z[:, :, None, 0]
    out.addcmul_(s[:, :, :, 1], w_z[:, :, None, 1]).addcmul_(s[:, :, :, 2], w_z[:, :, None, 2])
    return out.transpose(1, 2)


@register_augmentation
class ProgressiveRandConv(BatchAugmentation):
    """Progressive RC (Choi et al., CVPR 2023): the **same** random block applied ``L`` times.

    Block: ``h <- tanh(γ' · std(W * D(h)) + β')`` with a ``k=3`` kernel ``W = N(0,1) · exp(-|i|²/(2σ_g²))``
    (Gaussian window over the kernel offsets ``i``), ``σ_g ~ U(ε, 1)``, per-channel standardization
    ``std`` (exact: no additive eps, which would shrink faint outputs at every repetition),
    ``γ, β ~ N(0, 0.5²)`` per channel, and ``D`` the optional random deformation (the paper's deformable
    offsets): every voxel reads its input at an offset ``Δ ~ N(0, σ_Δ²/L)`` voxels per axis, clipped to
    ±1 voxel (bilinear / trilinear sampling, :func:`jitter_warp`; one offset field per sample; the
    ``1/L`` variance keeps the jitter accumulated over ``L`` repetitions near ``σ_Δ``, so the anatomy
    stays on its unchanged label).
    ``L ~ U{1..L_max}`` per sample; ``W``, ``Δ``, ``σ_g``, ``γ``, ``β`` are reused in every repetition.

    Two guards keep the anatomy (200 draws of the smooth / noisy synthetic vessel image, 1 channel, before
    → after: collapsed draws, i.e. structure score < 0.3, 37 % / 40 % → 0.5 % / 0.5 %, median score
    after 0.94 / 0.93; RandConv 0.0 % / 1.0 %, median 0.62 / 0.60; all images and channel counts in the
    README; ``benchmarks/structure_collapse.py``):

    1. **Low-pass-dominant kernel** (``dc_ratio_min``): a block repeated ``L`` times filters with
       ``H(f)^L``, which keeps only the kernel's strongest frequency. A zero-mean random 3×3 kernel often
       peaks at high frequency, and 10 repetitions turn the image into that frequency's checkerboard
       (collapsed draws had ``||H(0)|| / max ||H|| = 0.32`` in the median, kept ones 0.99). Each sample
       draws ``guard_candidates`` kernels (one batched draw) and keeps the first whose ratio is
       ``>= dc_ratio_min`` (0.95), else the one with the largest ratio. The paper's distribution is
       otherwise unchanged (same N(0,1)·window law, conditioned on the ratio).
    2. **Depth-scaled contrast** (``scale_affine_by_depth``): the affine + tanh applied ``L`` times
       compounds its contrast gain and turns faint background texture into strong edges (collapsed
       draws kept the main vessels but had larger ``|γ|``, ``|β|``). ``γ' = γ/L``, ``β' = β/L`` keep
       the summed intensity change of ``L`` blocks at a single block's, while the spatial filtering
       still grows with ``L`` as the paper intends (``1/sqrt(L)`` left 3 % collapsed on a noisy image,
       ``1/L`` 1 %).

    Decisions where the paper is vague: the weight scale is irrelevant because of the standardization
    that follows the convolution, so ``W ~ N(0, 1)``; ``ε = sigma_g_min = 0.01``; ``p = 0.5`` as for RC;
    deformation off by default (``deform_std = 0``); ``nnUNetTrainerProRandConvDeform`` uses
    ``deform_std = 0.3`` voxels (offsets of a few tenths of a voxel jitter texture without moving the
    anatomy away from the unchanged label).

    Optional mix (``mix=True``, RandConv's "mix" variant carried over; not in the paper):
    ``out = a·m(PRC(x)) + (1-a)·x``, ``a ~ U(0, 1)`` per sample, where ``m`` gives the blocks' output the
    input's per-sample, per-channel mean and std first. Decision: the ``tanh`` output's std is about
    ``|γ|/L`` (0.04-0.4 at the defaults), far below nnU-Net-normalized input's 1, so without ``m`` the mix
    would be the input almost unchanged whatever ``a`` is; with it, ``a`` is the augmented share as in RandConv.

    Args:
        max_depth: ``L_max`` (default 10).  kernel_size: ``k`` (default 3).
        deform_std: ``σ_Δ`` in voxels (0 = no deformation).
        dc_ratio_min, guard_candidates: guard 1 (``dc_ratio_min=0`` switches it off).
        scale_affine_by_depth: guard 2.
        mix_channels: kernels span all channels (default) or one kernel per modality.
        mix: mix with the input as above (default off).
        p, same_on_batch, keep_background: see :class:`BatchAugmentation`.
    """

    def __init__(self, max_depth: int = 10, kernel_size: int = 3, sigma_g_min: float = 0.01,
                 affine_std: float = 0.5, deform_std: float = 0.0, dc_ratio_min: float = 0.95,
                 guard_candidates: int = 16, scale_affine_by_depth: bool = True, mix_channels: bool = True,
                 mix: bool = False, p: float = 0.5, same_on_batch: bool = False, keep_background: bool = False):
        super().__init__(p=p, same_on_batch=same_on_batch, keep_background=keep_background)
        if max_depth < 1:
            raise ValueError(f"ProgressiveRandConv: max_depth must be >= 1, got {max_depth}")
        self.max_depth = int(max_depth)
        self.kernel_size = _check_sizes([kernel_size], "ProgressiveRandConv")[0]
        if not 0 < sigma_g_min <= 1:
            raise ValueError(f"ProgressiveRandConv: sigma_g_min must be in (0, 1], got {sigma_g_min}")
        if deform_std < 0 or not 0 <= dc_ratio_min <= 1 or guard_candidates < 1:
            raise ValueError("ProgressiveRandConv: need deform_std >= 0, 0 <= dc_ratio_min <= 1, "
                             f"guard_candidates >= 1; got {deform_std}, {dc_ratio_min}, {guard_candidates}")
        self.sigma_g_min = float(sigma_g_min)
        self.affine_std = float(affine_std)
        self.deform_std = float(deform_std)
        self.dc_ratio_min = float(dc_ratio_min)
        self.guard_candidates = int(guard_candidates)
        self.scale_affine_by_depth = bool(scale_affine_by_depth)
        self.mix_channels = bool(mix_channels)
        self.mix = bool(mix)

    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        n, c = x.shape[:2]
        d = x.ndim - 2
        k = self.kernel_size
        c_in = c if self.mix_channels else 1
        depth = randint(1, self.max_depth + 1, (n,), generator, x.device)
        sigma_g = self.sigma_g_min + (1 - self.sigma_g_min) * rand((n,), generator, x.device)
        offs = torch.arange(k, device=x.device, dtype=torch.float32) - k // 2
        grids = torch.meshgrid(*([offs] * d), indexing="ij")
        r2 = sum(g ** 2 for g in grids)  # (k,)*d
        window = torch.exp(-r2[None] / (2 * sigma_g.view(n, *([1] * d)) ** 2))
        m = self.guard_candidates if self.dc_ratio_min > 0 else 1
        w = randn((n, m, c, c_in, *([k] * d)), generator, x.device) * window[:, None, None, None]
        if m > 1:  # guard 1: the first candidate passing low frequencies best, per sample
            ratio = _dc_ratio(w, d)  # (n, m)
            ok = ratio >= self.dc_ratio_min
            pick = torch.where(ok.any(1), ok.float().argmax(1), ratio.argmax(1))
            w = w[torch.arange(n, device=x.device), pick]
        else:
            w = w[:, 0]
        gamma = self.affine_std * randn((n, c), generator, x.device)
        beta = self.affine_std * randn((n, c), generator, x.device)
        if self.scale_affine_by_depth:  # guard 2
            s = depth.float().reciprocal()[:, None]
            gamma, beta = gamma * s, beta * s
        params = {"depth": depth, "sigma_g": sigma_g, "weight": w, "gamma": gamma, "beta": beta}
        if self.deform_std > 0:
            # the same offsets are applied L times: σ_Δ/sqrt(L) keeps the accumulated jitter near σ_Δ
            params["offsets"] = random_jitter_offsets(x.shape, self.deform_std * depth.float().rsqrt(), generator,
                                                      x.device)
        if self.mix:  # drawn last, so the other parameters are the unmixed draw's for the same generator
            params["alpha"] = rand((n,), generator, x.device)
        return params

    def block(self, h: torch.Tensor, params: dict, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One application of the random block (``(B, C, *S)`` -> same shape); ``rows``: the samples of
        ``params`` that ``h`` holds (``None``: all)."""
        if "offsets" in params:
            plan = params.get("warp_plan")
            h = jitter_warp(h, jitter_warp_plan(params["offsets"]) if plan is None else plan, rows)
        groups = 1 if self.mix_channels else h.shape[1]
        y = grouped_random_conv(h, _rows(params["weight"], rows), groups)
        dims = tuple(range(2, y.ndim))
        # exact standardization: an additive eps (instance norm's 1e-5) would shrink a low-contrast block
        # output a little more at every repetition until nothing but rounding noise is left
        # (two passes, mean then the centred sum of squares as a dot product: exact, and faster on CPU
        # than torch.std_mean); γ·(y − μ)/s + β as one multiply-add
        y = y - y.mean(dims, keepdim=True)
        flat = y.flatten(2)
        sd = (torch.linalg.vecdot(flat, flat) / flat.shape[-1]).sqrt().clamp_min(1e-12)
        sd = sd.view(*sd.shape, *([1] * len(dims)))
        gamma, beta = (_rows(params[k], rows).view(*sd.shape) for k in ("gamma", "beta"))
        return torch.addcmul(beta, gamma / sd, y).tanh_()

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        if "offsets" in params:  # the warp's set-up once for all L repetitions
            params = {**params, "warp_plan": jitter_warp_plan(params["offsets"])}
        out = repeat_per_sample(x, params["depth"], lambda h, _, rows: self.block(h, params, rows))
        if self.mix:
            out = _mix_with_input(match_mean_std(out, x), x, params["alpha"])
        return out

    def extra_repr(self) -> str:
        return (f"max_depth={self.max_depth}, kernel_size={self.kernel_size}, sigma_g_min={self.sigma_g_min}, "
                f"deform_std={self.deform_std}, dc_ratio_min={self.dc_ratio_min}, "
                f"scale_affine_by_depth={self.scale_affine_by_depth}, mix_channels={self.mix_channels}, "
                f"mix={self.mix}, " + super().extra_repr())


@register_augmentation
class GIN(BatchAugmentation):
    """Global Intensity Non-linear augmentation (Ouyang et al.): a random shallow non-linear CNN.

    ``n_layers`` convolutions ``C -> h -> ... -> h -> C`` (``h = hidden_channels = 2``), kernel size
    drawn per layer and sample from ``{1, 3}``, weights and biases ``~ N(0, 1)`` (the biases follow the
    authors' description of a random shift; our decision where methods.md is silent), LeakyReLU (slope
    0.2) between layers. The output is rescaled to the input's Frobenius norm per sample and mixed
    ``out = a·GIN(x) + (1-a)·x``, ``a ~ U(0, 1)``; the base class then re-standardizes.
    ``mix_channels=False`` runs an independent network per modality (``1 -> h -> ... -> 1``) and
    rescales each channel to its own norm, so modalities never influence each other.
    Default ``p = 0.5`` (our decision, as for RC).
    """

    def __init__(self, n_layers: int = 4, kernel_sizes: Sequence[int] = (1, 3), hidden_channels: int = 2,
                 negative_slope: float = 0.2, mix_channels: bool = True, p: float = 0.5, same_on_batch: bool = False,
                 keep_background: bool = False):
        super().__init__(p=p, same_on_batch=same_on_batch, keep_background=keep_background)
        if n_layers < 1 or hidden_channels < 1:
            raise ValueError(f"GIN: n_layers and hidden_channels must be >= 1, got {n_layers}, {hidden_channels}")
        self.n_layers = int(n_layers)
        self.kernel_sizes = _check_sizes(kernel_sizes, "GIN")
        self.hidden_channels = int(hidden_channels)
        self.negative_slope = float(negative_slope)
        self.mix_channels = bool(mix_channels)

    def _layer_channels(self, c: int):
        """Per-group (in, out) channels of every layer; groups per sample is 1 or ``C``."""
        cin = c if self.mix_channels else 1
        h = self.hidden_channels
        chans = [cin] + [h] * (self.n_layers - 1) + [cin]
        return list(zip(chans[:-1], chans[1:]))

    def get_parameters(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> dict:
        n, c = x.shape[:2]
        d = x.ndim - 2
        g = 1 if self.mix_channels else c
        sizes = torch.tensor(self.kernel_sizes, device=x.device)
        big = int(sizes.max())
        params = {"alpha": rand((n,), generator, x.device)}
        for i, (ci, co) in enumerate(self._layer_channels(c)):
            k = sizes[randint(0, len(sizes), (n,), generator, x.device)]
            w = randn((n, g * co, ci, *([big] * d)), generator, x.device)
            params[f"k{i}"] = k
            params[f"weight{i}"] = w * _centre_mask(k, big, d).view(n, 1, 1, *([big] * d))
            params[f"bias{i}"] = randn((n, g * co), generator, x.device)
        return params

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        d = x.ndim - 2
        g = 1 if self.mix_channels else x.shape[1]
        h = x
        for i in range(self.n_layers):
            w = _crop_kernel(params[f"weight{i}"], d, int(params[f"k{i}"].max()))
            h = grouped_random_conv(h, w, g, params[f"bias{i}"])
            if i < self.n_layers - 1:
                h = F.leaky_relu(h, self.negative_slope)
        dims = tuple(range(1 if self.mix_channels else 2, x.ndim))
        norm_x = x.pow(2).sum(dims, keepdim=True).sqrt()
        norm_h = h.pow(2).sum(dims, keepdim=True).sqrt()
        h = h * (norm_x / norm_h.clamp_min(1e-8))
        return _mix_with_input(h, x, params["alpha"])

    def extra_repr(self) -> str:
        return (f"n_layers={self.n_layers}, kernel_sizes={self.kernel_sizes}, hidden_channels={self.hidden_channels}, "
                f"mix_channels={self.mix_channels}, " + super().extra_repr())


@register_augmentation
class ProgressiveRandConvDeform(ProgressiveRandConv):
    """Progressive RC with the paper's full block: random deformable offsets ``Δ ~ N(0, σ_Δ²)``,
    ``σ_Δ = deform_std = 0.3`` voxels by default (see :class:`ProgressiveRandConv`)."""

    def __init__(self, deform_std: float = 0.3, **kwargs):
        super().__init__(deform_std=deform_std, **kwargs)
