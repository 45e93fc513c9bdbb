"""``nnunet-rc convert ms``: every adapter on a tiny synthetic copy of its layout, the modality vocabulary,
the geometry and label checks, and an end-to-end source -> target run through nnU-Net's CLI.

Unit fixtures are 10x12x8 volumes whose voxels all hold a per-modality code (FLAIR=1, T1=2, T1CE=3,
T2=4, PD=5), so the channel order written is checked exactly from the files' values.
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import plan_and_preprocess, run_cli, short_schedule_env
from nnunet_rc.dataset_conversion import ms
from nnunet_rc.dataset_conversion.writer import ConversionError

SHAPE = (10, 12, 8)  # x, y, z
CODE = {"FLAIR": 1, "T1": 2, "T1CE": 3, "T2": 4, "PD": 5}


def write_vol(path: Path, arr: np.ndarray, origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 1.0)) -> Path:
    """``arr`` is (z, y, x) as SimpleITK holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path), useCompression=str(path).endswith(".gz"))
    return path


def const(mod: str, shape=SHAPE) -> np.ndarray:
    return np.full(shape[::-1], CODE[mod], np.float32)


def lesion(value=1, shape=SHAPE) -> np.ndarray:
    lab = np.zeros(shape[::-1], np.uint8)
    lab[2:5, 3:6, 4:7] = value
    return lab


def convert(src: Path, out: Path, *argv) -> "ms.Report":
    """Through the real ``nnunet-rc convert`` parser, in-process."""
    from nnunet_rc.cli import cmd_convert

    parser = argparse.ArgumentParser()
    cmd_convert.add_arguments(parser)
    args = parser.parse_args(["ms", str(src), "--out", str(out), *map(str, argv)])
    args.quiet = True
    return args._converter.run(args)


def channels(folder: Path, split: str, case: str) -> list:
    files = sorted((folder / f"images{split}").glob(f"{case}_*.nii.gz"))
    return [int(round(float(sitk.GetArrayFromImage(sitk.ReadImage(str(f))).mean()))) for f in files]


def label_of(folder: Path, split: str, case: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"labels{split}" / f"{case}.nii.gz")))


def names(folder: Path, split: str) -> set:
    return {p.name[: -len("_0000.nii.gz")] for p in (folder / f"images{split}").glob("*_0000.nii.gz")}


# ---- fixtures per format -------------------------------------------------------------------------------------

def make_msseg2016(root: Path) -> Path:
    for part, centre in (("Training", "Center_01"), ("Training", "Center_07"), ("Testing", "Center_03")):
        patient = root / part / centre / "Patient_01"  # patient numbers repeat across centres
        for tok, mod in (("FLAIR", "FLAIR"), ("T1", "T1"), ("T2", "T2"), ("DP", "PD"), ("GADO", "T1CE")):
            write_vol(patient / "Preprocessed_Data" / f"{tok}_preprocessed.nii.gz", const(mod))
        write_vol(patient / "Masks" / "Consensus.nii.gz", lesion())
        write_vol(patient / "Masks" / "ManualSegmentation_2.nii.gz", np.zeros(SHAPE[::-1], np.uint8))
        write_vol(patient / "Masks" / "Brain_Mask.nii.gz", np.ones(SHAPE[::-1], np.uint8))
    return root


def make_isbi(root: Path, shape=SHAPE, n_timepoints=2, images=None) -> Path:
    for t in range(1, n_timepoints + 1):
        case = root / "training" / "training01"
        for tok, mod in (("flair", "FLAIR"), ("mprage", "T1"), ("pd", "PD"), ("t2", "T2")):
            arr = images[t - 1][mod] if images else const(mod, shape)
            write_vol(case / "preprocessed" / f"training01_{t:02d}_{tok}_pp.nii", arr)
        write_vol(case / "masks" / f"training01_{t:02d}_mask1.nii", images[t - 1]["label"] if images else lesion(shape=shape))
        write_vol(case / "masks" / f"training01_{t:02d}_mask2.nii", np.zeros(shape[::-1], np.uint8))
    return root


