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


def convert(capsys, name, src, out, dataset_id, *extra, spacing="native"):
    """Run the converter; ``spacing="native"`` (the first release's PNG output) unless asked otherwise, so
    the pixel-exact checks below also pin that ``--spacing native`` reproduces it."""
    rc = main(["convert", name, str(src), "--id", str(dataset_id), "--out", str(out), "--spacing", spacing,
               *map(str, extra)])
    return rc, capsys.readouterr().out


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def check_cases(folder: Path, split: str, expected: dict, labels=True, masks=True, derived_masks=False):
    """Every expected case written exactly: RGB image pixels, {0,1} label, {0,1} FOV mask (shipped: exact;
    ``derived_masks``: derived from the image, equal to the true FOV up to 2 pixels at its boundary, marked in
    the metadata)."""
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
        if derived_masks:
            m = read(folder / f"masks{split}" / f"{cid}.png")
            assert set(np.unique(m).tolist()) <= {0, 1}
            from scipy import ndimage

            band = ndimage.binary_dilation(fov, iterations=2) & ~ndimage.binary_erosion(fov, iterations=2)  # JPEG ringing
            assert not ((m != fov) & ~band).any(), cid
    assert (folder / f"labels{split}").is_dir() == labels
    assert (folder / f"masks{split}").is_dir() == (masks or derived_masks)
    if derived_masks:
        meta = (folder / "case_metadata.csv").read_text()
        assert "fov_mask" in meta and "derived" in meta and "shipped" not in meta


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
    check_cases(folder, "Ts", expected, masks=False, derived_masks=True)
    rc, out = convert(capsys, "chase", tmp_path / "CHASEDB1", tmp_path / "raw", 113, "--annotator", "2ndHO",
                      "--overwrite")
    assert rc == 0, out
    for cid, (_, vessel, _) in expected.items():
        np.testing.assert_array_equal(read(only_dataset(tmp_path / "raw") / "labelsTs" / f"{cid}.png"), 1 - vessel)


def test_stare_ppm_and_gz(tmp_path, capsys):
    expected = write_stare(tmp_path / "stare")
    rc, out = convert(capsys, "stare", tmp_path / "stare", tmp_path / "raw", 114, "--annotator", "vk")
    assert rc == 0, out
    check_cases(only_dataset(tmp_path / "raw"), "Ts", expected, masks=False, derived_masks=True)


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


def test_chase_as_source_splits_by_child(tmp_path, capsys):
    """``--as-source``: children 01-10 -> imagesTr, 11-14 -> imagesTs (both eyes of a child on one side);
    a missing label is then an error, a file name without the child's number too, and it excludes
    ``--as-training``."""
    expected = write_chase(tmp_path / "c", names=("Image_01L", "Image_10R", "Image_11L", "Image_14R"))
    rc, out = convert(capsys, "chase", tmp_path / "c", tmp_path / "raw", 116, "--as-source")
    assert rc == 0, out
    folder = only_dataset(tmp_path / "raw")
    train = {k: v for k, v in expected.items() if k in ("Image_01L", "Image_10R")}
    check_cases(folder, "Tr", train, masks=False, derived_masks=True)
    check_cases(folder, "Ts", {k: v for k, v in expected.items() if k not in train}, masks=False,
                derived_masks=True)

    (tmp_path / "c" / "Image_11L_1stHO.png").unlink()
    rc, out = convert(capsys, "chase", tmp_path / "c", tmp_path / "raw2", 116, "--as-source")
    assert rc == 1 and "Image_11L" in out and "no label" in out
    assert list((tmp_path / "raw2").iterdir()) == []

    write_chase(tmp_path / "d", names=("Image_01L", "Image_extra"))
    rc, out = convert(capsys, "chase", tmp_path / "d", tmp_path / "raw3", 116, "--as-source")
    assert rc == 1 and "Image_extra" in out and "Image_<child><L|R>" in out

    with pytest.raises(SystemExit):
        main(["convert", "chase", str(tmp_path / "c"), "--id", "116", "--as-source", "--as-training"])
    assert "not allowed with argument" in capsys.readouterr().err


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
    from conftest import plan_and_preprocess, run_cli, short_schedule_env

    raw = Path(nnunet_env["nnUNet_raw"])
    write_drive(tmp_path / "drive", n_train=5, n_test=1, test_labels=False, w=48, h=48)
    iostar = write_iostar(tmp_path / "iostar", w=56, h=52)
    # the default: every dataset on one physical scale (per-channel NIfTI with the FOV-derived spacing)
    assert convert(capsys, "drive", tmp_path / "drive", raw, 940, spacing="fov")[0] == 0
    assert convert(capsys, "iostar", tmp_path / "iostar", raw, 941, spacing="fov")[0] == 0
    plan_and_preprocess(940, ["2d"])
    run_cli(["nnUNetv2_train", 940, "2d", "all", "-tr", "nnUNetTrainerDGBaseline", "-device", "cpu"],
            env=short_schedule_env())
    target = raw / "Dataset941_IOSTAR"
    pred = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", target / "imagesTs", "-o", pred, "-d", 940, "-c", "2d", "-f", "all",
             "-tr", "nnUNetTrainerDGBaseline", "-device", "cpu", "--disable_tta", "-npp", 1, "-nps", 1])
    import SimpleITK as sitk

    for cid in iostar:  # predicted at DRIVE's scale, written back at the target's native size and spacing
        pred_img = sitk.ReadImage(str(pred / f"{cid}.nii.gz"))
        ref_img = sitk.ReadImage(str(target / "labelsTs" / f"{cid}.nii.gz"))
        p = sitk.GetArrayFromImage(pred_img).squeeze()
        assert p.shape == (52, 56)
        np.testing.assert_allclose(pred_img.GetSpacing()[:2], ref_img.GetSpacing()[:2], rtol=1e-5)
        assert set(np.unique(p).tolist()) <= {0, 1}
    from nnunet_rc.evaluation import evaluate_folder

    result = evaluate_folder(pred, target / "labelsTs", dataset_json=target / "dataset.json",
                             mask_dir=target / "masksTs", out_dir=tmp_path / "eval")
    dice = result["foreground_mean"]["Dice"]
    assert 0.0 <= dice <= 1.0
    assert [c["case"] for c in result["per_case"]] == sorted(iostar)


