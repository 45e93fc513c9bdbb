"""nnU-Net's recommended residual-encoder presets with the plugin's trainers, through the real CLI.

``nnUNetv2_plan_experiment -pl nnUNetPlannerResEncM`` writes ``nnUNetResEncUNetMPlans`` (a
``ResidualEncoderUNet``) beside the fixture's default plans; it reuses the default plans' preprocessed
data (same ``data_identifier``), so nothing is preprocessed again. Then ``nnUNetv2_train -p
nnUNetResEncUNetMPlans`` and ``nnUNetv2_predict -p nnUNetResEncUNetMPlans`` for ``nnUNetTrainerRAS4DG`` (RSD
appended to the residual bottleneck) and ``nnUNetTrainerRandConv``; RAS4DG in 2D in the default suite, the rest ``slow``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import _once, run_cli
from test_randconv import _train_and_predict

PLANS = "nnUNetResEncUNetMPlans"


def _plan_resenc(dataset: dict) -> None:
    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset["name"]
    _once(pre, "resenc_m", lambda: run_cli(["nnUNetv2_plan_experiment", "-d", dataset["id"],
                                            "-pl", "nnUNetPlannerResEncM"]))
    plans = json.loads((pre / f"{PLANS}.json").read_text())
    arch = plans["configurations"][dataset["config"]]["architecture"]["network_class_name"]
    assert arch.endswith("ResidualEncoderUNet"), arch


@pytest.mark.parametrize("trainer, fixture", [
    ("nnUNetTrainerRAS4DG", "preprocessed_2d"),
    pytest.param("nnUNetTrainerRandConv", "preprocessed_2d", marks=pytest.mark.slow),
    pytest.param("nnUNetTrainerRAS4DG", "preprocessed_3d", marks=pytest.mark.slow),
    pytest.param("nnUNetTrainerRandConv", "preprocessed_3d", marks=pytest.mark.slow),
])
def test_resenc_m_plans_train_and_predict_through_the_cli(trainer, fixture, request, tmp_path):
    dataset = request.getfixturevalue(fixture)
    _plan_resenc(dataset)
    _train_and_predict(dataset, dataset["config"], trainer, tmp_path, plans=PLANS)
    out = (Path(os.environ["nnUNet_results"]) / dataset["name"] / f"{trainer}__{PLANS}__{dataset['config']}"
           / "fold_0")
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["init_args"]["plans"]["plans_name"] == PLANS
    rsd_keys = [k for k in ckpt["network_weights"] if ".sru." in k or ".cru." in k]
    if trainer == "nnUNetTrainerRAS4DG":  # RSD sits in the residual bottleneck's block list
        n_stages = ckpt["init_args"]["plans"]["configurations"][dataset["config"]]["architecture"]["arch_kwargs"][
            "n_stages"]
        # (the decoder holds the encoder too: its keys repeat under ``decoder.encoder.``)
        assert rsd_keys and all(k.removeprefix("decoder.").startswith(f"encoder.stages.{n_stages - 1}.blocks.")
                                for k in rsd_keys), rsd_keys[:3]
    else:
        assert not rsd_keys
