"""nnunet_rc: single-source domain generalization for nnU-Net v2.

The library part (``nnunet_rc.augment``, ``nnunet_rc.blocks``) is pure PyTorch and never imports
nnU-Net; the trainers (``nnunet_rc.trainers``), converters (``nnunet_rc.dataset_conversion``),
evaluation and CLI build on nnU-Net.
"""
from pathlib import Path

__version__ = "0.1.0"


def trainer_path() -> str:
    """Folder to put in nnU-Net's ``nnUNet_extTrainer`` variable.

    It holds a single re-export module; the trainer classes themselves live in the importable package
    ``nnunet_rc.trainers`` so nnU-Net's worker processes can pickle them.
    """
    return str(Path(__file__).resolve().parent / "nnunet_ext_trainer")
