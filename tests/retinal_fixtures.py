"""Tiny synthetic retinal downloads in the exact layouts and file formats of docs/datasets.md.

Every writer returns ``{case_id: (rgb, vessel, fov)}``: the pixels the converter must reproduce
(``rgb`` uint8 (H, W, 3) as PIL decodes the written file, ``vessel``/``fov`` uint8 {0, 1} (H, W)).
"""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 24, 20  # PIL size (width, height) of the default fixtures


def fundus(w: int = W, h: int = H, seed: int = 0):
    """An RGB 'fundus': round FOV, dark thin vessels (random lines) on a reddish background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    fov = ((yy - h / 2 + 0.5) ** 2 / (h / 2) ** 2 + (xx - w / 2 + 0.5) ** 2 / (w / 2) ** 2) <= 1.0
    vessel = np.zeros((h, w), bool)
    for _ in range(3):
        if rng.random() < 0.5:
            vessel[rng.integers(1, h - 1), :] = True
        else:
            vessel[:, rng.integers(1, w - 1)] = True
    vessel &= fov
    rgb = np.zeros((h, w, 3), np.uint8)
    base = np.stack([180 + rng.integers(0, 40, (h, w)), 80 + rng.integers(0, 30, (h, w)),
                     30 + rng.integers(0, 20, (h, w))], -1)
    rgb[fov] = base[fov]
    rgb[vessel] = (rgb[vessel] * 0.5).astype(np.uint8)
    return rgb, vessel.astype(np.uint8), fov.astype(np.uint8)


def _decoded(path: Path) -> np.ndarray:
    """The RGB pixels PIL decodes from ``path`` (what a lossy JPEG really holds)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _grey_gif(arr01: np.ndarray, path: Path) -> None:
    """A GIF that PIL reads back as mode ``L`` with values {0, 255} (DRIVE 1st_manual, mask)."""
    Image.fromarray((arr01 * 255).astype(np.uint8)).save(path, optimize=False)


def _palette_gif(arr01: np.ndarray, path: Path) -> None:
    """A GIF that PIL reads back as mode ``P`` with indices {0, 1} (DRIVE 2nd_manual, LES-AV masks)."""
    im = Image.frombytes("P", (arr01.shape[1], arr01.shape[0]), arr01.astype(np.uint8).tobytes())
    im.putpalette([0, 0, 0, 255, 255, 255])
    im.save(path, optimize=False)


def write_drive(root: Path, n_train: int = 2, n_test: int = 2, test_labels: bool = True, w: int = W,
                h: int = H) -> dict:
    """``DRIVE/{training,test}/...``: LZW RGB TIFF, L-GIF 1st_manual/mask, P-GIF 2nd_manual (test)."""
    out = {}
    for part, first, n in (("training", 21, n_train), ("test", 1, n_test)):
        base = root / "DRIVE" / part
        subs = ["images", "mask"] + (["1st_manual"] if part == "training" or test_labels else []) + \
               (["2nd_manual"] if part == "test" and test_labels else [])
        for s in subs:
            (base / s).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            num = f"{first + k:02d}"
            rgb, vessel, fov = fundus(w, h, seed=first + k)
            Image.fromarray(rgb).save(base / "images" / f"{num}_{part}.tif", compression="tiff_lzw")
            _grey_gif(fov, base / "mask" / f"{num}_{part}_mask.gif")
            if "1st_manual" in subs:
                _grey_gif(vessel, base / "1st_manual" / f"{num}_manual1.gif")
            if "2nd_manual" in subs:
                _palette_gif(1 - vessel, base / "2nd_manual" / f"{num}_manual2.gif")  # a different rater
            out[f"{num}_{part}"] = (rgb, vessel, fov)
    return out


IOSTAR_TOP = "IOSTAR Vessel Segmentation Dataset"


def write_iostar(root: Path, names=("STAR 01_OSC", "STAR 02_ODC"), w: int = W, h: int = H) -> dict:
    """IOSTAR: JPEG images with spaces in the names, 1-bit TIFF GT and FOV mask, mask_OD clutter."""
    base = root / IOSTAR_TOP
    for s in ("image", "GT", "mask", "mask_OD"):
        (base / s).mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate(names):
        rgb, vessel, fov = fundus(w, h, seed=100 + k)
        Image.fromarray(rgb).save(base / "image" / f"{name}.jpg", quality=90)
        Image.fromarray(vessel.astype(bool)).save(base / "GT" / f"{name}_GT.tif")
        Image.fromarray(fov.astype(bool)).save(base / "mask" / f"{name}_Mask.tif")
        Image.fromarray(fov.astype(bool)).save(base / "mask_OD" / f"{name}_ODMask.tif")
        out[name.replace(" ", "_")] = (_decoded(base / "image" / f"{name}.jpg"), vessel, fov)
    return out


