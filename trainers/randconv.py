"""Random-convolution trainers: RandConv, Progressive RC, GIN, and RandConv with a consistency loss.

Each trainer is a list of library augmentations (:mod:`nnunet_rc.augment.randconv`) applied by the
family base in ``train_step`` (never in validation or inference). Hyper-parameters are class
attributes; the named variants below change one of them.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import autocast

from nnunetv2.utilities.helpers import dummy_context

from nnunet_rc.augment import GIN, BatchAugmentation, ProgressiveRandConv, RandConv
from nnunet_rc.augment.randconv import DEFAULT_KERNEL_SIZES, kernel_sizes_within_reach, plan_scale
from nnunet_rc.losses import consistency_loss

from .base import nnUNetTrainerDGBaseline

__all__ = [
    "nnUNetTrainerRandConv", "nnUNetTrainerRandConvK3", "nnUNetTrainerRandConvDepth1",
    "nnUNetTrainerRandConvPerModality", "nnUNetTrainerRandConvNoMix", "nnUNetTrainerRandConvKeepBG",
    "nnUNetTrainerRandConvReach",
    "nnUNetTrainerProRandConv", "nnUNetTrainerProRandConvDeform", "nnUNetTrainerProRandConvMix", "nnUNetTrainerGIN",
    "nnUNetTrainerRandConvCL",
]


class nnUNetTrainerRandConv(nnUNetTrainerDGBaseline):
    """Random Convolutions on half the training samples, in RandConv's mix variant: ``a·RC(x) + (1-a)·x``,
    ``a ~ U(0, 1)`` per sample (otherwise methods.md's defaults, where mixing is off).

    Mixing is on since 2026-12-07: attempt A6 of docs/trainer_attempts.md kept it after it raised in-domain and
    out-of-domain Dice in both retinal directions (DRIVE <-> CHASE_DB1, every fold). Trainings of this class
    before that date are unmixed; that setting is :class:`nnUNetTrainerRandConvNoMix`. The named variants below
    change one attribute of this class, so they mix too (A6 did not test them; A1's RandConvReach ran unmixed).
    """

    rc_kernel_sizes: Optional[Tuple[int, ...]] = None  # None: {1,3,5,7} in 2D, {1,3,5} in 3D
    rc_depths: Tuple[int, ...] = (1, 2, 3, 4)
    rc_mix_channels: bool = True
    rc_mix: bool = True
    rc_p: float = 0.5
    rc_keep_background: bool = False

    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        return [RandConv(kernel_sizes=self.rc_kernel_sizes, depths=self.rc_depths, mix_channels=self.rc_mix_channels,
                         mix=self.rc_mix, p=self.rc_p, keep_background=self.rc_keep_background)]


class nnUNetTrainerRandConvK3(nnUNetTrainerRandConv):
    """RandConv with 3-wide kernels only."""
    rc_kernel_sizes = (3,)


class nnUNetTrainerRandConvDepth1(nnUNetTrainerRandConv):
    """RandConv with a single random layer."""
    rc_depths = (1,)


class nnUNetTrainerRandConvPerModality(nnUNetTrainerRandConv):
    """RandConv with one kernel per modality (channels are not mixed)."""
    rc_mix_channels = False


class nnUNetTrainerRandConvNoMix(nnUNetTrainerRandConv):
    """RandConv without the mix: the random network's output replaces the input (the RandConv paper's base
    variant, and ``nnUNetTrainerRandConv`` before attempt A6 was kept on 2026-12-07)."""
    rc_mix = False


class nnUNetTrainerRandConvKeepBG(nnUNetTrainerRandConv):
    """RandConv leaving the zero background (nonzero-mask normalization) untouched."""
    rc_keep_background = True


class nnUNetTrainerRandConvReach(nnUNetTrainerRandConv):
    """RandConv whose kernels keep one physical reach at any plan: of the kernel sizes, only those whose reach
    in the dataset's own voxels, ``(k - 1)/2 * s``, is at most ``rc_max_reach`` (3: the largest 2D default's
    reach at ``s = 1``), ``s`` = the plan's spacing over the dataset's median spacing (largest axis ratio).
    Same as ``nnUNetTrainerRandConv`` at nnU-Net's full-resolution plans (``s = 1``); ``{1, 3}`` instead of
    ``{1, 3, 5, 7}`` at the ``cpu`` profile's plan (``s = 3``), where a 7-wide kernel spans 21 of DRIVE's
    pixels across vessels 1-8 pixels wide. Attempt A1 of docs/trainer_attempts.md (a variant until it is kept)."""
    rc_max_reach: float = 3.0

    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        scale = plan_scale(self.configuration_manager.spacing,
                           self.plans_manager.plans["original_median_spacing_after_transp"])
        sizes = self.rc_kernel_sizes or DEFAULT_KERNEL_SIZES[len(self.configuration_manager.patch_size)]
        self.rc_kernel_sizes = kernel_sizes_within_reach(sizes, scale, self.rc_max_reach)
        return super().build_batch_augmentations()


class nnUNetTrainerProRandConv(nnUNetTrainerDGBaseline):
    """Progressive RC: one random block applied ``L ~ U{1..max_depth}`` times."""

    prc_max_depth: int = 10
    prc_mix_channels: bool = True
    prc_p: float = 0.5
    prc_deform_std: float = 0.0
    prc_mix: bool = False

    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        return [ProgressiveRandConv(max_depth=self.prc_max_depth, mix_channels=self.prc_mix_channels, p=self.prc_p,
                                    deform_std=self.prc_deform_std, mix=self.prc_mix)]


class nnUNetTrainerProRandConvDeform(nnUNetTrainerProRandConv):
    """Progressive RC with the paper's full block: random deformable offsets (σ_Δ = 0.3 voxels)."""

    prc_deform_std: float = 0.3


