"""The synthetic domain-shift benchmark: invariants of the generator and `nnunet-rc make-synthetic`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from PIL import Image

from nnunet_rc.synthetic import DOMAINS, TARGET_DOMAINS, appearance_rng, make_case, render, write_benchmark


def _read(folder: Path, sub: str):
    return {f.name: np.asarray(Image.open(f)) for f in sorted((folder / sub).glob("*.png"))}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("raw"), dim=2, seed=0, id_base=970, num_train=12, num_test=6,
                           progress=False)


def test_layout_and_dataset_json(bench):
    assert bench.source_id == 970 and bench.target_ids == {"inverted": 971, "texture": 972, "blur": 973}
    src = bench.source_folder
    assert len(list((src / "imagesTr").glob("*_0000.png"))) == 12 and len(list((src / "labelsTr").glob("*.png"))) == 12
    jsons = {d: json.loads((bench.folders[d] / "dataset.json").read_text()) for d in DOMAINS}
    assert jsons["source"]["numTraining"] == 12
    for d in DOMAINS:  # the source model predicts every target directly
        assert jsons[d]["channel_names"] == {"0": "intensity"}
        assert jsons[d]["labels"] == {"background": 0, "vessel": 1}
        assert jsons[d]["file_ending"] == ".png"
        assert len(list((bench.folders[d] / "imagesTs").glob("*_0000.png"))) == 6
    img = Image.open(src / "imagesTr" / "train000_0000.png")
    assert img.mode == "L" and img.size == (64, 64)


def test_identical_label_maps_across_domains(bench):
    ref = _read(bench.source_folder, "labelsTs")
    assert len(ref) == 6
    for d in TARGET_DOMAINS:
        labels = _read(bench.folders[d], "labelsTs")
        assert labels.keys() == ref.keys()
        for name in ref:
            np.testing.assert_array_equal(labels[name], ref[name])
    values = np.unique(np.concatenate([v.ravel() for v in ref.values()]))
    assert values.tolist() == [0, 1]
    fractions = [v.mean() for v in ref.values()]
    assert all(0.03 < f < 0.3 for f in fractions), fractions
    # the training label maps are other trees than the test ones
    train = _read(bench.source_folder, "labelsTr")
    assert not np.array_equal(train["train000.png"], ref["test000.png"])


def test_shifted_intensity_statistics(bench):
    labels = _read(bench.source_folder, "labelsTs")
    stats = {}
    for d in DOMAINS:
        imgs = _read(bench.folders[d], "imagesTs")
        vessel = np.concatenate([imgs[n.replace(".png", "_0000.png")][labels[n] == 1] for n in labels]) / 255.0
        backgr = np.concatenate([imgs[n.replace(".png", "_0000.png")][labels[n] == 0] for n in labels]) / 255.0
        # fine-scale texture/noise: residual after a Gaussian smoothing (sigma 2 px), on the background
        resid = np.concatenate([(im / 255.0 - ndimage.gaussian_filter(im / 255.0, 2))[labels[n] == 0]
                                for n in labels for im in [imgs[n.replace(".png", "_0000.png")].astype(float)]])
        stats[d] = (np.concatenate([vessel, backgr]).mean(), vessel.mean() - backgr.mean(), resid.std())
    # source: vessels darker than the background
    assert stats["source"][1] < -0.15
    # inverted: vessels brighter (contrast inversion)
    assert stats["inverted"][1] > 0.15
    # every target differs from the source in global mean or contrast or background texture
    for d in TARGET_DOMAINS:
        m, c, s = stats[d]
        ms, cs, ss = stats["source"]
        assert abs(m - ms) > 0.1 or abs(c - cs) > 0.1 or s > 1.5 * ss, (d, stats[d], stats["source"])
    # granular texture + speckle: fine-scale background variation relative to the vessel contrast
    # (invariant to nnU-Net's z-score normalisation) at least twice the source's
    ratio = {d: stats[d][2] / abs(stats[d][1]) for d in DOMAINS}
    assert ratio["texture"] > 2 * ratio["source"], ratio
    assert abs(stats["blur"][1]) < abs(stats["source"][1])  # blur and compression lower the contrast


def test_source_threshold_fails_on_targets(bench):
    """A global threshold fitted on the source training set segments the source test set well and
    fails on every target (the shift is real at the intensity level)."""
    tr_img, tr_lab = _read(bench.source_folder, "imagesTr"), _read(bench.source_folder, "labelsTr")
    pairs = [(tr_img[n.replace(".png", "_0000.png")], tr_lab[n]) for n in tr_lab]
    thresholds = np.arange(1, 255)
    score = [np.mean([_dice(img < t, lab) for img, lab in pairs]) for t in thresholds]
    t = thresholds[int(np.argmax(score))]
    labels = _read(bench.source_folder, "labelsTs")

    def test_dice(domain):
        imgs = _read(bench.folders[domain], "imagesTs")
        return np.mean([_dice(imgs[n.replace(".png", "_0000.png")] < t, labels[n]) for n in labels])

    assert test_dice("source") > 0.7
    for d in TARGET_DOMAINS:
        assert test_dice(d) < 0.5, d


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = make_case(3, "Tr", 5)
    b = make_case(3, "Tr", 5)
    c = make_case(4, "Tr", 5)
    np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(a["label"], c["label"])
    for d in DOMAINS:
        x = render(d, a, appearance_rng(3, d, "Tr", 5))
        y = render(d, b, appearance_rng(3, d, "Tr", 5))
        np.testing.assert_array_equal(x, y)
        assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1


def test_written_files_are_identical_for_the_same_seed(tmp_path):
    b1 = write_benchmark(tmp_path / "a", seed=7, num_train=2, num_test=2, targets=("inverted", "blur"), progress=False)
    b2 = write_benchmark(tmp_path / "b", seed=7, num_train=2, num_test=2, targets=("inverted", "blur"), progress=False)
    b3 = write_benchmark(tmp_path / "c", seed=8, num_train=2, num_test=2, targets=("inverted", "blur"), progress=False)
    for d in ("source", "inverted", "blur"):
        for sub in ("imagesTs", "labelsTs"):
            for f in sorted((b1.folders[d] / sub).iterdir()):
                assert f.read_bytes() == (b2.folders[d] / sub / f.name).read_bytes()
    assert not np.array_equal(_read(b1.source_folder, "labelsTr")["train000.png"],
                              _read(b3.source_folder, "labelsTr")["train000.png"])


def test_3d_mode_writes_valid_nifti(tmp_path):
    import SimpleITK as sitk

    bench = write_benchmark(tmp_path, dim=3, seed=0, num_train=2, num_test=2, size=24, targets=("inverted", "texture"),
                            progress=False)
    dj = json.loads((bench.source_folder / "dataset.json").read_text())
    assert dj["file_ending"] == ".nii.gz" and dj["labels"] == {"background": 0, "lesion": 1}
    src_label = sitk.GetArrayFromImage(sitk.ReadImage(str(bench.source_folder / "labelsTs" / "test000.nii.gz")))
    assert src_label.shape == (24, 24, 24) and set(np.unique(src_label).tolist()) == {0, 1}
    for d in ("source", "inverted", "texture"):
        img = sitk.ReadImage(str(bench.folders[d] / "imagesTs" / "test000_0000.nii.gz"))
        assert img.GetSize() == (24, 24, 24) and img.GetSpacing() == (1.0, 1.0, 1.0)
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(bench.folders[d] / "labelsTs" / "test000.nii.gz")))
        np.testing.assert_array_equal(lab, src_label)
    arr = {d: sitk.GetArrayFromImage(sitk.ReadImage(str(bench.folders[d] / "imagesTs" / "test000_0000.nii.gz")))
           for d in ("source", "inverted")}
    lesion = src_label == 1
    # T1-like: lesions darker than the surrounding white matter; T2-like: brighter than the brain mean
    assert arr["source"][lesion].mean() < 0.5 < arr["inverted"][lesion].mean()


def test_make_synthetic_cli(tmp_path, capsys):
    from nnunet_rc.cli import main

    args = ["make-synthetic", "--out", str(tmp_path), "--num-train", "2", "--num-test", "1", "--id-base", "960",
            "--targets", "inverted", "texture"]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Dataset960_SynthVesselSource", "Dataset961_SynthVesselInverted", "Dataset962_SynthVesselTexture"]
    capsys.readouterr()
    assert main(args) == 1  # refuses to replace without --overwrite
    assert "already exists" in capsys.readouterr().out
    assert main(args + ["--overwrite"]) == 0
    assert main(["make-synthetic", "--out", str(tmp_path / "x"), "--targets", "nosuch"]) == 1


def test_3d_shape_and_spacing_like_the_fetal_atlases(tmp_path, capsys):
    """Volumes of another shape and spacing (the fetal atlases: ~155 x 190 x 135 voxels at 0.8 mm) for the 3D
    cpu profile; a cube of side n is the same phantom as before."""
    import SimpleITK as sitk

    from nnunet_rc.cli import main

    np.testing.assert_array_equal(make_case(0, "Tr", 1, 3, 20)["tissue"],
                                  make_case(0, "Tr", 1, 3, (20, 20, 20))["tissue"])
    assert main(["make-synthetic", "--out", str(tmp_path), "--dim", "3", "--num-train", "1", "--num-test", "1",
                 "--id-base", "960", "--targets", "blur", "--size", "24", "30", "18", "--spacing", "0.8"]) == 0
    src = tmp_path / "Dataset960_SynthBrainSource"
    img = sitk.ReadImage(str(src / "imagesTr" / "train000_0000.nii.gz"))
    assert img.GetSize() == (18, 30, 24) and img.GetSpacing() == pytest.approx((0.8, 0.8, 0.8))
    tissue = make_case(0, "Tr", 0, 3, (24, 30, 18))["tissue"]
    assert tissue.shape == (24, 30, 18) and (tissue == 5).any() and (tissue[[0, -1]] == 0).all()  # ventricles, air
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "labelsTr" / "train000.nii.gz")))
    assert label.shape == (24, 30, 18) and label.any()
    meta = json.loads((src / "dataset.json").read_text())["nnunet_rc_synthetic"]
    assert meta["size"] == [24, 30, 18] and meta["spacing"] == [0.8, 0.8, 0.8]
    capsys.readouterr()
    assert main(["make-synthetic", "--out", str(tmp_path / "x"), "--dim", "3", "--size", "24", "30"]) == 1
    assert "size must be one int or 3 ints" in capsys.readouterr().out
    with pytest.raises(ValueError, match="2D PNGs carry no spacing"):
        write_benchmark(tmp_path / "y", dim=2, num_train=1, num_test=1, spacing=0.8, progress=False)