# ---- one physical scale: the targets at the source's scale after nnU-Net's own resampling -----------------

def _fov_width_after_resampling_to(folder: Path, split: str, case: str, target_spacing) -> int:
    """FOV width (px) of ``case``'s mask after nnU-Net's reader and its resampling to ``target_spacing``."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    seg, props = SimpleITKIO().read_seg(str(folder / f"masks{split}" / f"{case}.nii.gz"))
    spacing = props["spacing"]
    target_spacing = [spacing[0], *target_spacing[1:]]  # 2d: nnU-Net resamples the in-plane axes only
    new_shape = compute_new_shape(seg.shape[1:], spacing, target_spacing)
    res = resample_data_or_seg_to_shape(seg, new_shape, spacing, target_spacing, is_seg=True, order=1, order_z=0)
    from nnunet_rc.dataset_conversion.retinal import fov_diameter_px

    return fov_diameter_px(res[0, 0] > 0)


def test_targets_meet_drive_s_field_of_view_size_after_nnunet_resampling(tmp_path, capsys):
    """HRF (45°, 6x DRIVE's pixels) and IOSTAR (45°, SLO) fields of view within ±15 % of DRIVE's FOV width
    after nnU-Net's resampling to DRIVE's spacing; CHASE (30°) at two thirds of it."""
    import SimpleITK as sitk
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    write_drive(tmp_path / "drive", n_train=2, n_test=0, w=56, h=58)
    write_hrf(tmp_path / "hrf", w=336, h=224)  # 6x DRIVE's width; the FOV spans the image width
    write_iostar(tmp_path / "iostar", w=100, h=100)
    write_chase(tmp_path / "chase", w=96, h=92)
    raw = tmp_path / "raw"
    for name, src, did in (("drive", "drive", 110), ("hrf", "hrf", 115), ("iostar", "iostar", 111),
                           ("chase", "chase", 113)):
        assert convert(capsys, name, tmp_path / src, raw, did, spacing="fov")[0] == 0
    folders = {p.name.split("_")[0]: p for p in raw.iterdir()}
    drive = folders["Dataset110"]
    assert json.loads((drive / "dataset.json").read_text())["file_ending"] == ".nii.gz"
    # nnU-Net's reader sees three channels and the recorded spacing (999x the largest on the fake z axis)
    data, props = SimpleITKIO().read_images([str(drive / "imagesTr" / f"21_training_{c:04d}.nii.gz") for c in range(3)])
    assert data.shape == (3, 1, 58, 56) and props["spacing"][0] == pytest.approx(999 * props["spacing"][1])
    drive_spacing = props["spacing"]
    assert drive_spacing[1] == pytest.approx(45 * 0.288 / 56, rel=1e-5)
    drive_width = _fov_width_after_resampling_to(drive, "Tr", "21_training", drive_spacing)
    assert drive_width == 56
    for key, split, case in (("Dataset115", "Ts", "01_dr"), ("Dataset111", "Ts", "STAR_01_OSC")):
        width = _fov_width_after_resampling_to(folders[key], split, case, drive_spacing)
        assert abs(width - drive_width) <= 0.15 * drive_width, (key, width, drive_width)
    chase = _fov_width_after_resampling_to(folders["Dataset113"], "Ts", "Image_01L", drive_spacing)
    assert abs(chase - drive_width * 30 / 45) <= 0.15 * drive_width * 30 / 45
    meta = (folders["Dataset113"] / "case_metadata.csv").read_text()
    assert "derived" in meta and "spacing_mm" in meta and "fov_degrees" in meta
    # the label keeps the image's geometry
    lab = sitk.ReadImage(str(folders["Dataset115"] / "labelsTs" / "01_dr.nii.gz"))
    img = sitk.ReadImage(str(folders["Dataset115"] / "imagesTs" / "01_dr_0000.nii.gz"))
    assert lab.GetSpacing() == img.GetSpacing() and lab.GetSize() == img.GetSize()


def test_derived_fov_mask_and_dark_image_error():
    from nnunet_rc.dataset_conversion.retinal import ConversionError, derive_fov_mask
    from retinal_fixtures import fundus

    rgb, _, fov = fundus(80, 70, seed=3)
    rgb = rgb.copy()
    rgb[35, 40] = 0  # a dark pixel inside the FOV (a vessel) must not make a hole
    rgb[0, 0] = 200  # a bright speck outside is not the largest component
    mask = derive_fov_mask(rgb, "x")
    assert mask[35, 40] == 1 and mask[0, 0] == 0
    assert np.sum(mask != fov) <= 0.03 * fov.size
    with pytest.raises(ConversionError, match="dark everywhere"):
        derive_fov_mask(np.zeros((10, 10, 3), np.uint8), "case y")
