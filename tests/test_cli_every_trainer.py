"""Every trainer of the family through the real nnU-Net CLI, in 2d and 3d_fullres: train a short schedule,
then ``nnUNetv2_predict`` with the same trainer (``slow``: ``make test-all``).

Run it on a GPU under nnU-Net's CUDA defaults (``torch.compile``, autocast + grad scaler, dynamo's
recompilations counted) with ``NNUNET_RC_TEST_DEVICE=cuda`` (see ``conftest.py``)."""
from __future__ import annotations

import pytest

from nnunet_rc import trainers
from test_randconv import _train_and_predict

#: run by the default suite already (same results folder: running them here too would race under xdist)
IN_DEFAULT_SUITE = {("nnUNetTrainerRandConv", "preprocessed_3d"), ("nnUNetTrainerRAS4DG", "preprocessed_2d")}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", trainers.__all__)
@pytest.mark.parametrize("which", ["preprocessed_2d", "preprocessed_3d"])
def test_every_trainer_trains_and_predicts_through_the_cli(trainer, which, request, tmp_path):
    if (trainer, which) in IN_DEFAULT_SUITE:
        pytest.skip("runs in the default suite")
    dataset = request.getfixturevalue(which)
    _train_and_predict(dataset, dataset["config"], trainer, tmp_path)
