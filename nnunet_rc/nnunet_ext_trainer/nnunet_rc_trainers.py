"""Re-export of the nnunet_rc trainers for nnU-Net's ``nnUNet_extTrainer`` lookup.

nnU-Net imports the modules of this folder under temporary top-level names and drops them again, so
no class may be defined here: they are defined in ``nnunet_rc.trainers`` and only re-exported.
"""
from nnunet_rc.trainers import *  # noqa: F401,F403
from nnunet_rc.trainers import __all__  # noqa: F401
