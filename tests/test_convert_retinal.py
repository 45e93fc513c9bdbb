"""Retinal vessel converters (``nnunet-rc convert drive|iostar|lesav|chase|stare|hrf``) on tiny synthetic
downloads laid out exactly as distributed, the bad inputs they must refuse, and one end-to-end run
(DRIVE-shaped source -> nnU-Net training -> prediction on an IOSTAR-shaped target)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnunet_rc.cli import main
from retinal_fixtures import (H, IOSTAR_TOP, W, write_chase, write_drive, write_hrf, write_iostar,
                              write_lesav_zip, write_stare)


def convert(capsys, name, src, out, dataset_id, *extra):
    rc = main(["convert", name, str(src), "--id", str(dataset_id), "--out", str(out), *map(str, extra)])
    return rc, capsys.readouterr().out


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def check_cases(folder: Path, split: str, expected: dict, labels=True, masks=True):
    """Every expected case written exactly: RGB image pixels, {0,1} label, {0,1} FOV mask."""
    images = sorted(p.name for p in (folder / f"images{split}").iterdir())
    assert images == sorted(f"{c}_0000.png" for c in expected)
    for cid, (rgb, vessel, fov) in expected.items():
        img = Image.open(folder / f"images{split}" / f"{cid}_0000.png")
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), rgb)
        if labels:
            lab = Image.open(folder / f"labels{split}" / f"{cid}.png")
            assert lab.mode == "L"
            np.testing.assert_array_equal(np.asarray(lab), vessel)
        if masks:
            np.testing.assert_array_equal(read(folder / f"masks{split}" / f"{cid}.png"), fov)
    assert (folder / f"labels{split}").is_dir() == labels
    assert (folder / f"masks{split}").is_dir() == masks


def check_json(folder: Path, num_training: int):
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dj["labels"] == {"background": 0, "vessel": 1}
    assert dj["file_ending"] == ".png"
    assert dj["numTraining"] == num_training


def only_dataset(out: Path) -> Path:
    entries = list(out.iterdir())
    assert len(entries) == 1, entries  # no hidden partial folder left behind
    return entries[0]


# ---- each dataset, as distributed ------------------------------------------------------------------------

@pytest.mark.parametrize("test_labels", [True, False], ids=["legacy-with-test-labels", "current-no-test-labels"])
def test_drive_both_variants(tmp_path, capsys, test_labels):
    expected = write_drive(tmp_path / "src", test_labels=test_labels)
    (tmp_path / "src" / "DRIVE" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "src" / "DRIVE" / "training" / "images" / "._21_training.tif").write_bytes(b"\0")
    rc, out = convert(capsys, "drive", tmp_path / "src", tmp_path / "raw", 110)
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    assert folder.name == "Dataset110_DRIVE"
    check_cases(folder, "Tr", {k: v for k, v in expected.items() if "training" in k})
    check_cases(folder, "Ts", {k: v for k, v in expected.items() if "test" in k}, labels=test_labels)
    check_json(folder, 2)
    assert "imagesTr: 2 case(s), 2 with label" in out
    assert f"imagesTs: 2 case(s), {2 if test_labels else 0} with label" in out
    meta = (folder / "case_metadata.csv").read_text()
    assert "21_training" in meta and "training/images/21_training.tif" in meta


def test_iostar_spaces_in_names_and_1bit_tiff(tmp_path, capsys):
    expected = write_iostar(tmp_path / "src")
    rc, out = convert(capsys, "iostar", tmp_path / "src" / IOSTAR_TOP, tmp_path / "raw", 111)
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    assert folder.name == "Dataset111_IOSTAR"
    check_cases(folder, "Ts", expected)
    assert set(expected) == {"STAR_01_OSC", "STAR_02_ODC"}
    assert not any((folder / "imagesTr").iterdir())  # nnU-Net's layout keeps an empty imagesTr
    check_json(folder, 0)


def test_iostar_as_training(tmp_path, capsys):
    expected = write_iostar(tmp_path / "src")
    rc, out = convert(capsys, "iostar", tmp_path / "src", tmp_path / "raw", 111, "--as-training", "--name", "Star")
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    assert folder.name == "Dataset111_Star"
    check_cases(folder, "Tr", expected)
    assert not (folder / "imagesTs").exists()
    check_json(folder, 2)


def test_lesav_zip_with_clutter_and_odd_size(tmp_path, capsys):
    expected = write_lesav_zip(tmp_path / "LES-AV.zip")
    rc, out = convert(capsys, "lesav", tmp_path / "LES-AV.zip", tmp_path / "raw", 112)
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    check_cases(folder, "Ts", expected)
    assert read(folder / "imagesTs" / "34_0000.png").shape == (H + 6, W + 8, 3)
    assert read(folder / "masksTs" / "34.png").shape == (H + 6, W + 8)
    assert "skipped: none" in out


def test_chase_jpg_png_and_annotator(tmp_path, capsys):
    expected = write_chase(tmp_path / "CHASEDB1")
    rc, out = convert(capsys, "chase", tmp_path / "CHASEDB1", tmp_path / "raw", 113)
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    check_cases(folder, "Ts", expected, masks=False)
    rc, out = convert(capsys, "chase", tmp_path / "CHASEDB1", tmp_path / "raw", 113, "--annotator", "2ndHO",
                      "--overwrite")
    assert rc == 0, out
    for cid, (_, vessel, _) in expected.items():
        np.testing.assert_array_equal(read(only_dataset(tmp_path / "raw") / "labelsTs" / f"{cid}.png"), 1 - vessel)


def test_stare_ppm_and_gz(tmp_path, capsys):
    expected = write_stare(tmp_path / "stare")
    rc, out = convert(capsys, "stare", tmp_path / "stare", tmp_path / "raw", 114, "--annotator", "vk")
    assert rc == 0, out
    check_cases(only_dataset(tmp_path / "raw"), "Ts", expected, masks=False)


def test_hrf_upper_and_lower_case_jpg(tmp_path, capsys):
    expected = write_hrf(tmp_path / "hrf")
    rc, out = convert(capsys, "hrf", tmp_path / "hrf", tmp_path / "raw", 115)
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    check_cases(folder, "Ts", expected)
    meta = (folder / "case_metadata.csv").read_text()
    assert "diabetic_retinopathy" in meta and "healthy" in meta


# ---- bad input: clear error naming the file (or a reported skip), nothing left behind ---------------------

def test_target_missing_label_is_skipped_and_reported(tmp_path, capsys):
    expected = write_iostar(tmp_path / "src")
    (tmp_path / "src" / IOSTAR_TOP / "GT" / "STAR 02_ODC_GT.tif").unlink()
    rc, out = convert(capsys, "iostar", tmp_path / "src", tmp_path / "raw", 111)
    assert rc == 0, out
    check_cases(only_dataset(tmp_path / "raw"), "Ts", {"STAR_01_OSC": expected["STAR_01_OSC"]})
    assert "skipped 1 case(s)" in out and "STAR_02_ODC: no label for" in out and "STAR 02_ODC_GT" in out


def test_target_missing_fov_mask_is_skipped(tmp_path, capsys):
    write_hrf(tmp_path / "hrf")
    (tmp_path / "hrf" / "mask" / "02_h_mask.tif").unlink()
    rc, out = convert(capsys, "hrf", tmp_path / "hrf", tmp_path / "raw", 115)
    assert rc == 0, out
    assert "02_h: no FOV mask for" in out
    assert sorted(p.name for p in (only_dataset(tmp_path / "raw") / "imagesTs").iterdir()) == ["01_dr_0000.png"]


def test_drive_test_case_without_label_is_skipped(tmp_path, capsys):
    write_drive(tmp_path / "src")
    (tmp_path / "src" / "DRIVE" / "test" / "1st_manual" / "02_manual1.gif").unlink()
    rc, out = convert(capsys, "drive", tmp_path / "src", tmp_path / "raw", 110)
    assert rc == 0, out
    assert "02_test: no label for" in out and "imagesTs: 1 case(s), 1 with label" in out


def test_palette_label_decoding(tmp_path):
    from nnunet_rc.dataset_conversion.retinal import _read_binary

    arr = np.zeros((H, W), np.uint8)
    arr[2:5, 3] = 1
    for palette in ([0, 0, 0, 255, 255, 255], [0, 0, 0, 255, 0, 0]):  # black/white, and black/red indices
        im = Image.frombytes("P", (W, H), arr.tobytes())
        im.putpalette(palette)
        im.save(tmp_path / "m.gif", optimize=False)
        out = _read_binary(tmp_path / "m.gif", "m.gif", "label", (W, H))
        assert out.mode == "L"
        np.testing.assert_array_equal(np.asarray(out), arr)


def test_drive_training_case_without_label_is_an_error(tmp_path, capsys):
    write_drive(tmp_path / "src")
    (tmp_path / "src" / "DRIVE" / "training" / "1st_manual" / "22_manual1.gif").unlink()
    rc, out = convert(capsys, "drive", tmp_path / "src", tmp_path / "raw", 110)
    assert rc == 1
    assert "error:" in out and "22_training.tif" in out and "22_manual1" in out and "training case" in out
    assert list((tmp_path / "raw").iterdir()) == []


def test_label_size_mismatch_names_the_file(tmp_path, capsys):
    write_iostar(tmp_path / "src")
    bad = tmp_path / "src" / IOSTAR_TOP / "GT" / "STAR 02_ODC_GT.tif"
    Image.fromarray(np.zeros((H + 1, W), bool)).save(bad)
    rc, out = convert(capsys, "iostar", tmp_path / "src", tmp_path / "raw", 111)
    assert rc == 1
    assert str(bad) in out and f"size {W}x{H + 1} != image size {W}x{H}" in out
    assert list((tmp_path / "raw").iterdir()) == []


def test_label_values_outside_binary_name_the_file(tmp_path, capsys):
    write_chase(tmp_path / "c")
    bad = tmp_path / "c" / "Image_01R_1stHO.png"
    arr = np.zeros((H, W), np.uint8)
    arr[0, :3] = (0, 128, 255)
    Image.fromarray(arr).save(bad)
    rc, out = convert(capsys, "chase", tmp_path / "c", tmp_path / "raw", 113)
    assert rc == 1
    assert str(bad) in out and "label values {0, 128, 255}" in out
    assert list((tmp_path / "raw").iterdir()) == []


def test_colour_mask_is_an_error(tmp_path, capsys):
    write_hrf(tmp_path / "hrf")
    bad = tmp_path / "hrf" / "mask" / "01_dr_mask.tif"
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(bad)
    rc, out = convert(capsys, "hrf", tmp_path / "hrf", tmp_path / "raw", 115)
    assert rc == 1 and str(bad) in out and "colour FOV mask" in out


@pytest.mark.parametrize("name", ["drive", "iostar", "lesav", "chase", "stare", "hrf"])
def test_empty_folder(tmp_path, capsys, name):
    (tmp_path / "empty").mkdir()
    rc, out = convert(capsys, name, tmp_path / "empty", tmp_path / "raw", 120)
    assert rc == 1 and "layout found; expected" in out and str(tmp_path / "empty") in out
    assert not (tmp_path / "raw").exists()


def test_layout_without_images(tmp_path, capsys):
    for s in ("images", "manual1", "mask"):
        (tmp_path / "hrf" / s).mkdir(parents=True)
    rc, out = convert(capsys, "hrf", tmp_path / "hrf", tmp_path / "raw", 120)
    assert rc == 1 and "no HRF (high-resolution fundus) images found" in out


def test_zip_slip_is_refused(tmp_path, capsys):
    write_lesav_zip(tmp_path / "LES-AV.zip", extra_entries=[("LES-AV/../../evil.txt", b"x")])
    rc, out = convert(capsys, "lesav", tmp_path / "LES-AV.zip", tmp_path / "raw", 112)
    assert rc == 1 and "LES-AV/../../evil.txt" in out and "outside" in out
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "raw").exists()


def test_existing_dataset_needs_overwrite(tmp_path, capsys):
    write_stare(tmp_path / "stare")
    assert convert(capsys, "stare", tmp_path / "stare", tmp_path / "raw", 114)[0] == 0
    (tmp_path / "raw" / "Dataset114_STARE" / "marker").write_text("old")
    rc, out = convert(capsys, "stare", tmp_path / "stare", tmp_path / "raw", 114, "--name", "Other")
    assert rc == 1 and "Dataset114_STARE already exists; pass --overwrite" in out
    assert (tmp_path / "raw" / "Dataset114_STARE" / "marker").exists()
    rc, out = convert(capsys, "stare", tmp_path / "stare", tmp_path / "raw", 114, "--name", "Other", "--overwrite")
    assert rc == 0, out
    assert only_dataset(tmp_path / "raw").name == "Dataset114_Other"


def test_unreadable_image_names_the_file(tmp_path, capsys):
    write_drive(tmp_path / "src")
    bad = tmp_path / "src" / "DRIVE" / "test" / "images" / "02_test.tif"
    bad.write_bytes(b"not a tiff")
    rc, out = convert(capsys, "drive", tmp_path / "src", tmp_path / "raw", 110)
    assert rc == 1 and str(bad) in out and "cannot read" in out
    assert list((tmp_path / "raw").iterdir()) == []


# ---- end to end: DRIVE-shaped source -> train -> predict an IOSTAR-shaped target ----------------------

def test_drive_to_iostar_end_to_end(nnunet_env, tmp_path, capsys):
    from conftest import run_cli, short_schedule_env

    raw = Path(nnunet_env["nnUNet_raw"])
    write_drive(tmp_path / "drive", n_train=5, n_test=1, test_labels=False, w=48, h=48)
    iostar = write_iostar(tmp_path / "iostar", w=56, h=52)
    assert convert(capsys, "drive", tmp_path / "drive", raw, 940)[0] == 0
    assert convert(capsys, "iostar", tmp_path / "iostar", raw, 941)[0] == 0
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", 940, "-c", "2d", "-np", 1, "-npfp", 1, "--verify_dataset_integrity"])
    run_cli(["nnUNetv2_train", 940, "2d", "all", "-tr", "nnUNetTrainerDGBaseline", "-device", "cpu"],
            env=short_schedule_env())
    target = raw / "Dataset941_IOSTAR"
    pred = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", target / "imagesTs", "-o", pred, "-d", 940, "-c", "2d", "-f", "all",
             "-tr", "nnUNetTrainerDGBaseline", "-device", "cpu", "--disable_tta", "-npp", 1, "-nps", 1])
    for cid in iostar:
        p = read(pred / f"{cid}.png")
        assert p.shape == (52, 56)
        assert set(np.unique(p).tolist()) <= {0, 1}
    from nnunet_rc.evaluation import evaluate_folder

    result = evaluate_folder(pred, target / "labelsTs", dataset_json=target / "dataset.json",
                             mask_dir=target / "masksTs", out_dir=tmp_path / "eval")
    dice = result["foreground_mean"]["Dice"]
    assert 0.0 <= dice <= 1.0
    assert [c["case"] for c in result["per_case"]] == sorted(iostar)