class nnUNetTrainerProRandConvMix(nnUNetTrainerProRandConv):
    """Progressive RC mixed with its input, ``a·PRC(x) + (1-a)·x``, ``a ~ U(0, 1)`` per sample (the blocks'
    output at the input's mean and std first: :class:`nnunet_rc.augment.ProgressiveRandConv`). Attempt A8 of
    docs/trainer_attempts.md: RandConv's mix, kept for RandConv by A6, carried over to Progressive RC with its own
    runs; not kept (DRIVE -> CHASE_DB1 in-domain higher in 2 of 3 folds only), so a named variant, not a default."""

    prc_mix: bool = True


class nnUNetTrainerGIN(nnUNetTrainerDGBaseline):
    """GIN: random shallow non-linear CNN mixed with the input."""

    gin_n_layers: int = 4
    gin_hidden_channels: int = 2
    gin_mix_channels: bool = True
    gin_p: float = 0.5

    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        return [GIN(n_layers=self.gin_n_layers, hidden_channels=self.gin_hidden_channels,
                    mix_channels=self.gin_mix_channels, p=self.gin_p)]


class nnUNetTrainerRandConvCL(nnUNetTrainerRandConv):
    """RandConv plus consistency loss (methods.md): two views per sample in one forward pass.

    View 1 is the clean batch, view 2 a RandConv view (``rc_p = 1``: always augmented). The loss is
    nnU-Net's own loss on both views plus ``consistency_weight`` times
    :func:`nnunet_rc.losses.consistency_loss` of the two views' highest-resolution outputs. The batch
    seen by the network is twice nnU-Net's batch size. Autocast and grad scaler as in nnU-Net.
    """

    rc_p = 1.0
    consistency_weight: float = 5.0

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [torch.cat((t, t)) for t in (i.to(self.device, non_blocking=True) for i in target)]
        else:
            target = torch.cat((target, target)).to(self.device, non_blocking=True)
        data = torch.cat((data, self.augment_batch(data)))
        n = batch["data"].shape[0]

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            seg = self.loss(output, target)
            top = output[0] if isinstance(output, (list, tuple)) else output
            loss = seg + self.consistency_weight * consistency_loss(top[:n], top[n:])

        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}
