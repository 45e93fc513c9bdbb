"""The user's path through the real nnU-Net CLI: plan/preprocess (fixtures) -> nnUNetv2_train -tr <plugin
trainer> -device cpu -> nnUNetv2_predict with the same trainer, for 2d and 3d_fullres, and --c resume.

A test-only trainer (written to a temporary package and re-exported from a second nnUNet_extTrainer
folder, exactly as a user would add their own) records how often its batch augmentation ran during
training and during validation.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from conftest import run_cli, short_schedule_env, train_iterations

SPY_MODULE = '''
import json, os
from nnunet_rc.augment.base import BatchAugmentation
from nnunet_rc.trainers.base import nnUNetTrainerDGBaseline


class CountingAugmentation(BatchAugmentation):
    def __init__(self):
        super().__init__(p=1.0)
        self.calls = 0
        self.shapes = []

    def get_parameters(self, x, generator):
        return {"scale": 1 + x.new_ones(x.shape[0])}

    def apply(self, x, params):
        return x * params["scale"].view(-1, *([1] * (x.ndim - 1)))

    def forward(self, x, generator=None):
        self.calls += 1
        self.shapes.append(list(x.shape))
        return super().forward(x, generator)


class nnUNetTrainerRCSpyForTest(nnUNetTrainerDGBaseline):
    def build_batch_augmentations(self):
        self.spy = CountingAugmentation()
        self.spy_calls_in_validation = 0
        return [self.spy]

    def validation_step(self, batch):
        before = self.spy.calls
        out = super().validation_step(batch)
        self.spy_calls_in_validation += self.spy.calls - before
        return out

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.epoch_seeds = getattr(self, "epoch_seeds", []) + [self.augmentation_generator.initial_seed()]

    def _write_spy_report(self, **extra):
        report = {"train_calls": self.spy.calls, "calls_in_validation_step": self.spy_calls_in_validation,
                  "shapes": self.spy.shapes, "epoch_seeds": self.epoch_seeds, **extra}
        with open(os.path.join(self.output_folder, "spy.json"), "w") as f:
            json.dump(report, f)

    def on_train_end(self):
        super().on_train_end()
        self._write_spy_report()

    def perform_actual_validation(self, save_probabilities=False):
        before = self.spy.calls
        super().perform_actual_validation(save_probabilities)
        self._write_spy_report(calls_in_final_validation=self.spy.calls - before)
'''


@pytest.fixture(scope="module")
def spy_env(nnunet_env, tmp_path_factory):
    """nnUNet_extTrainer with two folders: the plugin's and one re-exporting a test-only trainer."""
    root = tmp_path_factory.mktemp("spy")
    (root / "pkg").mkdir()
    (root / "pkg" / "rc_spy_trainers.py").write_text(SPY_MODULE)
    (root / "ext").mkdir()
    (root / "ext" / "rc_spy_reexport.py").write_text("from rc_spy_trainers import *  # noqa\n")
    return short_schedule_env(
        nnUNet_extTrainer=os.pathsep.join([nnunet_env["nnUNet_extTrainer"], str(root / "ext")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root / "pkg"), os.environ.get("PYTHONPATH")])),
    )


def _results(dataset, trainer, config):
    return Path(os.environ["nnUNet_results"]) / dataset["name"] / f"{trainer}__nnUNetPlans__{config}" / "fold_0"


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _train_predict_and_check(dataset, spy_env, tmp_path):
    trainer, config = "nnUNetTrainerRCSpyForTest", dataset["config"]
    run_cli(["nnUNetv2_train", dataset["id"], config, "0", "-tr", trainer, "-device", "cpu"], env=spy_env)
    out = _results(dataset, trainer, config)
    assert (out / "checkpoint_final.pth").is_file()
    spy = json.loads((out / "spy.json").read_text())
    n_iter = train_iterations(spy_env)  # NNUNET_RC_ITERATIONS=2 (8 on CUDA), one epoch
    assert spy["train_calls"] == n_iter
    assert spy["epoch_seeds"] == [12345]
    assert spy["calls_in_validation_step"] == 0
    assert spy["calls_in_final_validation"] == 0
    n_channels = len(json.loads((dataset["raw"] / "dataset.json").read_text())["channel_names"])
    assert all(s[1] == n_channels for s in spy["shapes"])
    log = next(out.glob("training_log_*.txt")).read_text()
    assert f"batch augmentations applied to {n_iter} training batches" in log
    assert "CountingAugmentation(p=1.0" in log

    pred = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", dataset["raw"] / "imagesTr", "-o", pred, "-d", dataset["id"], "-c", config,
             "-f", "0", "-tr", trainer, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], env=spy_env)
    ending = ".png" if config == "2d" else ".nii.gz"
    refs = sorted((dataset["raw"] / "labelsTr").glob(f"*{ending}"))
    assert refs
    for ref in refs:
        p = pred / ref.name
        assert p.is_file(), p
        seg, gt = _read(p), _read(ref)
        assert seg.shape == gt.shape
        assert set(np.unique(seg).tolist()) <= {0, 1, 2}


def test_train_predict_and_resume_2d_through_the_cli(preprocessed_2d, spy_env, tmp_path):
    _train_predict_and_check(preprocessed_2d, spy_env, tmp_path)
    # `nnUNetv2_train ... --c` continues the finished 1-epoch run for a second epoch
    out = _results(preprocessed_2d, "nnUNetTrainerRCSpyForTest", "2d")
    first = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert first["current_epoch"] == 1 and first["trainer_name"] == "nnUNetTrainerRCSpyForTest"
    run_cli(["nnUNetv2_train", preprocessed_2d["id"], "2d", "0", "-tr", "nnUNetTrainerRCSpyForTest", "-device", "cpu",
             "--c"], env={**spy_env, "NNUNET_RC_EPOCHS": "2"})
    second = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert second["current_epoch"] == 2
    resumed = sorted(out.glob("training_log_*.txt"))[-1].read_text()
    assert "Epoch 1" in resumed and "Epoch 0\n" not in resumed
    # the resumed process draws epoch 1's augmentation seed, as the uninterrupted run would have
    spy = json.loads((out / "spy.json").read_text())
    assert spy["train_calls"] == train_iterations(spy_env) and spy["epoch_seeds"] == [12345 + 1]


def test_train_and_predict_3d_through_the_cli(preprocessed_3d, spy_env, tmp_path):
    _train_predict_and_check(preprocessed_3d, spy_env, tmp_path)