def write_lesav_zip(path: Path, ids=("12", "34"), odd: str = "34", extra_entries=()) -> dict:
    """LES-AV as one zip: top folder ``LES-AV/``, ``__MACOSX/`` and ``.DS_Store`` clutter, case ``odd``
    larger than the rest; ``extra_entries``: (name, bytes) added verbatim (e.g. a ``../`` entry)."""
    out = {}

    def png(arr) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("LES-AV/README.txt", "LES-AV synthetic fixture\n")
        z.writestr("LES-AV/.DS_Store", b"\x00\x00\x00\x01Bud1")
        z.writestr("__MACOSX/LES-AV/._README.txt", b"\x00\x05\x16\x07")
        z.writestr("LES-AV/images/.DS_Store", b"\x00\x00\x00\x01Bud1")
        for k, cid in enumerate(ids):
            w, h = (W + 8, H + 6) if cid == odd else (W, H)
            rgb, vessel, fov = fundus(w, h, seed=200 + k)
            z.writestr(f"LES-AV/images/{cid}.png", png(rgb))
            z.writestr(f"__MACOSX/LES-AV/images/._{cid}.png", b"\x00\x05\x16\x07")
            z.writestr(f"LES-AV/vessel-segmentations/{cid}.png", png((vessel * 255).astype(np.uint8)))
            z.writestr(f"LES-AV/arteries/{cid}.png", png((vessel * 255).astype(np.uint8)))
            buf = io.BytesIO()
            im = Image.frombytes("P", (w, h), fov.tobytes())
            im.putpalette([0, 0, 0, 255, 255, 255])
            im.save(buf, format="GIF", optimize=False)
            z.writestr(f"LES-AV/masks/{cid}_mask.gif", buf.getvalue())
            out[cid] = (rgb, vessel, fov)
        for name, data in extra_entries:
            z.writestr(name, data)
    return out


def write_chase(root: Path, names=("Image_01L", "Image_01R"), w: int = W, h: int = H) -> dict:
    """CHASE_DB1: one flat folder, JPEG images, PNG labels of two observers (2ndHO = 1stHO inverted)."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate(names):
        rgb, vessel, fov = fundus(w, h, seed=300 + k)
        Image.fromarray(rgb).save(root / f"{name}.jpg", quality=90)
        Image.fromarray(vessel.astype(bool)).save(root / f"{name}_1stHO.png")
        Image.fromarray(((1 - vessel) * 255).astype(np.uint8)).save(root / f"{name}_2ndHO.png")
        out[name] = (_decoded(root / f"{name}.jpg"), vessel, fov)
    return out


def write_stare(root: Path) -> dict:
    """STARE: ``stare-images/im0001.ppm.gz`` and ``im0002.ppm``; labels-ah (grey-RGB PPM, gz and plain)."""
    (root / "stare-images").mkdir(parents=True, exist_ok=True)
    (root / "labels-ah").mkdir(parents=True, exist_ok=True)
    (root / "labels-vk").mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (cid, gz) in enumerate((("im0001", True), ("im0002", False))):
        rgb, vessel, fov = fundus(seed=400 + k)
        lab = Image.fromarray(np.repeat((vessel * 255).astype(np.uint8)[..., None], 3, -1))
        for im, folder, name in ((Image.fromarray(rgb), "stare-images", f"{cid}.ppm"),
                                 (lab, "labels-ah", f"{cid}.ah.ppm"), (lab, "labels-vk", f"{cid}.vk.ppm")):
            buf = io.BytesIO()
            im.save(buf, format="PPM")
            if gz:
                (root / folder / f"{name}.gz").write_bytes(gzip.compress(buf.getvalue()))
            else:
                (root / folder / name).write_bytes(buf.getvalue())
        out[cid] = (rgb, vessel, fov)
    return out


def write_hrf(root: Path, w: int = W, h: int = H) -> dict:
    """HRF: ``images/01_dr.JPG`` and ``02_h.jpg``, ``manual1/*.tif`` (L {0,255}), ``mask/*_mask.tif`` (RGB)."""
    for s in ("images", "manual1", "mask"):
        (root / s).mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (stem, ext) in enumerate((("01_dr", ".JPG"), ("02_h", ".jpg"))):
        rgb, vessel, fov = fundus(w, h, seed=500 + k)
        Image.fromarray(rgb).save(root / "images" / f"{stem}{ext}", format="JPEG", quality=90)
        Image.fromarray((vessel * 255).astype(np.uint8)).save(root / "manual1" / f"{stem}.tif")
        Image.fromarray(np.repeat((fov * 255).astype(np.uint8)[..., None], 3, -1)).save(
            root / "mask" / f"{stem}_mask.tif")
        out[stem] = (_decoded(root / "images" / f"{stem}{ext}"), vessel, fov)
    return out
