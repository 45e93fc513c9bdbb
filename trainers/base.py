"""The family's base trainer: the two extension points every nnunet_rc trainer uses.

1. **Batch augmentations** (:meth:`nnUNetTrainerDGBaseline.build_batch_augmentations`): a list of
   :class:`nnunet_rc.augment.BatchAugmentation` applied to ``data`` on the training device inside
   :meth:`train_step`, after nnU-Net's CPU augmentation, under ``no_grad`` with autocast off (fp32), to
   the image channels only (never the target, never the cascade's one-hot channels, never in
   ``validation_step`` or inference).
2. **Network modification** (:meth:`nnUNetTrainerDGBaseline.modify_network`): applied inside
   ``build_network_architecture``, which ``nnUNetv2_predict`` calls too, so inference rebuilds exactly
   the trained network (e.g. the RSD bottleneck).

The base class itself changes nothing: it *is* the family's plain baseline, so every comparison
differs from it in one thing only.

Schedule overrides (for demos, benchmarks and tests; printed to the training log when used): the
environment variables ``NNUNET_RC_EPOCHS``, ``NNUNET_RC_ITERATIONS`` (training iterations per epoch)
and ``NNUNET_RC_VAL_ITERATIONS`` replace nnU-Net's ``num_epochs`` (1000), ``num_iterations_per_epoch``
(250) and ``num_val_iterations_per_epoch`` (50); ``NNUNET_RC_PLOT_EVERY=N`` writes nnU-Net's
``progress.png`` every ``N`` epochs and after the last one instead of after every epoch (nnU-Net draws a
30 x 54 inch figure: ~0.8 s per epoch on 2 CPU cores, a fifth of a short CPU epoch; nothing else changes).
"""
from __future__ import annotations

import os
from typing import List

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_rc.augment import BatchAugmentation

__all__ = ["nnUNetTrainerDGBaseline", "SCHEDULE_ENV_VARS"]

#: environment variable -> trainer attribute it overrides
SCHEDULE_ENV_VARS = {
    "NNUNET_RC_EPOCHS": "num_epochs",
    "NNUNET_RC_ITERATIONS": "num_iterations_per_epoch",
    "NNUNET_RC_VAL_ITERATIONS": "num_val_iterations_per_epoch",
    "NNUNET_RC_PLOT_EVERY": "plot_every",
}


class nnUNetTrainerDGBaseline(nnUNetTrainer):
    """nnU-Net's default trainer as the family's base and plain baseline (no batch augmentation,
    unchanged network). Subclasses override :meth:`build_batch_augmentations` and/or
    :meth:`modify_network`; hyper-parameters are class attributes.
    """

    #: Seed of the batch-augmentation generator. Rank ``r`` at epoch ``e`` draws from
    #: ``seed + 1_000_003 * r + e``: every DDP rank gets different kernels, and a run resumed with
    #: ``--c`` draws exactly what the uninterrupted run would have drawn.
    augmentation_seed: int = 12345

    #: write ``progress.png`` every this many epochs and after the last one (nnU-Net: every epoch)
    plot_every: int = 1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_schedule_overrides()
        #: number of image channels; the cascade appends one-hot channels after them, never augmented
        self.num_image_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {})))
        self.batch_augmentations: List[BatchAugmentation] = list(self.build_batch_augmentations())
        self.augmentation_generator = torch.Generator(device=self.device)
        self.augmentation_generator.manual_seed(self.augmentation_seed_for(0))
        #: training batches that went through the batch augmentations in the current epoch
        self.num_augmented_batches = 0
        self.print_to_log_file(self.describe_augmentation(), also_print_to_console=True)

    # ---- extension point 1: batch augmentations -------------------------------------------------------
    def build_batch_augmentations(self) -> List[BatchAugmentation]:
        """The augmentations applied, in order, to every training batch. The baseline has none."""
        return []

    def augmentation_seed_for(self, epoch: int) -> int:
        """Seed of the augmentation generator for ``epoch`` on this process's DDP rank."""
        return int(self.augmentation_seed) + 1_000_003 * int(self.local_rank) + int(epoch)

    def augment_batch(self, data: torch.Tensor) -> torch.Tensor:
        """Apply the batch augmentations to the image channels of ``data`` (already on the device)."""
        if not self.batch_augmentations:
            return data
        n = self.num_image_channels or data.shape[1]
        with torch.no_grad(), torch.autocast(device_type=data.device.type, enabled=False):
            x = data[:, :n]
            for augmentation in self.batch_augmentations:
                x = augmentation(x, generator=self.augmentation_generator)
            data = torch.cat((x, data[:, n:]), dim=1) if data.shape[1] > n else x
        self.num_augmented_batches += 1
        return data

    def train_step(self, batch: dict) -> dict:
        data = self.augment_batch(batch["data"].to(self.device, non_blocking=True))
        return super().train_step({**batch, "data": data})

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.augmentation_generator.manual_seed(self.augmentation_seed_for(self.current_epoch))
        self.num_augmented_batches = 0

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        if self.batch_augmentations:
            self.print_to_log_file(f"batch augmentations applied to {self.num_augmented_batches} training batches")

    def on_epoch_end(self):
        last = self.current_epoch == self.num_epochs - 1
        if self.plot_every <= 1 or last or (self.current_epoch + 1) % self.plot_every == 0:
            return super().on_epoch_end()
        self.logger.plot_progress_png = lambda output_folder: None  # this epoch only: shadows the method
        try:
            super().on_epoch_end()
        finally:
            del self.logger.plot_progress_png

    # ---- extension point 2: network modification --------------------------------------------------------
    @classmethod
    def modify_network(cls, network: nn.Module) -> nn.Module:
        """Change the network built from the plans (e.g. insert a bottleneck block). Must be
        deterministic given the plans: ``nnUNetv2_predict`` calls it again and loads weights strictly."""
        return network

    @classmethod
    def changes_network(cls) -> bool:
        """Whether this trainer overrides :meth:`modify_network` (its network differs from the plans')."""
        return cls.modify_network.__func__ is not nnUNetTrainerDGBaseline.modify_network.__func__

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        network = super().build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                     num_output_channels, enable_deep_supervision)
        return cls.modify_network(network)

    # ---- logging ------------------------------------------------------------------------------------
    def describe_augmentation(self) -> str:
        lines = [f"nnunet_rc trainer {type(self).__name__}: "
                 f"{len(self.batch_augmentations)} batch augmentation(s) on the first "
                 f"{self.num_image_channels} channel(s), seed {self.augmentation_seed}"]
        lines += [f"  {i}: {a!r}".replace("\n", " ") for i, a in enumerate(self.batch_augmentations)]
        if self.changes_network():
            lines.append(f"  network modified by {type(self).__name__}.modify_network")
        return "\n".join(lines)

    def _apply_schedule_overrides(self) -> None:
        for var, attr in SCHEDULE_ENV_VARS.items():
            value = os.environ.get(var)
            if value is None or value == "":
                continue
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"environment variable {var} must be a positive integer, got {value!r}") from None
            if number < 1:
                raise ValueError(f"environment variable {var} must be a positive integer, got {value!r}")
            setattr(self, attr, number)
            self.print_to_log_file(f"{var}={number}: {attr} set to {number}", also_print_to_console=True)