def make_mslesseg(root: Path, cases=(("P1", "T1"), ("P6", "T2"), ("P54", None)), shape=SHAPE, images=None) -> Path:
    """``P6_T2_T2.nii.gz``: the timepoint token equals a modality name."""
    for i, (p, t) in enumerate(cases):
        folder = root / "MSLesSeg Dataset" / ("train" / Path(p) / t if t else "test" / Path(p))
        stem = f"{p}_{t}" if t else p
        for mod in ("FLAIR", "T1", "T2"):
            write_vol(folder / f"{stem}_{mod}.nii.gz", images[i][mod] if images else const(mod, shape))
        write_vol(folder / f"{stem}_MASK.nii.gz", images[i]["label"] if images else lesion(shape=shape))
    return root


# ---- modality vocabulary ---------------------------------------------------------------------------------------

def test_modality_mapping():
    assert ms.parse_modalities("flair,mprage,GADO,dp,T2W") == ["FLAIR", "T1", "T1CE", "PD", "T2"]
    assert [ms.canonical_modality(n) for n in ("T1W", "T1WKS", "T1POST", "t2", "PD")] == ["T1", "T1CE", "T1CE", "T2", "PD"]
    with pytest.raises(ConversionError, match="unknown modality 'DWI'"):
        ms.parse_modalities("FLAIR,DWI")
    with pytest.raises(ConversionError, match="T1 requested twice"):
        ms.parse_modalities("FLAIR,T1,mprage")


# ---- adapters --------------------------------------------------------------------------------------------------

def test_msseg2016_centres_raters_and_channel_order(tmp_path):
    src = make_msseg2016(tmp_path / "src")
    rep = convert(src, tmp_path / "out", "--format", "msseg2016", "--id", 130, "--modalities", "FLAIR,PD,GADO,T1")
    ds = rep.path
    assert names(ds, "Tr") == {"msseg_C01_P01", "msseg_C07_P01"}
    assert names(ds, "Ts") == {"msseg_test_C03_P01"}
    assert channels(ds, "Tr", "msseg_C07_P01") == [1, 5, 3, 2]
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "PD", "2": "T1CE", "3": "T1"}
    assert meta["labels"] == {"background": 0, "lesion": 1} and meta["numTraining"] == 2
    assert label_of(ds, "Tr", "msseg_C01_P01").sum() == 27
    assert label_of(ds, "Ts", "msseg_test_C03_P01").sum() == 27  # test labels -> labelsTs
    rep2 = convert(src, tmp_path / "out", "--format", "msseg2016", "--id", 130, "--rater", 2, "--overwrite")
    assert label_of(rep2.path, "Tr", "msseg_C01_P01").sum() == 0


def test_isbi_uncompressed_raters_and_split(tmp_path):
    src = make_isbi(tmp_path / "src")
    assert next(src.rglob("*_pp.nii")).suffix == ".nii"
    ds = convert(src, tmp_path / "out", "--format", "isbi2015", "--id", 131, "--modalities", "FLAIR,T1,T2").path
    assert names(ds, "Tr") == {"isbi_01_01", "isbi_01_02"}
    assert channels(ds, "Tr", "isbi_01_02") == [1, 2, 4]
    assert label_of(ds, "Tr", "isbi_01_01").sum() == 27  # mask1 by default
    rows = (ds / "case_metadata.csv").read_text().splitlines()
    assert rows[1].startswith("isbi_01_01,Tr,training/training01,training01,01,1,training01_01_flair_pp.nii,")
    ds = convert(src, tmp_path / "out", "--format", "isbi2015", "--id", 132, "--rater", 2, "--split", "Ts").path
    assert names(ds, "Ts") == {"isbi_01_01", "isbi_01_02"} and not names(ds, "Tr")
    assert label_of(ds, "Ts", "isbi_01_01").sum() == 0
    with pytest.raises(ConversionError, match="--rater consensus"):
        convert(src, tmp_path / "out", "--format", "isbi2015", "--id", 133, "--rater", "consensus")


