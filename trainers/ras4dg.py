"""RAS4DG trainers: the paper's ablation grid (Table 2) over RASS, RMS and the RSD bottleneck, plus RC+RSD.

Augmentations (library: :mod:`nnunet_rc.augment.rass`, :mod:`nnunet_rc.augment.rms`) run on the training
batch only, RMS after RASS. RSD (:mod:`nnunet_rc.blocks.rsd`) is appended to the deepest encoder stage
by :meth:`modify_network`, which ``nnUNetv2_predict`` calls too, so inference rebuilds the same network.
Hyper-parameters are class attributes (paper defaults, except ``nnUNetTrainerRASS``'s ``p``: attempt A2).
"""
from __future__ import annotations

from typing import List

from torch import nn

from nnunet_rc.augment import RASS, RMS, BatchAugmentation
from nnunet_rc.blocks import BLOCKS
from nnunet_rc.blocks.insert import append_to_bottleneck

from .base import nnUNetTrainerDGBaseline
from .randconv import nnUNetTrainerRandConv

__all__ = [
    "nnUNetTrainerRASS", "nnUNetTrainerRASSp1", "nnUNetTrainerRMS", "nnUNetTrainerRSD", "nnUNetTrainerRASS_RMS",
    "nnUNetTrainerRASS_RSD", "nnUNetTrainerRMS_RSD", "nnUNetTrainerRAS4DG", "nnUNetTrainerRAS4DGp05",
    "nnUNetTrainerRandConv_RSD",
]


class _WithRSD:
    """Mixin (put first in the bases): appends RSD after the deepest encoder stage of the network."""

    bottleneck_block: str = "RSD"

    @classmethod
    def modify_network(cls, network: nn.Module) -> nn.Module:
        return append_to_bottleneck(super().modify_network(network), BLOCKS[cls.bottleneck_block])


class _RAS4DGAugmentations(nnUNetTrainerDGBaseline):
    """Builds RASS and/or RMS (in that order) from the class attributes."""

    use_rass: bool = False
    use_rms: bool = False
    rass_alpha: float = 3.0
    rass_beta: float = 0.25
    rass_gamma: float = 2.0
    rass_p: float = 1.0
    rms_max_boxes: int = 3
    rms_p: float = 0.5

    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        augmentations: List[BatchAugmentation] = []
        if self.use_rass:
            augmentations.append(RASS(alpha=self.rass_alpha, beta=self.rass_beta, gamma=self.rass_gamma, p=self.rass_p))
        if self.use_rms:
            augmentations.append(RMS(max_boxes=self.rms_max_boxes, p=self.rms_p))
        return augmentations


class nnUNetTrainerRASS(_RAS4DGAugmentations):
    """RASS only, on half the samples (``p = 0.5``). Not the paper's ``p = 1``, which never shows the network an
    unaugmented image: attempt A2 of docs/trainer_attempts.md kept ``p = 0.5`` (2026-12-07; in-domain and
    out-of-domain Dice higher in both retinal directions, DRIVE <-> CHASE_DB1). Trainings of this class before
    that date used ``p = 1``; the paper's setting is :class:`nnUNetTrainerRASSp1`."""
    use_rass = True
    rass_p = 0.5


class nnUNetTrainerRASSp1(nnUNetTrainerRASS):
    """RASS on every sample (``p = 1``, the paper's setting and this trainer family's default in RASS_RMS,
    RASS_RSD and RAS4DG, where A2 was not tested)."""
    rass_p = 1.0


class nnUNetTrainerRMS(_RAS4DGAugmentations):
    """RMS only."""
    use_rms = True


class nnUNetTrainerRSD(_WithRSD, nnUNetTrainerDGBaseline):
    """RSD bottleneck only (no batch augmentation)."""


class nnUNetTrainerRASS_RMS(_RAS4DGAugmentations):
    """RASS then RMS."""
    use_rass = True
    use_rms = True


class nnUNetTrainerRASS_RSD(_WithRSD, nnUNetTrainerRASSp1):
    """RASS (the paper's ``p = 1``) and the RSD bottleneck."""


class nnUNetTrainerRMS_RSD(_WithRSD, nnUNetTrainerRMS):
    """RMS and the RSD bottleneck."""


class nnUNetTrainerRAS4DG(_WithRSD, nnUNetTrainerRASS_RMS):
    """Full RAS4DG: RASS, then RMS, and the RSD bottleneck."""


class nnUNetTrainerRAS4DGp05(nnUNetTrainerRAS4DG):
    """Full RAS4DG with RASS on half the samples (``p = 0.5``). Attempt A5 of docs/trainer_attempts.md, not kept
    (2026-12-07): in-domain Dice higher forward in every fold, but in reverse (CHASE_DB1 -> DRIVE) in 2 of 3
    folds only, so ``nnUNetTrainerRAS4DG`` keeps the paper's ``p = 1``. A named variant for the record."""
    rass_p = 0.5


class nnUNetTrainerRandConv_RSD(_WithRSD, nnUNetTrainerRandConv):
    """Random Convolutions (same defaults as ``nnUNetTrainerRandConv``) and the RSD bottleneck."""
