"""The plugin's foundation: trainer discovery, doctor, the base trainer's two extension points."""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_trainer, run_cli, synthetic_batch

import nnunet_rc
import nnunet_rc.trainers as family
from nnunet_rc.augment.base import BatchAugmentation
from nnunet_rc.trainers.base import nnUNetTrainerDGBaseline


class AddOne(BatchAugmentation):
    """A deterministic augmentation whose effect survives re-standardization: it flips the sign."""
    restandardize = False

    def __init__(self):
        super().__init__(p=1.0)
        self.calls = 0

    def get_parameters(self, x, generator):
        return {}

    def apply(self, x, params):
        return -x

    def forward(self, x, generator=None):
        self.calls += 1
        return super().forward(x, generator)


class nnUNetTrainerFlipForTest(nnUNetTrainerDGBaseline):
    def build_batch_augmentations(self):
        return [AddOne()]


class nnUNetTrainerAddLayerForTest(nnUNetTrainerDGBaseline):
    @classmethod
    def modify_network(cls, network):
        network.extra_marker = torch.nn.Identity()
        return network


# ---- discovery ---------------------------------------------------------------------------------------

def test_trainer_path_holds_only_a_reexport_module():
    folder = Path(nnunet_rc.trainer_path())
    assert folder.is_dir()
    modules = [p.name for p in folder.iterdir() if p.suffix == ".py"]
    assert modules == ["nnunet_rc_trainers.py"]
    text = (folder / "nnunet_rc_trainers.py").read_text()
    import ast

    tree = ast.parse(text)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    assert "from nnunet_rc.trainers import *" in text


def test_trainer_path_cli_last_line_is_the_folder():
    out = run_cli(["nnunet-rc", "trainer-path"]).stdout
    assert out.strip().splitlines()[-1] == nnunet_rc.trainer_path()


