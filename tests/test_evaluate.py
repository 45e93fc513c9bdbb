"""nnunet_rc.evaluation: Dice/HD95/lesion metrics and ``nnunet-rc evaluate`` on hand-computable label maps."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from conftest import run_cli
from nnunet_rc.evaluation import evaluate_folder
from nnunet_rc.evaluation.evaluate import EvaluationError, read_groups, summary_table
from nnunet_rc.evaluation.lesion import components, lesion_metrics
from nnunet_rc.evaluation.metrics import hd95, label_metrics

LABELS = {"background": 0, "outer": 1, "inner": 2}


def write_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def write_nifti(path, arr, spacing_xyz=(1.0, 1.0, 1.0)):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    im = sitk.GetImageFromArray(np.asarray(arr, np.uint8))
    im.SetSpacing(spacing_xyz)
    sitk.WriteImage(im, str(path))


def write_dataset_json(folder, labels=LABELS, ending=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ending,
                                                     "channel_names": {"0": "grey"}, "numTraining": 1}))


@pytest.fixture
def two_cases(tmp_path):
    """Case a: outer Dice 2/3 (16 ref px, 8 predicted inside), inner exact. Case b: outer exact, no inner."""
    root = tmp_path / "Dataset999_T"
    ref_a = np.zeros((20, 20), np.uint8)
    ref_a[2:6, 2:6] = 1
    ref_a[10:12, 10:12] = 2
    pred_a = ref_a.copy()
    pred_a[2:4, 2:6] = 0
    ref_b = np.zeros((20, 20), np.uint8)
    ref_b[5:9, 5:9] = 1
    write_png(root / "labelsTs" / "a.png", ref_a)
    write_png(root / "labelsTs" / "b.png", ref_b)
    write_png(tmp_path / "pred" / "a.png", pred_a)
    write_png(tmp_path / "pred" / "b.png", ref_b)
    write_dataset_json(root)
    return {"ref": root / "labelsTs", "pred": tmp_path / "pred", "root": root}


def test_dice_per_label_and_foreground_mean(two_cases, tmp_path):
    res = evaluate_folder(two_cases["pred"], two_cases["ref"], out_dir=tmp_path / "out", progress=False)
    by_case = {r["case"]: r for r in res["per_case"]}
    assert by_case["a"]["Dice_outer"] == pytest.approx(2 / 3)
    assert by_case["a"]["Dice_inner"] == 1.0
    assert math.isnan(by_case["b"]["Dice_inner"])          # absent in both: NaN, skipped in the mean
    assert res["per_label"]["outer"]["Dice"] == pytest.approx(5 / 6)
    assert res["per_label"]["inner"]["Dice"] == 1.0
    assert res["foreground_mean"]["Dice"] == pytest.approx(11 / 12)
    assert res["per_label"]["inner"]["HD95_both_empty"] == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] == pytest.approx(11 / 12)
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_case.csv")))
    assert [r["case"] for r in rows] == ["a", "b"]
    assert float(rows[0]["Dice_outer"]) == pytest.approx(2 / 3)


def test_labels_inferred_without_dataset_json(tmp_path):
    ref = np.zeros((10, 10), np.uint8)
    ref[1:3, 1:3] = 4
    pred = np.zeros_like(ref)
    pred[1:3, 1:2] = 4
    write_png(tmp_path / "ref" / "c.png", ref)
    write_png(tmp_path / "pred" / "c.png", pred)
    res = evaluate_folder(tmp_path / "pred", tmp_path / "ref", progress=False)
    assert list(res["per_label"]) == ["4"]
    assert res["foreground_mean"]["Dice"] == pytest.approx(2 * 2 / (4 + 2))
    assert (tmp_path / "pred" / "summary.json").is_file()   # default output: the prediction folder


def test_ignore_label_excluded(tmp_path):
    labels = {"background": 0, "vessel": 1, "ignore": 2}
    ref = np.zeros((10, 10), np.uint8)
    ref[0:2, :] = 1
    ref[5:7, :] = 2                       # unannotated band
    pred = np.zeros_like(ref)
    pred[0:2, :] = 1
    pred[5:7, :] = 1                      # predicted vessel inside the ignored band: not an FP
    write_png(tmp_path / "ds" / "labelsTs" / "x.png", ref)
    write_png(tmp_path / "pred" / "x.png", pred)
    write_dataset_json(tmp_path / "ds", labels)
    res = evaluate_folder(tmp_path / "pred", tmp_path / "ds" / "labelsTs", progress=False)
    assert list(res["per_label"]) == ["vessel"]
    assert res["per_label"]["vessel"]["Dice"] == 1.0
    assert res["per_label"]["vessel"]["HD95"] == 0.0
    assert res["ignore_label"] == 2


def test_regions_from_dataset_json():
    ref = np.zeros((10, 10), np.uint8)
    ref[0:4, 0:4] = 1
    ref[1:3, 1:3] = 2
    pred = np.zeros_like(ref)
    pred[0:4, 0:4] = 2                    # whole tumour right, core too big
    m = label_metrics(ref, pred, [(1, 2), (2,)], compute_hd95=False)
    assert m[(1, 2)]["Dice"] == 1.0
    assert m[(2,)]["Dice"] == pytest.approx(2 * 4 / (4 + 16))


def test_mask_restricts_metrics(tmp_path):
    ref = np.zeros((10, 10), np.uint8)
    ref[2:4, 2:4] = 1
    pred = ref.copy()
    pred[8:10, 8:10] = 1                  # false positive outside the field of view
    fov = np.zeros_like(ref)
    fov[0:6, 0:6] = 1
    write_png(tmp_path / "ref" / "r.png", ref)
    write_png(tmp_path / "pred" / "r.png", pred)
    write_png(tmp_path / "mask" / "r.png", fov)
    no_mask = evaluate_folder(tmp_path / "pred", tmp_path / "ref", write=False, progress=False)
    masked = evaluate_folder(tmp_path / "pred", tmp_path / "ref", mask_dir=tmp_path / "mask", write=False,
                             progress=False)
    assert no_mask["foreground_mean"]["Dice"] == pytest.approx(2 * 4 / (4 + 8))
    assert masked["foreground_mean"]["Dice"] == 1.0
    with pytest.raises(EvaluationError, match="mask"):
        (tmp_path / "mask" / "r.png").unlink()
        evaluate_folder(tmp_path / "pred", tmp_path / "ref", mask_dir=tmp_path / "mask", write=False)


def test_hd95_known_distances():
    a = np.zeros((20, 30), bool)
    b = np.zeros((20, 30), bool)
    a[5, 3:25] = True
    b[8, 3:25] = True                     # parallel line 3 rows away: every surface distance is 3
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 1.0)) == pytest.approx(6.0)   # rows spaced 2 mm
    sq_a = np.zeros((30, 30), bool)
    sq_a[10:20, 10:20] = True
    sq_b = np.roll(sq_a, 3, axis=0)       # square shifted by 3: Hausdorff distance 3
    assert hd95(sq_a, sq_b, percentile=100) == pytest.approx(3.0)
    assert 0 < hd95(sq_a, sq_b) <= 3.0
    assert hd95(np.zeros_like(a), np.zeros_like(b)) is None
    assert math.isnan(hd95(a, np.zeros_like(b)))


def test_hd95_uses_physical_spacing_from_nifti(tmp_path):
    ref = np.zeros((4, 20, 12), np.uint8)     # numpy (z, y, x)
    pred = np.zeros_like(ref)
    ref[:, 5, :] = 1
    pred[:, 8, :] = 1
    write_nifti(tmp_path / "ref" / "v.nii.gz", ref, spacing_xyz=(1.0, 2.0, 1.0))
    write_nifti(tmp_path / "pred" / "v.nii.gz", pred, spacing_xyz=(1.0, 2.0, 1.0))
    empty = np.zeros_like(ref)
    write_nifti(tmp_path / "ref" / "w.nii.gz", ref, spacing_xyz=(1.0, 2.0, 1.0))
    write_nifti(tmp_path / "pred" / "w.nii.gz", empty, spacing_xyz=(1.0, 2.0, 1.0))
    res = evaluate_folder(tmp_path / "pred", tmp_path / "ref", write=False, progress=False)
    by_case = {r["case"]: r for r in res["per_case"]}
    assert by_case["v"]["HD95_1"] == pytest.approx(6.0)
    assert math.isnan(by_case["w"]["HD95_1"])
    assert res["per_label"]["1"]["HD95"] == pytest.approx(6.0)     # NaN case excluded from the mean ...
    assert res["per_label"]["1"]["HD95_one_empty"] == 1             # ... and counted


def test_lesion_split_missed_and_false_positive():
    ref = np.zeros((20, 20), bool)
    ref[2:4, 2:8] = True                  # lesion A
    ref[12:15, 12:15] = True              # lesion B (missed)
    pred = np.zeros_like(ref)
    pred[2:4, 2:4] = True                 # A predicted as two pieces
    pred[2:4, 6:8] = True
    pred[17:19, 2:4] = True               # false positive
    m = lesion_metrics(ref, pred)
    assert (m["n_ref_lesions"], m["detected"], m["missed"]) == (2, 1, 1)
    assert (m["n_pred_lesions"], m["true_pred"], m["false_pos"]) == (3, 2, 1)
    assert m["lesion_TPR"] == 0.5
    assert m["lesion_PPV"] == pytest.approx(2 / 3)
    assert m["lesion_F1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_lesion_connectivity_min_size_and_overlap():
    diag = np.zeros((5, 5), bool)
    diag[1, 1] = diag[2, 2] = True
    assert len(components(diag)[1]) == 1                       # full (8-) connectivity
    ref = np.zeros((10, 10), bool)
    ref[0:2, 0:2] = True
    pred = np.zeros_like(ref)
    pred[0, 0] = True                                          # covers 1/4 of the lesion
    pred[8, 8] = True                                          # single-voxel FP
    assert lesion_metrics(ref, pred)["false_pos"] == 1
    assert lesion_metrics(ref, pred, min_size=2)["n_pred_lesions"] == 0   # both components < 2 voxels
    assert lesion_metrics(ref, pred, overlap=0.2)["detected"] == 1
    assert lesion_metrics(ref, pred, overlap=0.5)["detected"] == 0
    none = lesion_metrics(ref, np.zeros_like(ref))
    assert none["lesion_F1"] == 0.0 and none["lesion_PPV"] is None


def test_lesion_empty_reference_no_nan_in_mean(tmp_path):
    ref1 = np.zeros((20, 20), np.uint8)
    ref1[2:5, 2:5] = 1
    pred1 = ref1.copy()
    ref2 = np.zeros((20, 20), np.uint8)   # no lesion at all
    pred2 = np.zeros_like(ref2)
    pred2[0:2, 0:2] = 1
    pred2[10:12, 10:12] = 1               # two false positives
    for name, r, p in (("s1", ref1, pred1), ("s2", ref2, pred2)):
        write_png(tmp_path / "ref" / f"{name}.png", r)
        write_png(tmp_path / "pred" / f"{name}.png", p)
    res = evaluate_folder(tmp_path / "pred", tmp_path / "ref", lesion=True, write=False, progress=False)
    les = res["lesion"]
    assert les["lesion_TPR"] == 1.0 and les["lesion_F1"] == 1.0
    assert les["Dice"] == 1.0             # voxel Dice over cases with lesions
    assert les["empty_reference"] == {"n_cases": 1, "false_pos": 2, "cases": ["s2"]}
    assert les["pooled"]["false_pos"] == 2
    assert les["lesion_PPV"] == pytest.approx(0.5)   # s1: 1/1, s2: 0/2
    assert "empty-ref" in summary_table(res)


def test_groups_exact_averages(tmp_path):
    for i, n_pred in enumerate([16, 8, 4]):
        ref = np.zeros((10, 10), np.uint8)
        ref[0:4, 0:4] = 1
        pred = np.zeros_like(ref)
        sub = np.zeros(16, np.uint8)      # first n_pred of the 16 reference pixels predicted
        sub[:n_pred] = 1
        pred[0:4, 0:4] = sub.reshape(4, 4)
        write_png(tmp_path / "ref" / f"sub-{i}.png", ref)
        write_png(tmp_path / "pred" / f"sub-{i}.png", pred)
    (tmp_path / "groups.csv").write_text("participant_id,group\nsub-0,normal\nsub-1,abnormal\nsub-2,abnormal\n")
    res = evaluate_folder(tmp_path / "pred", tmp_path / "ref", groups=tmp_path / "groups.csv", write=False,
                          progress=False)
    d = {0: 1.0, 1: 2 * 8 / 24, 2: 2 * 4 / 20}
    assert res["groups"]["normal"]["foreground_mean"]["Dice"] == pytest.approx(d[0])
    assert res["groups"]["abnormal"]["foreground_mean"]["Dice"] == pytest.approx((d[1] + d[2]) / 2)
    assert res["groups"]["average"]["foreground_mean"]["Dice"] == pytest.approx(sum(d.values()) / 3)
    assert [r["group"] for r in res["per_case"]] == ["normal", "abnormal", "abnormal"]
    (tmp_path / "g.tsv").write_text("case\tdiagnosis\nsub-0\tA\nsub-1\tB\nsub-2\tB\n")
    assert read_groups(tmp_path / "g.tsv", group_column="diagnosis") == {"sub-0": "A", "sub-1": "B", "sub-2": "B"}
    with pytest.raises(EvaluationError, match="group column"):
        read_groups(tmp_path / "g.tsv")
    (tmp_path / "partial.csv").write_text("case,group\nsub-0,normal\n")
    with pytest.raises(EvaluationError, match="not in the groups file"):
        evaluate_folder(tmp_path / "pred", tmp_path / "ref", groups=tmp_path / "partial.csv", write=False)


def test_missing_reference_is_a_clear_error(two_cases):
    write_png(two_cases["pred"] / "zzz.png", np.zeros((20, 20)))
    with pytest.raises(EvaluationError, match="zzz.png"):
        evaluate_folder(two_cases["pred"], two_cases["ref"], write=False)


def test_cli_writes_summary_csv_and_table(two_cases, tmp_path):
    (tmp_path / "groups.csv").write_text("case,group\na,abnormal\nb,normal\n")
    out = tmp_path / "cli_out"
    proc = run_cli(["nnunet-rc", "evaluate", "--pred", two_cases["pred"], "--ref", two_cases["ref"],
                    "--groups", tmp_path / "groups.csv", "--lesion", "--out", out])
    assert "average" in proc.stdout and "abnormal" in proc.stdout and "Dice outer" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["average"]["foreground_mean"]["Dice"] == pytest.approx(11 / 12)
    assert summary["groups"]["normal"]["per_label"]["outer"]["Dice"] == 1.0
    assert (out / "per_case.csv").is_file()
    bad = run_cli(["nnunet-rc", "evaluate", "--pred", tmp_path / "nope", "--ref", two_cases["ref"]], check=False)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
