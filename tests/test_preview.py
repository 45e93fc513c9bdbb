"""``nnunet-rc preview``: loading raw/preprocessed cases and writing the augmentation grid."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nnunet_rc.augment import AUGMENTATIONS
from nnunet_rc.cli import main
from nnunet_rc.preview import PreviewError, augment_draws, load_case, resolve_dataset


def test_raw_2d_case_is_zscored(preprocessed_2d):
    folder, kind = resolve_dataset(str(preprocessed_2d["id"]))
    assert kind == "raw" and folder == preprocessed_2d["raw"]
    case, image, _ = load_case("901", "case001")
    assert case == "case001" and image.shape == (1, 32, 32) and image.dtype == np.float32
    raw = np.asarray(Image.open(folder / "imagesTr" / "case001_0000.png"), dtype=np.float32)
    np.testing.assert_allclose(image[0], (raw - raw.mean()) / raw.std(), atol=1e-5)


def test_raw_3d_case_middle_slice(preprocessed_3d):
    import SimpleITK as sitk

    case, image, _ = load_case(str(preprocessed_3d["raw"]))  # by folder, default case
    assert case == "case000" and image.shape == (2, 32, 32)
    vol = sitk.GetArrayFromImage(sitk.ReadImage(str(preprocessed_3d["raw"] / "imagesTr" / "case000_0001.nii.gz")))
    ref = (vol - vol.mean()) / vol.std()
    np.testing.assert_allclose(image[1], ref[16], atol=1e-4)


def test_preprocessed_case(preprocessed_3d, nnunet_env):
    from pathlib import Path

    folder = Path(nnunet_env["nnUNet_preprocessed"]) / preprocessed_3d["name"]
    assert resolve_dataset(str(folder))[1] == "preprocessed"
    case, image, _ = load_case(str(folder), "case002", configuration="3d_fullres")
    assert case == "case002" and image.ndim == 3 and image.shape[0] == 2
    assert np.isfinite(image).all() and abs(float(image.mean())) < 1.0  # nnU-Net's z-score
    with pytest.raises(PreviewError, match="case 'nope'"):
        load_case(str(folder), "nope", configuration="3d_fullres")


def test_draws_are_reproducible_and_differ():
    image = np.random.default_rng(0).normal(size=(2, 24, 24)).astype(np.float32)
    a = augment_draws(image, ["RandConv", "GIN"], n=3, seed=5)
    b = augment_draws(image, ["RandConv", "GIN"], n=3, seed=5)
    c = augment_draws(image, ["RandConv"], n=3, seed=6)
    assert a["RandConv"].shape == (3, 2, 24, 24)
    np.testing.assert_array_equal(a["RandConv"], b["RandConv"])
    assert not np.allclose(a["RandConv"], c["RandConv"])
    assert not np.allclose(a["GIN"][0], a["GIN"][1])
    with pytest.raises(PreviewError, match="unknown augmentation"):
        augment_draws(image, ["NoSuchAug"])


def test_draw_scores_are_one_for_an_untouched_draw_and_low_for_noise():
    from nnunet_rc.preview import draw_scores

    image = np.zeros((1, 32, 32), np.float32)
    image[0, 8:24, 8:24] = 1
    noise = np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32)
    scores = draw_scores(image, {"same": np.stack([image, -image]), "noise": noise})
    np.testing.assert_allclose(scores["same"], [1, 1], atol=1e-5)
    assert scores["noise"][0] < 0.3


def test_cli_writes_grid(preprocessed_2d, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["preview", "--dataset", "901", "--case", "case000", "--out", str(out), "-n", "3",
                 "--augmentations", "RandConv,GIN", "--seed", "1"]) == 0
    w, h = Image.open(out).size
    assert w == 4 * 2 * 100 and 2 * 2 * 100 <= h <= 2 * 2 * 100 + 40  # 4 columns, 2 rows of 2-inch cells
    printed = capsys.readouterr().out
    assert "structure score per draw" in printed
    rows = [line.split() for line in printed.splitlines() if line.strip().startswith(("RandConv ", "GIN "))]
    assert [r[0] for r in rows] == ["RandConv", "GIN"] and all(len(r) >= 4 for r in rows)
    assert all(-1 <= float(v) <= 1 for r in rows for v in r[1:4])
    out_all = tmp_path / "all.png"
    assert main(["preview", "--dataset", "901", "--out", str(out_all), "-n", "1"]) == 0
    w, h = Image.open(out_all).size
    assert w == 2 * 200 and h >= len(AUGMENTATIONS) * 200


def test_cli_errors(preprocessed_2d, tmp_path, capsys):
    assert main(["preview", "--dataset", "901", "--case", "nocase", "--out", str(tmp_path / "x.png")]) == 2
    assert "nocase" in capsys.readouterr().err
    assert main(["preview", "--dataset", "999", "--out", str(tmp_path / "x.png")]) == 2
    assert "Dataset999_" in capsys.readouterr().err
    assert main(["preview", "--dataset", "901", "-a", "Bogus", "--out", str(tmp_path / "x.png")]) == 2
    assert "Bogus" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
