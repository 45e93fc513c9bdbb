"""Fetal brain converters (``atlases``, ``feta``) on tiny synthetic NIfTI fixtures with the real quirks."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from nnunet_rc.cli import main
from nnunet_rc.dataset_conversion.fetal import FIDON_TO_FETA
from nnunet_rc.dataset_conversion.writer import ConversionError

SHAPE = (12, 14, 10)
FETA_LABELS = {"background": 0, "eCSF": 1, "GM": 2, "WM": 3, "ventricles": 4, "cerebellum": 5, "deepGM": 6,
               "brainstem": 7}


def _affine(spacing=0.8, offset=(10.0, -20.0, 5.0)):
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = offset
    return aff


def _save(arr, path: Path, qform: bool, sform: bool, affine=None, slope=None):
    affine = _affine() if affine is None else affine
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine if qform else None, code=1 if qform else 0)
    img.set_sform(affine if sform else None, code=2 if sform else 0)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def _fidon_label(rng, shape=SHAPE):
    lab = rng.integers(0, 9, size=shape).astype(np.uint8)
    lab.flat[:9] = np.arange(9)  # every Fidon label present
    return lab


def _mask(shape=SHAPE):
    m = np.zeros(shape, np.uint8)
    m[2:-2, 2:-2, 2:-2] = 1
    return m


ATLASES = {  # folder -> (case id, srr dtype, Wu-style scaled mask)
    "Neurotypical_Gholipour2017/HarvardSTA21_Study1": ("gholipour_GA21", np.int16, False),
    "Neurotypical_Gholipour2017/HarvardSTA22_Study1": ("gholipour_GA22", np.float32, False),
    "Neurotypical_Wu2021/Chinese22_Study1": ("wu_GA22", np.float64, True),
    "Neurotypical_Wu2021/Chinese23_Study1": ("wu_GA23", np.float32, True),
    "SpinaBifida_Fidon2021/fetal_SB_atlas_GA25_notoperated": ("sb_GA25_notoperated", np.float64, False),
    "SpinaBifida_Fidon2021/fetal_SB_atlas_GA25_operated": ("sb_GA25_operated", np.int16, False),
}


def make_atlases(root: Path, seed=0) -> dict:
    """``root/repo/data/fetal_brain_atlases/...`` like the repository; returns case id -> arrays."""
    rng = np.random.default_rng(seed)
    base = root / "repo" / "data" / "fetal_brain_atlases"
    truth = {}
    for rel, (cid, dtype, wu_mask) in ATLASES.items():
        folder = base / rel
        srr = (rng.uniform(0, 1000, SHAPE) if dtype != np.int16 else rng.integers(0, 1000, SHAPE)).astype(dtype)
        lab, mask = _fidon_label(rng), _mask()
        _save(srr, folder / "srr.nii.gz", qform=False, sform=True)                 # images: sform only
        _save(lab, folder / "parcellation.nii.gz", qform=True, sform=False)        # labels: qform only
        if wu_mask:
            _save((mask * 255).astype(np.uint8), folder / "mask.nii.gz", qform=True, sform=False, slope=1 / 255)
        else:
            _save(mask, folder / "mask.nii.gz", qform=True, sform=False)
        truth[cid] = {"srr": srr, "label": lab, "mask": mask, "folder": folder}
    (base / "Neurotypical_Gholipour2017" / "LICENSE").write_text("license")
    (base / "SpinaBifida_Fidon2021" / "LICENSE.txt").write_text("license")
    (base / "SpinaBifida_Fidon2021" / "fetal_SB_atlas_GA25_operated" / "lmks.nii.gz").write_bytes(b"")
    return truth


def _xyz(path: Path) -> np.ndarray:
    return np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), (2, 1, 0))


def _convert(*argv) -> int:
    return main(["convert", *map(str, argv)])


# ---- Atlases --------------------------------------------------------------------------------------------

def test_atlases_remap_geometry_metadata(tmp_path):
    truth = make_atlases(tmp_path)
    out = tmp_path / "raw"
    assert _convert("atlases", tmp_path, "--id", 120, "--out", out) == 0   # SRC = a parent of the atlases
    ds = out / "Dataset120_FetalBrainAtlases"
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["labels"] == FETA_LABELS and dj["channel_names"] == {"0": "T2"} and dj["numTraining"] == 6
    lut = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 7, 8: 3, 0: 0}
    for cid, t in truth.items():
        label = _xyz(ds / "labelsTr" / f"{cid}.nii.gz")
        expected = np.vectorize(lut.get)(t["label"])
        assert np.array_equal(label, expected), cid                      # voxel by voxel
        image_file = ds / "imagesTr" / f"{cid}_0000.nii.gz"
        image = sitk.ReadImage(str(image_file))
        assert image.GetPixelID() == sitk.sitkFloat32
        assert np.allclose(_xyz(image_file), t["srr"].astype(np.float32) * t["mask"])   # zero outside the mask
        src = sitk.ReadImage(str(t["folder"] / "srr.nii.gz"))                 # SimpleITK's own reading
        lab = sitk.ReadImage(str(ds / "labelsTr" / f"{cid}.nii.gz"))
        for getter in ("GetSpacing", "GetOrigin", "GetDirection"):
            assert np.allclose(getattr(image, getter)(), getattr(src, getter)(), atol=1e-5), (cid, getter)
            assert getattr(lab, getter)() == getattr(image, getter)(), (cid, getter)
            qform_only = sitk.ReadImage(str(t["folder"] / "parcellation.nii.gz"))   # same grid from the qform
            assert np.allclose(getattr(qform_only, getter)(), getattr(src, getter)(), atol=1e-5), (cid, getter)
    assert np.allclose(image.GetOrigin(), (-10.0, 20.0, 5.0), atol=1e-5)     # RAS affine -> LPS origin
    with open(ds / "case_metadata.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert rows["gholipour_GA21"] == {"case": "gholipour_GA21", "split": "Tr", "group": "neurotypical",
                                      "atlas": "Neurotypical_Gholipour2017", "gestational_age": "21",
                                      "operated": "NA"}
    assert rows["wu_GA23"]["atlas"] == "Neurotypical_Wu2021"
    assert (rows["sb_GA25_operated"]["group"], rows["sb_GA25_operated"]["operated"]) == ("spina_bifida", "yes")
    assert rows["sb_GA25_notoperated"]["operated"] == "no"


def test_fidon_lut_matches_spec():
    assert FIDON_TO_FETA.tolist() == [0, 3, 4, 5, 1, 2, 6, 7, 3]


def test_atlases_keep_background_zip_and_group_choice(tmp_path):
    truth = make_atlases(tmp_path / "src")
    archive = tmp_path / "atlases.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in (tmp_path / "src").rglob("*"):
            z.write(p, p.relative_to(tmp_path / "src"))
    out = tmp_path / "raw"
    assert _convert("atlases", archive, "--id", 121, "--out", out, "--keep-background",
                    "--atlas-groups", "wu", "sb") == 0
    ds = out / "Dataset121_FetalBrainAtlases"
    assert sorted(p.name for p in (ds / "labelsTr").iterdir()) == sorted(
        f"{c}.nii.gz" for c in truth if not c.startswith("gholipour"))
    assert np.allclose(_xyz(ds / "imagesTr" / "wu_GA22_0000.nii.gz"), truth["wu_GA22"]["srr"].astype(np.float32))


def test_atlases_missing_file_skips_that_atlas_only(tmp_path, capsys):
    truth = make_atlases(tmp_path)
    (truth["wu_GA23"]["folder"] / "mask.nii.gz").unlink()
    out = tmp_path / "raw"
    assert _convert("atlases", tmp_path / "repo" / "data" / "fetal_brain_atlases", "--id", 122, "--out", out) == 0
    text = capsys.readouterr().out
    assert "wu_GA23: missing mask.nii.gz" in text and "imagesTr: 5 case(s), 5 with label" in text
    ds = out / "Dataset122_FetalBrainAtlases"
    assert sorted(p.name for p in (ds / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in truth if c != "wu_GA23")


def test_atlases_unknown_label_value_names_case_and_value(tmp_path):
    truth = make_atlases(tmp_path)
    lab = truth["gholipour_GA22"]["label"].copy()
    lab[5, 5, 5] = 9
    _save(lab, truth["gholipour_GA22"]["folder"] / "parcellation.nii.gz", qform=True, sform=False)
    args = _args(tmp_path, 123)
    from nnunet_rc.dataset_conversion.fetal import run_atlases
    with pytest.raises(ConversionError, match=r"gholipour_GA22.*label value\(s\) \[9\]"):
        run_atlases(args)
    assert not list((tmp_path / "raw").iterdir())                       # nothing left behind


def test_atlases_shape_and_geometry_mismatch(tmp_path):
    from nnunet_rc.dataset_conversion.fetal import run_atlases
    truth = make_atlases(tmp_path)
    folder = truth["sb_GA25_operated"]["folder"]
    _save(_fidon_label(np.random.default_rng(1), (12, 14, 11)), folder / "parcellation.nii.gz", qform=True, sform=False)
    with pytest.raises(ConversionError, match=r"sb_GA25_operated.*size \(12, 14, 11\) != image size \(12, 14, 10\)"):
        run_atlases(_args(tmp_path, 124))
    shifted = _affine(offset=(13.0, -20.0, 5.0))                          # 3 mm off: mis-registration
    _save(truth["sb_GA25_operated"]["label"], folder / "parcellation.nii.gz", qform=True, sform=False, affine=shifted)
    with pytest.raises(ConversionError, match=r"sb_GA25_operated.*grids differ"):
        run_atlases(_args(tmp_path, 124))
    nudged = _affine(offset=(10.1, -20.0, 5.0))                           # header rounding: image grid copied
    _save(truth["sb_GA25_operated"]["label"], folder / "parcellation.nii.gz", qform=True, sform=False, affine=nudged)
    run_atlases(_args(tmp_path, 124))
    ds = tmp_path / "raw" / "Dataset124_FetalBrainAtlases"
    lab = sitk.ReadImage(str(ds / "labelsTr" / "sb_GA25_operated.nii.gz"))
    assert np.allclose(lab.GetOrigin(), (-10.0, 20.0, 5.0))


def test_atlases_git_lfs_pointer_is_a_clear_error(tmp_path):
    from nnunet_rc.dataset_conversion.fetal import run_atlases
    truth = make_atlases(tmp_path)
    (truth["wu_GA22"]["folder"] / "srr.nii.gz").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 123\n")
    with pytest.raises(ConversionError, match=r"wu_GA22.*srr.nii.gz is a Git LFS pointer.*git lfs pull"):
        run_atlases(_args(tmp_path, 123))


def _args(src, dataset_id, **extra):
    import argparse
    return argparse.Namespace(src=Path(src), id=dataset_id, name=None, out=Path(src) / "raw", overwrite=False, **extra)


# ---- FeTA ---------------------------------------------------------------------------------------------------

FETA_TSV = ("participant_id\tPathology\tGestational age\n"
            "sub-001\tPathological\t27.9\nsub-002\tNeurotypical\t28.2\n"
            "sub-041\tNeurotypical\t34.8\nsub-042\tPathological\t23.6\n")


def make_feta(root: Path, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    feta = root / "feta_2.1"
    feta.mkdir(parents=True)
    (feta / "participants.tsv").write_text(FETA_TSV)
    truth = {}
    for sub, rec in (("sub-001", "mial"), ("sub-002", "mial"), ("sub-041", "irtk"), ("sub-042", "irtk")):
        anat = feta / sub / "anat"
        aff = _affine(spacing=0.5, offset=(-3.0, 4.0, 2.0))
        img = rng.uniform(0, 500, SHAPE).astype(np.float64 if rec == "irtk" else np.float32)
        lab = rng.integers(0, 8, SHAPE)
        _save(img, anat / f"{sub}_rec-{rec}_T2w.nii.gz", qform=True, sform=True, affine=aff)
        if sub != "sub-042":                                                 # sub-042: no dseg
            noisy = lab.astype(np.float32) + rng.uniform(-0.2, 0.2, SHAPE).astype(np.float32)
            _save(noisy, anat / f"{sub}_rec-{rec}_dseg.nii.gz", qform=True, sform=True, affine=aff)
            (anat / f"{sub}_rec-{rec}_dseg.json").write_text("{}")
        truth[f"{sub}_rec-{rec}"] = {"image": img, "label": lab, "anat": anat}
    return truth


def test_feta_targets_groups_and_missing_dseg(tmp_path, capsys):
    truth = make_feta(tmp_path)
    out = tmp_path / "raw"
    assert _convert("feta", tmp_path, "--id", 125, "--out", out) == 0
    assert "sub-042_rec-irtk: no label sub-042_rec-irtk_dseg.nii.gz" in capsys.readouterr().out
    ds = out / "Dataset125_FeTA2021"
    assert (ds / "groups.csv").read_text() == ("case,group\nsub-001_rec-mial,abnormal\nsub-002_rec-mial,normal\n"
                                              "sub-041_rec-irtk,normal\n")
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == [
        "sub-001_rec-mial_0000.nii.gz", "sub-002_rec-mial_0000.nii.gz", "sub-041_rec-irtk_0000.nii.gz"]
    assert not any((ds / "labelsTr").iterdir()) and not any((ds / "imagesTr").iterdir())
    for cid in ("sub-001_rec-mial", "sub-041_rec-irtk"):
        assert np.array_equal(_xyz(ds / "labelsTs" / f"{cid}.nii.gz"), truth[cid]["label"])   # rounded
        image_file = ds / "imagesTs" / f"{cid}_0000.nii.gz"
        assert sitk.ReadImage(str(image_file)).GetPixelID() == sitk.sitkFloat32
        assert np.allclose(_xyz(image_file), truth[cid]["image"].astype(np.float32))
        assert np.allclose(sitk.ReadImage(str(image_file)).GetSpacing(), (0.5, 0.5, 0.5))
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["labels"] == FETA_LABELS and dj["numTraining"] == 0
    with open(ds / "case_metadata.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert rows["sub-041_rec-irtk"] == {"case": "sub-041_rec-irtk", "split": "Ts", "participant": "sub-041",
                                        "reconstruction": "irtk", "pathology": "Neurotypical", "group": "normal",
                                        "gestational_age": "34.8"}


def test_feta_as_training(tmp_path):
    make_feta(tmp_path)
    out = tmp_path / "raw"
    assert _convert("feta", tmp_path / "feta_2.1", "--id", 126, "--out", out, "--as-training") == 0
    ds = out / "Dataset126_FeTA2021"
    assert len(list((ds / "labelsTr").iterdir())) == 3 and not (ds / "imagesTs").exists()
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 3


def test_feta_rejects_fidon_relabelled_copy_and_unknown_values(tmp_path):
    from nnunet_rc.dataset_conversion.fetal import run_feta
    truth = make_feta(tmp_path)
    anat = truth["sub-002_rec-mial"]["anat"]
    lab = truth["sub-002_rec-mial"]["label"].copy()
    lab[0, 0, 0] = 8
    aff = _affine(spacing=0.5, offset=(-3.0, 4.0, 2.0))
    _save(lab.astype(np.uint8), anat / "sub-002_rec-mial_dseg.nii.gz", qform=True, sform=True, affine=aff)
    with pytest.raises(ConversionError, match=r"sub-002_rec-mial.*label 8.*Fidon's relabelled FeTA copy"):
        run_feta(_args(tmp_path, 127, as_training=False))
    lab[0, 0, 0] = 12
    _save(lab.astype(np.uint8), anat / "sub-002_rec-mial_dseg.nii.gz", qform=True, sform=True, affine=aff)
    with pytest.raises(ConversionError, match=r"sub-002_rec-mial.*label value\(s\) \[12\]"):
        run_feta(_args(tmp_path, 127, as_training=False))
    lab[0, 0, 0] = 1
    _save(lab.astype(np.uint8)[:, :, :9], anat / "sub-002_rec-mial_dseg.nii.gz", qform=True, sform=True, affine=aff)
    with pytest.raises(ConversionError, match=r"sub-002_rec-mial.*size \(12, 14, 9\) != image size"):
        run_feta(_args(tmp_path, 127, as_training=False))
    assert not list((tmp_path / "raw").iterdir())


@pytest.mark.parametrize("tsv, message", [
    ("participant_id\tPathology\tGestational age\tSRR quality rating\t\nsub-001\tSpina Bifida\t27.9\t2.33\t\n",
     "SRR quality rating.*modified participants.tsv of LucasFidon"),
    ("participant_id\tPathology\tGestational age\nsub-001\tSpina Bifida\t27.9\n",
     "sub-001 has Pathology 'Spina Bifida'.*modified participants.tsv of LucasFidon"),
    ("participant_id\tCondition\tGA\nsub-001\tPathological\t27.9\n",
     r"missing column\(s\) \['Pathology', 'Gestational age'\]"),
    ("participant_id\tPathology\tGestational age\nsub-001\tHealthy\t27.9\n",
     "sub-001 has Pathology 'Healthy'; expected Neurotypical or Pathological"),
])
def test_feta_rejects_modified_participants_tsv(tmp_path, tsv, message):
    from nnunet_rc.dataset_conversion.fetal import run_feta
    make_feta(tmp_path)
    (tmp_path / "feta_2.1" / "participants.tsv").write_text(tsv)
    with pytest.raises(ConversionError, match=message):
        run_feta(_args(tmp_path, 128, as_training=False))


def test_feta_participant_missing_from_tsv(tmp_path):
    from nnunet_rc.dataset_conversion.fetal import run_feta
    make_feta(tmp_path)
    (tmp_path / "feta_2.1" / "participants.tsv").write_text(FETA_TSV.replace("sub-041\tNeurotypical\t34.8\n", ""))
    with pytest.raises(ConversionError, match=r"sub-041_rec-irtk.*participant sub-041 not in"):
        run_feta(_args(tmp_path, 128, as_training=False))


# ---- real nnU-Net CLI ----------------------------------------------------------------------------------------

def test_atlases_pass_nnunet_verify_dataset_integrity(tmp_path, nnunet_env, capsys):
    """``nnunet-rc convert atlases`` then ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``."""
    make_atlases(tmp_path)
    raw = Path(nnunet_env["nnUNet_raw"])
    assert _convert("atlases", tmp_path / "repo", "--id", 129) == 0          # --out defaults to $nnUNet_raw
    assert (raw / "Dataset129_FetalBrainAtlases" / "dataset.json").is_file()
    assert _convert("atlases", tmp_path / "repo", "--id", 129) == 1          # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().out
    run_cli(["nnunet-rc", "convert", "atlases", tmp_path / "repo", "--id", 129, "--overwrite"])
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", 129, "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--verify_dataset_integrity"])
    pre = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset129_FetalBrainAtlases"
    assert (pre / "nnUNetPlans.json").is_file()
    cases = {f.name.split(".")[0] for f in (pre / "nnUNetPlans_3d_fullres").iterdir() if not f.name.endswith(".pkl")}
    assert cases >= {cid for cid, *_ in ATLASES.values()}