def test_every_trainer_found_through_nnunet_lookup(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", nnunet_rc.trainer_path())
    names = family.__all__
    assert "nnUNetTrainerDGBaseline" in names
    assert all(n.startswith("nnUNetTrainer") and "__" not in n for n in names)
    for name in names:
        with contextlib.redirect_stdout(io.StringIO()):
            found = recursive_find_trainer_class_by_name(name)
        assert found is getattr(family, name), name
        # the class must live in an importable module (nnU-Net's worker processes pickle by reference)
        assert found.__module__.startswith("nnunet_rc.trainers."), found.__module__


def test_trainer_names_do_not_clash_with_nnunet():
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    base = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
    for name in family.__all__:
        assert recursive_find_python_class(base, name, "nnunetv2.training.nnUNetTrainer") is None, name


# ---- doctor -----------------------------------------------------------------------------------------

def test_doctor_passes_in_the_set_up_env(nnunet_env):
    proc = run_cli(["nnunet-rc", "doctor"], env=nnunet_env)
    assert "all checks passed" in proc.stdout
    assert "[FAIL]" not in proc.stdout


def test_doctor_fails_readably_without_ext_trainer(nnunet_env):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    import subprocess

    proc = subprocess.run([str(Path(sys.executable).parent / "nnunet-rc"), "doctor"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "[FAIL] nnUNet_extTrainer is not set" in proc.stdout
    assert "export nnUNet_extTrainer=$(nnunet-rc trainer-path)" in proc.stdout


def test_doctor_flags_a_wrong_ext_trainer_folder(nnunet_env, tmp_path):
    proc = run_cli(["nnunet-rc", "doctor"], env={"nnUNet_extTrainer": str(tmp_path)}, check=False)
    assert proc.returncode == 1
    assert f"nnUNet_extTrainer={tmp_path} does not contain" in proc.stdout


# ---- the base trainer (in-process) ------------------------------------------------------------------

def test_batch_augmentation_runs_on_training_batches_only(preprocessed_2d):
    trainer = make_trainer(nnUNetTrainerFlipForTest, preprocessed_2d)
    (aug,) = trainer.batch_augmentations
    batch = synthetic_batch(trainer)
    data_before = batch["data"].clone()
    target_before = [t.clone() for t in batch["target"]]

    seen = {}
    original_forward = trainer.network.forward

    def spy(x):
        seen["x"] = x.detach().clone()
        return original_forward(x)

    trainer.network.forward = spy
    trainer.train_step(batch)
    assert aug.calls == 1
    assert torch.equal(seen["x"], -data_before)  # the network saw the augmented batch
    assert torch.equal(batch["data"], data_before)  # the caller's batch is not modified in place
    assert all(torch.equal(a, b) for a, b in zip(batch["target"], target_before))
    assert trainer.num_augmented_batches == 1

    trainer.validation_step(synthetic_batch(trainer, seed=1))
    assert aug.calls == 1, "augmentation must not run in validation"
    assert torch.equal(seen["x"], synthetic_batch(trainer, seed=1)["data"])


def test_only_image_channels_are_augmented(preprocessed_2d):
    """Cascade: one-hot segmentation channels appended after the image channels stay untouched."""
    trainer = make_trainer(nnUNetTrainerFlipForTest, preprocessed_2d)
    x = torch.randn(2, trainer.num_image_channels + 3, 8, 8)
    out = trainer.augment_batch(x)
    n = trainer.num_image_channels
    assert torch.equal(out[:, :n], -x[:, :n])
    assert torch.equal(out[:, n:], x[:, n:])


def test_baseline_changes_nothing(preprocessed_2d):
    trainer = make_trainer(nnUNetTrainerDGBaseline, preprocessed_2d)
    assert trainer.batch_augmentations == []
    x = torch.randn(2, 1, 8, 8)
    assert trainer.augment_batch(x) is x


def test_augmentation_seed_differs_per_rank_and_epoch(preprocessed_2d):
    trainer = make_trainer(nnUNetTrainerDGBaseline, preprocessed_2d)
    seeds_rank0 = [trainer.augmentation_seed_for(e) for e in range(3)]
    trainer.local_rank = 1
    seeds_rank1 = [trainer.augmentation_seed_for(e) for e in range(3)]
    assert len(set(seeds_rank0 + seeds_rank1)) == 6

    def draws(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.rand(4, generator=g)

    assert not torch.equal(draws(seeds_rank0[0]), draws(seeds_rank1[0]))


def test_modify_network_is_used_by_build_network_architecture(preprocessed_2d):
    trainer = make_trainer(nnUNetTrainerAddLayerForTest, preprocessed_2d)
    assert hasattr(trainer.network, "extra_marker")
    # the static path nnUNetv2_predict takes: class attribute call, no instance
    net = nnUNetTrainerAddLayerForTest.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
        trainer.label_manager.num_segmentation_heads, enable_deep_supervision=False)
    assert hasattr(net, "extra_marker")
    assert set(net.state_dict()) == set(trainer.network.state_dict())


def test_schedule_overrides(preprocessed_2d, monkeypatch):
    monkeypatch.setenv("NNUNET_RC_EPOCHS", "3")
    monkeypatch.setenv("NNUNET_RC_ITERATIONS", "7")
    monkeypatch.setenv("NNUNET_RC_VAL_ITERATIONS", "2")
    trainer = make_trainer(nnUNetTrainerDGBaseline, preprocessed_2d)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (3, 7, 2)
    monkeypatch.setenv("NNUNET_RC_EPOCHS", "zero")
    with pytest.raises(ValueError, match="NNUNET_RC_EPOCHS must be a positive integer"):
        make_trainer(nnUNetTrainerDGBaseline, preprocessed_2d)


def test_plot_every_draws_progress_png_every_nth_and_last_epoch(preprocessed_2d, monkeypatch):
    """``NNUNET_RC_PLOT_EVERY=3`` with 5 epochs: progress.png after epochs 3 and 5 (indices 2, 4) only; the
    other epoch-end work (log lines, best checkpoint) still happens every epoch."""
    from time import time

    monkeypatch.setenv("NNUNET_RC_EPOCHS", "5")
    monkeypatch.setenv("NNUNET_RC_PLOT_EVERY", "3")
    trainer = make_trainer(nnUNetTrainerDGBaseline, preprocessed_2d)
    assert trainer.plot_every == 3
    plotted = []
    monkeypatch.setattr(type(trainer.logger), "plot_progress_png",
                        lambda self, folder: plotted.append(trainer.current_epoch))
    for epoch in range(5):
        for key, value in (("epoch_start_timestamps", time()), ("train_losses", 0.5), ("val_losses", 0.4),
                           ("dice_per_class_or_region", [0.1 * epoch]), ("mean_fg_dice", 0.1 * epoch),
                           ("lrs", 0.01)):
            trainer.logger.log(key, value, epoch)
        trainer.on_epoch_end()
    assert plotted == [2, 4]
    assert trainer.current_epoch == 5
    assert (Path(trainer.output_folder) / "checkpoint_best.pth").is_file()
    assert Path(trainer.log_file).read_text().count("Epoch time:") == 5


def test_augmentation_config_is_logged(preprocessed_2d):
    trainer = make_trainer(nnUNetTrainerFlipForTest, preprocessed_2d)
    log = Path(trainer.log_file).read_text()
    assert "nnunet_rc trainer nnUNetTrainerFlipForTest: 1 batch augmentation(s)" in log
    assert "AddOne(p=1.0" in log


@pytest.mark.parametrize("name", family.__all__)
def test_every_trainer_trains_in_process(name, preprocessed_2d):
    """Every trainer of the family: one training step and one validation step, in process (2d)."""
    trainer = make_trainer(getattr(family, name), preprocessed_2d)
    calls = {"n": 0}
    for aug in trainer.batch_augmentations:
        original = aug.forward

        def counting(*a, _original=original, **k):
            calls["n"] += 1
            return _original(*a, **k)

        aug.forward = counting
    batch = synthetic_batch(trainer)
    target_before = [t.clone() for t in batch["target"]]
    out = trainer.train_step(batch)
    assert torch.isfinite(torch.as_tensor(out["loss"])).all()
    assert all(torch.equal(a, b) for a, b in zip(batch["target"], target_before))
    assert calls["n"] >= len(trainer.batch_augmentations)
    after_train = calls["n"]
    val = trainer.validation_step(synthetic_batch(trainer, seed=1))
    assert calls["n"] == after_train
    assert torch.isfinite(torch.as_tensor(val["loss"])).all()
