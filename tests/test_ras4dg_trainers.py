"""RAS4DG trainers: composition, one in-process train step each (2d and 3d_fullres), checkpoint ->
nnU-Net predictor round trip with RSD, and the real CLI (RAS4DG in the default suite, the full matrix
in ``test_cli_every_trainer.py``)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from conftest import make_trainer, run_cli, short_schedule_env, synthetic_batch

from nnunet_rc.augment import RASS, RMS, RandConv
from nnunet_rc.blocks.rsd import RSD
from nnunet_rc.trainers import (nnUNetTrainerRandConv_RSD, nnUNetTrainerRAS4DG, nnUNetTrainerRASS,
                                nnUNetTrainerRAS4DGp05, nnUNetTrainerRASS_RMS, nnUNetTrainerRASS_RSD,
                                nnUNetTrainerRASSp1, nnUNetTrainerRMS, nnUNetTrainerRMS_RSD, nnUNetTrainerRSD)

#: trainer -> (augmentation types in order, has RSD)
GRID = {
    nnUNetTrainerRASS: ((RASS,), False),
    nnUNetTrainerRASSp1: ((RASS,), False),
    nnUNetTrainerRMS: ((RMS,), False),
    nnUNetTrainerRSD: ((), True),
    nnUNetTrainerRASS_RMS: ((RASS, RMS), False),
    nnUNetTrainerRASS_RSD: ((RASS,), True),
    nnUNetTrainerRMS_RSD: ((RMS,), True),
    nnUNetTrainerRAS4DG: ((RASS, RMS), True),
    nnUNetTrainerRAS4DGp05: ((RASS, RMS), True),
    nnUNetTrainerRandConv_RSD: ((RandConv,), True),
}

#: RASS's probability where it is not the paper's p = 1
RASS_P = {nnUNetTrainerRASS: 0.5, nnUNetTrainerRAS4DGp05: 0.5}


def _rsd_blocks(network):
    return [m for m in network.modules() if isinstance(m, RSD)]


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("dataset_name", ["preprocessed_2d", "preprocessed_3d"])
@pytest.mark.parametrize("trainer_cls", list(GRID), ids=lambda c: c.__name__)
def test_train_step_in_process(trainer_cls, dataset_name, request):
    dataset = request.getfixturevalue(dataset_name)
    trainer = _quiet(make_trainer, trainer_cls, dataset)
    augs, has_rsd = GRID[trainer_cls]
    assert [type(a) for a in trainer.batch_augmentations] == list(augs)
    if augs and augs[0] is RASS:  # the paper's p = 1, except RASS alone (attempt A2, kept) and attempt A5
        assert trainer.batch_augmentations[0].p == RASS_P.get(trainer_cls, 1.0)
    blocks = _rsd_blocks(trainer.network)
    assert len(blocks) == (1 if has_rsd else 0)
    if has_rsd:
        encoder = trainer.network.encoder
        stage = encoder.stages[-1]
        assert (stage.blocks if hasattr(stage, "blocks") else stage)[-1] is blocks[0]
        assert blocks[0].channels == encoder.output_channels[-1]
        assert blocks[0].spatial_dims == (2 if dataset["config"] == "2d" else 3)
    batch = synthetic_batch(trainer)
    target_before = [t.clone() for t in batch["target"]]
    data_before = batch["data"].clone()
    params_before = {n: p.detach().clone() for n, p in trainer.network.named_parameters()}
    out = _quiet(trainer.train_step, batch)
    assert np.isfinite(out["loss"])
    assert all(torch.equal(a, b) for a, b in zip(batch["target"], target_before))
    assert torch.equal(batch["data"], data_before)
    assert trainer.num_augmented_batches == (1 if augs else 0)
    if has_rsd:  # the RSD parameters are trained
        changed = [n for n, p in trainer.network.named_parameters()
                   if ".sru." in n or ".cru." in n if not torch.equal(p.detach(), params_before[n])]
        assert changed


def test_checkpoint_roundtrip_through_nnunet_predictor(preprocessed_3d):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer = _quiet(make_trainer, nnUNetTrainerRSD, preprocessed_3d)
    _quiet(trainer.train_step, synthetic_batch(trainer))  # move the weights away from their init
    base = Path(trainer.output_folder_base)
    (base / "plans.json").write_text(json.dumps(trainer.plans_manager.plans))
    (base / "dataset.json").write_text(json.dumps(trainer.dataset_json))
    _quiet(trainer.save_checkpoint, os.path.join(trainer.output_folder, "checkpoint_rsd_test.pth"))

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"),
                                perform_everything_on_device=False, verbose=False, allow_tqdm=False)
    _quiet(predictor.initialize_from_trained_model_folder, str(base), use_folds=(0,),
           checkpoint_name="checkpoint_rsd_test.pth")
    assert predictor.trainer_name == "nnUNetTrainerRSD"
    assert len(_rsd_blocks(predictor.network)) == 1
    predictor.network.load_state_dict(predictor.list_of_parameters[0])  # strict
    trained = trainer.network.state_dict()
    rebuilt = predictor.network.state_dict()
    assert trained.keys() == rebuilt.keys()
    assert all(torch.equal(trained[k], rebuilt[k]) for k in trained)
    trainer.network.eval()
    predictor.network.eval()
    trainer.set_deep_supervision_enabled(False)
    x = torch.randn(1, 2, *trainer.configuration_manager.patch_size)
    with torch.no_grad():
        assert torch.allclose(trainer.network(x), predictor.network(x), atol=1e-5)


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _train_and_predict(dataset: dict, trainer: str, tmp_path: Path) -> None:
    config = dataset["config"]
    run_cli(["nnUNetv2_train", dataset["id"], config, "0", "-tr", trainer, "-device", "cpu"], env=short_schedule_env())
    out = Path(os.environ["nnUNet_results"]) / dataset["name"] / f"{trainer}__nnUNetPlans__{config}" / "fold_0"
    assert (out / "checkpoint_final.pth").is_file()
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    has_rsd = any(".sru." in k for k in ckpt["network_weights"])
    assert has_rsd == ("RSD" in trainer or trainer == "nnUNetTrainerRAS4DG")
    # predict two cases
    src = tmp_path / "in"
    src.mkdir()
    images = sorted((dataset["raw"] / "imagesTr").iterdir())
    cases = sorted({p.name.split("_")[0] for p in images})[:2]
    for p in images:
        if p.name.split("_")[0] in cases:
            shutil.copy(p, src / p.name)
    pred = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", src, "-o", pred, "-d", dataset["id"], "-c", config, "-f", "0",
             "-tr", trainer, "--disable_tta", "-npp", "1", "-nps", "1", "-device", "cpu"])
    ending = ".png" if config == "2d" else ".nii.gz"
    for case in cases:
        seg = _read(pred / f"{case}{ending}")
        ref = _read(dataset["raw"] / "labelsTr" / f"{case}{ending}")
        assert seg.shape == ref.shape
        assert set(np.unique(seg).tolist()) <= {0, 1, 2}


def test_cli_train_and_predict_ras4dg_2d(preprocessed_2d, tmp_path):
    _train_and_predict(preprocessed_2d, "nnUNetTrainerRAS4DG", tmp_path)