def test_3dmrms_original_and_mirror_layouts(tmp_path):
    orig = tmp_path / "orig"
    for tok, mod in (("FLAIR", "FLAIR"), ("T1W", "T1"), ("T1WKS", "T1CE"), ("T2W", "T2")):
        write_vol(orig / "patient01" / f"patient01_{tok}.nii.gz", const(mod))
    write_vol(orig / "patient01" / "patient01_brainmask.nii.gz", np.ones(SHAPE[::-1], np.uint8))
    write_vol(orig / "patient01" / "patient01_consensus_gt.nii.gz", lesion())
    ds = convert(orig, tmp_path / "out", "--format", "3dmrms", "--id", 134, "--modalities", "FLAIR,T1CE,T2,T1").path
    assert names(ds, "Tr") == {"3dmrms_patient01"}
    assert channels(ds, "Tr", "3dmrms_patient01") == [1, 3, 4, 2]

    mirror = tmp_path / "open_ms_data" / "cross_sectional"
    for variant in ("coregistered", "raw"):
        for tok, mod in (("FLAIR", "FLAIR"), ("T1W", "T1"), ("T1WKS", "T1CE"), ("T2W", "T2")):
            write_vol(mirror / variant / "patient02" / f"{tok}.nii.gz", const(mod))
        write_vol(mirror / variant / "patient02" / "brainmask.nii.gz", np.ones(SHAPE[::-1], np.uint8))
        write_vol(mirror / variant / "patient02" / "consensus_gt.nii.gz", lesion() if variant == "coregistered" else 0 * lesion())
    suffix = "_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
    for tok, mod in (("FLAIR", "FLAIR"), ("T1", "T1"), ("T1POST", "T1CE"), ("T2", "T2")):
        write_vol(mirror / "MNI" / "patient03" / f"{tok}{suffix}", const(mod))
    write_vol(mirror / "MNI" / "patient03" / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz", lesion())
    out = tmp_path / "out"
    ds = convert(tmp_path / "open_ms_data", out, "--format", "3dmrms", "--id", 135, "--modalities", "FLAIR,T2").path
    assert names(ds, "Tr") == {"3dmrms_patient02"} and label_of(ds, "Tr", "3dmrms_patient02").sum() == 27
    ds = convert(tmp_path / "open_ms_data", out, "--format", "3dmrms", "--id", 135, "--overwrite", "--mrms-variant", "raw").path
    assert label_of(ds, "Tr", "3dmrms_patient02").sum() == 0
    ds = convert(tmp_path / "open_ms_data", out, "--format", "3dmrms", "--id", 136, "--mrms-variant", "MNI",
                 "--modalities", "FLAIR,T1CE,T1").path
    assert names(ds, "Tr") == {"3dmrms_patient03"} and channels(ds, "Tr", "3dmrms_patient03") == [1, 3, 2]
    assert label_of(ds, "Tr", "3dmrms_patient03").sum() == 27


def test_mslesseg_token_clash_parsed_by_position_and_zip(tmp_path):
    src = make_mslesseg(tmp_path / "src")
    assert (src / "MSLesSeg Dataset/train/P6/T2/P6_T2_T2.nii.gz").exists()
    ds = convert(src, tmp_path / "out", "--format", "mslesseg", "--id", 137, "--modalities", "FLAIR,T2,T1").path
    assert names(ds, "Tr") == {"mslesseg_P1_T1", "mslesseg_P6_T2"}
    assert names(ds, "Ts") == {"mslesseg_P54"}
    assert channels(ds, "Tr", "mslesseg_P6_T2") == [1, 4, 2]
    assert channels(ds, "Ts", "mslesseg_P54") == [1, 4, 2]
    archive = tmp_path / "MSLesSeg.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.rglob("*.nii.gz"):
            z.write(f, f.relative_to(src).as_posix())
    ds = convert(archive, tmp_path / "out2", "--format", "mslesseg", "--id", 137, "--split", "Tr").path
    assert names(ds, "Tr") == {"mslesseg_P1_T1", "mslesseg_P6_T2", "mslesseg_P54"}


def test_shifts_ids_unique_across_cohorts_and_splits(tmp_path):
    src = tmp_path / "src"
    for pt, cohort, split in (("shifts_ms_pt1", "msseg", "train"), ("shifts_ms_pt1", "msseg", "dev_in"),
                              ("shifts_ms_pt2", "ljubljana", "train")):
        d = src / pt / cohort / split
        for sub, tok, mod in (("flair", "FLAIR", "FLAIR"), ("t1", "T1", "T1"), ("t2", "T2", "T2")):
            write_vol(d / sub / f"1_{tok}_isovox.nii.gz", const(mod))
        write_vol(d / "gt" / "1_gt_isovox.nii.gz", lesion())
        write_vol(d / "fg_mask" / "1_isovox_fg_mask.nii.gz", np.ones(SHAPE[::-1], np.uint8))
    ds = convert(src, tmp_path / "out", "--format", "shifts", "--id", 138, "--modalities", "FLAIR,T2").path
    assert names(ds, "Tr") == {"shifts_msseg_train_1", "shifts_ljubljana_train_1"}
    assert names(ds, "Ts") == {"shifts_msseg_dev_in_1"}
    assert channels(ds, "Ts", "shifts_msseg_dev_in_1") == [1, 4]
    ds = convert(src, tmp_path / "out", "--format", "shifts", "--id", 138, "--overwrite", "--shifts-splits", "dev_in").path
    assert names(ds, "Ts") == {"shifts_msseg_dev_in_1"} and not names(ds, "Tr")
    with pytest.raises(ConversionError, match="unknown split"):
        convert(src, tmp_path / "out", "--format", "shifts", "--id", 139, "--shifts-splits", "test")


@pytest.mark.parametrize("mode, values, labels", [("background", {0, 1}, {"background": 0, "lesion": 1}),
                                                  ("ignore", {0, 1, 2}, {"background": 0, "lesion": 1, "ignore": 2})])
def test_wmh_sites_and_label2(tmp_path, mode, values, labels):
    src = tmp_path / "src"
    for site in ("Utrecht", "Amsterdam/GE3T"):
        case = src / "training" / site / "0"
        write_vol(case / "pre" / "FLAIR.nii.gz", const("FLAIR"))
        write_vol(case / "pre" / "T1.nii.gz", const("T1"))
        lab = lesion()
        lab[0, 0, :3] = 2
        write_vol(case / "wmh.nii.gz", lab.astype(np.float32))  # float like the distributed files
    ds = convert(src, tmp_path / "out", "--format", "wmh", "--id", 139, "--modalities", "T1,FLAIR", "--wmh-label2", mode).path
    assert names(ds, "Tr") == {"wmh_Utrecht_0", "wmh_Amsterdam_GE3T_0"}
    assert channels(ds, "Tr", "wmh_Utrecht_0") == [2, 1]
    lab = label_of(ds, "Tr", "wmh_Amsterdam_GE3T_0")
    assert set(np.unique(lab).tolist()) == values and (lab == 1).sum() == 27
    assert json.loads((ds / "dataset.json").read_text())["labels"] == labels


def test_msseg2_refused_unless_allowed(tmp_path):
    src = tmp_path / "src"
    write_vol(src / "013" / "flair_time01_on_middle_space.nii.gz", const("FLAIR"))
    write_vol(src / "013" / "flair_time02_on_middle_space.nii.gz", const("FLAIR"))
    write_vol(src / "013" / "ground_truth.nii.gz", lesion())
    with pytest.raises(ConversionError, match="NEW lesions only"):
        convert(src, tmp_path / "out", "--format", "mslesseg", "--id", 130)
    with pytest.raises(ConversionError, match="--allow-new-lesions-only"):
        convert(src, tmp_path / "out", "--format", "msseg2", "--id", 130)
    ds = convert(src, tmp_path / "out", "--format", "msseg2", "--id", 130, "--allow-new-lesions-only").path
    assert names(ds, "Tr") == {"msseg2_013"}


# ---- checks ------------------------------------------------------------------------------------------------------

def test_missing_modality_names_case_and_what_exists(tmp_path):
    src = make_isbi(tmp_path / "src")
    with pytest.raises(ConversionError) as e:
        convert(src, tmp_path / "out", "--format", "isbi2015", "--id", 130, "--modalities", "FLAIR,T1CE")
    msg = str(e.value)
    assert "isbi_01_01" in msg and "no T1CE" in msg and "FLAIR, PD, T1, T2" in msg
    assert not list((tmp_path / "out").glob("Dataset*"))


def _one_case_mslesseg(root: Path, label=None, t1_origin=(0.0, 0.0, 0.0), label_origin=(0.0, 0.0, 0.0)) -> Path:
    folder = root / "train" / "P6" / "T2"
    write_vol(folder / "P6_T2_FLAIR.nii.gz", const("FLAIR"))
    write_vol(folder / "P6_T2_T1.nii.gz", const("T1"), origin=t1_origin)
    write_vol(folder / "P6_T2_MASK.nii.gz", lesion() if label is None else label, origin=label_origin)
    return root


def test_misregistered_label_or_modality_is_an_error_and_nothing_written(tmp_path):
    out = tmp_path / "out"
    src = _one_case_mslesseg(tmp_path / "a", label_origin=(3.0, 0.0, 0.0))
    with pytest.raises(ConversionError, match=r"mslesseg_P6_T2: label P6_T2_MASK.nii.gz vs FLAIR.*origin by 3 mm"):
        convert(src, out, "--format", "mslesseg", "--id", 130)
    src = _one_case_mslesseg(tmp_path / "b", t1_origin=(0.0, 2.0, 0.0))
    with pytest.raises(ConversionError, match=r"mslesseg_P6_T2: T1 \(P6_T2_T1.nii.gz\) vs FLAIR"):
        convert(src, out, "--format", "mslesseg", "--id", 130, "--modalities", "FLAIR,T1")
    assert not any(out.iterdir())


def test_subvoxel_header_noise_copies_image_geometry(tmp_path):
    src = _one_case_mslesseg(tmp_path / "src", t1_origin=(0.0, 0.0, 0.2), label_origin=(0.3, 0.0, 0.0))
    ds = convert(src, tmp_path / "out", "--format", "mslesseg", "--id", 130, "--modalities", "FLAIR,T1").path
    for f in [ds / "labelsTr" / "mslesseg_P6_T2.nii.gz", ds / "imagesTr" / "mslesseg_P6_T2_0001.nii.gz"]:
        assert sitk.ReadImage(str(f)).GetOrigin() == (0.0, 0.0, 0.0)
    assert label_of(ds, "Tr", "mslesseg_P6_T2").sum() == 27


def test_label_values_0_2_is_an_error(tmp_path):
    src = _one_case_mslesseg(tmp_path / "src", label=lesion(value=2))
    with pytest.raises(ConversionError, match=r"mslesseg_P6_T2: label P6_T2_MASK.nii.gz: label values \{0, 2\}"):
        convert(src, tmp_path / "out", "--format", "mslesseg", "--id", 130)


def test_empty_mask_kept_and_scaled_float_label_rounded(tmp_path):
    src = _one_case_mslesseg(tmp_path / "src", label=np.zeros(SHAPE[::-1], np.uint8))
    folder = src / "train" / "P1" / "T1"
    for mod in ("FLAIR", "T1", "T2"):
        write_vol(folder / f"P1_T1_{mod}.nii.gz", const(mod))
    write_vol(folder / "P1_T1_MASK.nii.gz", lesion().astype(np.float32) * 0.99995)
    rep = convert(src, tmp_path / "out", "--format", "mslesseg", "--id", 130)
    assert sorted(rep.written["Tr"]) == ["mslesseg_P1_T1", "mslesseg_P6_T2"] and rep.with_label["Tr"] == 2
    assert label_of(rep.path, "Tr", "mslesseg_P6_T2").sum() == 0
    assert label_of(rep.path, "Tr", "mslesseg_P1_T1").sum() == 27


# ---- end to end: MSLesSeg-shaped source -> ISBI-shaped target ----------------------------------------------------

def _synthetic_case(shape, rng) -> dict:
    """FLAIR: bright lesion; T1: dark lesion; both noisy. Arrays (z, y, x)."""
    zyx = shape[::-1]
    grids = np.meshgrid(*[np.arange(s) for s in zyx], indexing="ij")
    label = np.zeros(zyx, np.uint8)
    for _ in range(2):
        c = rng.uniform(0.3, 0.7, 3) * np.array(zyx)
        r = rng.uniform(2.5, 4.0)
        label[sum((g - cc) ** 2 for g, cc in zip(grids, c)) < r ** 2] = 1
    noise = lambda: rng.normal(0, 5, zyx)
    return {"FLAIR": (100 + 80 * label + noise()).astype(np.float32),
            "T1": (120 - 50 * label + noise()).astype(np.float32),
            "T2": (90 + 60 * label + noise()).astype(np.float32),
            "PD": (80 + 30 * label + noise()).astype(np.float32), "label": label}


def test_end_to_end_source_to_target(nnunet_env, tmp_path):
    raw = Path(nnunet_env["nnUNet_raw"])
    rng = np.random.default_rng(0)
    src_cases = (("P1", "T1"), ("P1", "T2"), ("P2", "T1"), ("P6", "T2"), ("P7", "T3"))
    src = make_mslesseg(tmp_path / "mslesseg", cases=src_cases, shape=(24, 24, 24),
                        images=[_synthetic_case((24, 24, 24), rng) for _ in src_cases])
    rep = convert(src, raw, "--format", "mslesseg", "--id", 130, "--modalities", "FLAIR,T1")
    assert len(rep.written["Tr"]) == 5
    target_shape = (20, 26, 22)
    tgt = make_isbi(tmp_path / "isbi", shape=target_shape, images=[_synthetic_case(target_shape, rng) for _ in range(2)])
    proc = run_cli(["nnunet-rc", "convert", "ms", tgt, "--format", "isbi2015", "--id", 131, "--modalities", "flair,mprage",
                    "--split", "Ts", "--name", "MS_ISBI_target"])
    assert "imagesTs: 2 case(s), 2 with label" in proc.stdout
    target = raw / "Dataset131_MS_ISBI_target"
    assert json.loads((target / "dataset.json").read_text())["channel_names"] == {"0": "FLAIR", "1": "T1"}

    plan_and_preprocess(130, ["3d_fullres"])
    run_cli(["nnUNetv2_train", 130, "3d_fullres", "all", "-tr", "nnUNetTrainerDGBaseline", "-device", "cpu"],
            env=short_schedule_env())
    pred = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", target / "imagesTs", "-o", pred, "-d", 130, "-c", "3d_fullres",
             "-tr", "nnUNetTrainerDGBaseline", "-f", "all", "--disable_tta", "-npp", 1, "-nps", 1, "-device", "cpu"])
    for case in ("isbi_01_01", "isbi_01_02"):
        p = sitk.ReadImage(str(pred / f"{case}.nii.gz"))
        assert p.GetSize() == target_shape
        assert set(np.unique(sitk.GetArrayFromImage(p)).tolist()) <= {0, 1}
