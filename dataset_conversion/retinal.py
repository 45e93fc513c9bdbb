"""Retinal vessel datasets: DRIVE (source domain) and the targets IOSTAR, LES-AV, CHASE_DB1, STARE, HRF.

``nnunet-rc convert {drive,iostar,lesav,chase,stare,hrf} SRC --id N`` reads each download as
distributed (folder, or the ``.zip``; see ``docs/datasets.md``) and writes, for every case:

* ``images{Tr,Ts}/CASE_0000.png``: the photograph as ONE 8-bit RGB PNG (JPEG, GIF, PPM(.gz), TIFF are
  decoded and re-written losslessly). ``channel_names`` = ``{"0": "R", "1": "G", "2": "B"}`` for every
  retinal dataset, so a DRIVE model predicts IOSTAR directly. Normalization decision: nnU-Net picks the
  normalization from the channel NAME (``map_channel_name_to_normalization``); "R", "G", "B" are not
  special names, so every retinal dataset gets nnU-Net's default per-image, per-channel z-score (not
  ``rgb_to_0_1``, which would keep each camera's global brightness and contrast: a fundus camera
  (DRIVE) and a scanning laser ophthalmoscope (IOSTAR) differ exactly there, and the domain-
  generalization augmentations re-standardize to per-image statistics anyway).
* ``labels{Tr,Ts}/CASE.png``: the vessel label as one grey PNG, ``{"background": 0, "vessel": 1}``,
  decoded from {0, 255} grey, 1-bit, palette {0, 1} or grey RGB (strict: anything else is an error
  naming the file, see :func:`~.writer.binarize`).
* ``masks{Tr,Ts}/CASE.png``: the field-of-view (FOV) mask, {0, 1}, where the dataset ships one (DRIVE,
  IOSTAR, LES-AV, HRF). FOV decision: the mask is NOT baked into the label (no ignore label: training
  sees the whole image, as nnU-Net normally does, and predictions stay comparable across datasets); it
  is kept beside the labels as the *evaluation* mask, so vessel metrics are computed inside the FOV
  only, as the retinal literature reports them: ``nnunet-rc evaluate PRED labelsTs --mask masksTs``.
  CHASE_DB1 and STARE ship no FOV mask: one is derived from the image (see below).

Scale (``--spacing fov``, the default): every dataset is written on ONE physical scale, so nnU-Net's own
resampling shows a DRIVE model every target at DRIVE's scale. Rule: a fundus camera's field of view
(FOV) is a known angle, so the retina spans ``FOV° × 0.288 mm/°`` (the usual ~288 µm per degree of the
human eye) across the measured FOV diameter ``D`` (px, the horizontal extent of the case's FOV mask,
which stays correct when the circle is clipped at the top and bottom, as in HRF):
``spacing = FOV° · 0.288 / D`` mm per pixel. FOV angles from the dataset papers: DRIVE 45°, STARE 35°,
CHASE_DB1 30°, HRF 45°, IOSTAR 45° (SLO), LES-AV 30° (its image 34 is 45°). Every 45° FOV then has the
same size in pixels after resampling to DRIVE's plan spacing, and a 30° one two thirds of it (the same
retina magnification). Images are written as one 2D NIfTI per channel (``CASE_0000/1/2.nii.gz`` = R, G,
B, uint8) with that spacing, labels and FOV masks likewise; nnU-Net reads the spacing with
``SimpleITKIO``, ``nnUNetv2_predict`` resamples each target to the source plan's spacing and writes the
prediction back at the target's native size, where evaluation happens (inside the FOV).
``--spacing native`` writes exactly the first release's output (one RGB PNG per case, spacing 1×1 in
nnU-Net, every dataset at its native resolution) plus the derived FOV masks.

FOV masks: shipped ones are used (``fov_mask`` = ``shipped`` in ``case_metadata.csv``); CHASE_DB1 and
STARE ship none, so one is derived from the image (:func:`derive_fov_mask`: the brightest channel
above 10 % of its 99th percentile (at least 10 grey levels), the largest connected component, holes
filled; ``fov_mask`` = ``derived``) and used for the spacing and for evaluation like a shipped one.

Splits: DRIVE ``training`` → ``imagesTr``/``labelsTr``; ``test`` → ``imagesTs`` (+ ``labelsTs`` when
``1st_manual`` is there; the current package has none: images only, no error). The targets have no
official split: every case goes to ``imagesTs``/``labelsTs`` (``--as-training`` → ``imagesTr``).
CHASE_DB1 ``--as-source`` makes it a source domain with an in-domain test set: children 01–10 (20 images)
→ ``imagesTr``, children 11–14 (8) → ``imagesTs``, the split most CHASE_DB1 papers use, by child so both
eyes of a child stay on one side; every image then needs its label. (nnU-Net's own 5-fold split of the 20
training images may still put a child's two eyes on both sides of a fold: that touches its validation
pseudo-Dice only, not the in-domain test set.)
A target image without its label (or without its FOV mask when the dataset has a mask folder) is
skipped and reported; a DRIVE training case without one is an error. Label or mask size different
from the image's is an error naming the file. Case ids are the file stems made safe (IOSTAR's spaces
become ``_``). JPEG EXIF orientation is ignored on purpose: the labels were drawn on the stored pixels.
"""
from __future__ import annotations

import argparse
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from .writer import (OS_CLUTTER, Case, CaseData, ConversionError, Converter, DatasetSpec, Report, SkipCase,
                     binarize, extracted, register_converter, safe_case_id, write_dataset)

CHANNEL_NAMES = {"0": "R", "1": "G", "2": "B"}
LABELS = {"background": 0, "vessel": 1}
IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".gif", ".ppm", ".bmp")
_RGB_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "1", "CMYK", "YCbCr"}


# ---- file helpers ----------------------------------------------------------------------------------------

def _stem(path: Path) -> str:
    """File name without its image suffix (and without ``.gz``): ``im0001.ah.ppm.gz`` -> ``im0001.ah``."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return name.rsplit(".", 1)[0] if "." in name else name


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return (path.is_file() and not path.name.startswith(".") and path.name not in OS_CLUTTER
            and name.endswith(IMAGE_SUFFIXES))


def _image_files(folder: Optional[Path]) -> List[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _is_image_file(p))


def _subdir(parent: Path, *names: str) -> Optional[Path]:
    """The child folder called one of ``names`` (case-insensitive), or None."""
    if not parent.is_dir():
        return None
    children = {p.name.lower(): p for p in parent.iterdir() if p.is_dir()}
    for n in names:
        if n.lower() in children:
            return children[n.lower()]
    return None


class _Index:
    """Image files of one folder by lower-case stem (any image suffix, optionally gzipped)."""

    def __init__(self, folder: Optional[Path]):
        self.folder = folder
        self.by_stem: Dict[str, Path] = {}
        for p in _image_files(folder):
            self.by_stem.setdefault(_stem(p).lower(), p)

    def find(self, *stems: str) -> Optional[Path]:
        for s in stems:
            if s.lower() in self.by_stem:
                return self.by_stem[s.lower()]
        return None


def _open(path: Path, shown: str) -> Image.Image:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                img = Image.open(io.BytesIO(f.read()))
        else:
            img = Image.open(path)
        with img:
            img.load()
            return img.copy()
    except (OSError, EOFError, ValueError) as e:
        raise ConversionError(f"{shown}: cannot read the image ({e})") from None


def _read_rgb(path: Path, shown: str) -> Image.Image:
    img = _open(path, shown)
    if img.mode not in _RGB_MODES:
        raise ConversionError(f"{shown}: image mode {img.mode!r}; expected an 8-bit RGB (or grey) photograph")
    return img if img.mode == "RGB" else img.convert("RGB")


def _read_binary(path: Path, shown: str, what: str, size) -> Image.Image:
    """A label or FOV mask as a mode ``L`` image with values {0, 1}, checked against the image ``size``."""
    img = _open(path, shown)
    if img.size != size:
        raise ConversionError(f"{shown}: {what} size {img.size[0]}x{img.size[1]} != image size {size[0]}x{size[1]}")
    if img.mode == "1":
        arr = np.asarray(img, dtype=bool)
    elif img.mode == "P":
        # palette: decide on the grey levels the palette shows; fall back to the raw indices ({0, 1} in
        # DRIVE's 2nd_manual and LES-AV's masks) when the colours are not black/white.
        try:
            return Image.fromarray(binarize(np.asarray(img.convert("L")), where=shown))
        except ConversionError:
            arr = np.asarray(img)
    elif img.mode in ("RGB", "RGBA", "RGBX"):
        rgb = np.asarray(img.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise ConversionError(f"{shown}: colour {what} (R, G, B differ); expected a grey or binary image")
        arr = rgb[..., 0]
    elif img.mode == "LA":
        arr = np.asarray(img)[..., 0]
    else:
        arr = np.asarray(img)
    return Image.fromarray(binarize(arr, where=f"{shown} ({what})"))


# ---- scale and field of view -------------------------------------------------------------------------------

#: field-of-view angle (degrees) of each dataset's camera; LES-AV's image 34 is the 45° exception
FOV_DEGREES = {"drive": 45.0, "stare": 35.0, "chase": 30.0, "hrf": 45.0, "iostar": 45.0, "lesav": 30.0}
FOV_DEGREES_BY_CASE = {("lesav", "34"): 45.0}
#: retina covered per degree of visual angle (mm); only ratios matter for the harmonized scale
MM_PER_DEGREE = 0.288
SPACING_MODES = ("fov", "native")


def derive_fov_mask(rgb: np.ndarray, where: str) -> np.ndarray:
    """FOV mask ``(H, W)`` uint8 {0, 1} of a fundus photograph ``(H, W, 3)`` uint8: the brightest channel
    above ``max(10, 0.1 · p99)``, its largest connected component, holes filled."""
    from scipy import ndimage

    bright = rgb.max(axis=-1).astype(np.float32)
    fg = bright > max(10.0, 0.1 * float(np.percentile(bright, 99)))
    lab, n = ndimage.label(fg)
    if n == 0:
        raise ConversionError(f"{where}: cannot derive a field-of-view mask (the image is dark everywhere)")
    sizes = ndimage.sum(fg, lab, index=np.arange(1, n + 1))
    return ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes))).astype(np.uint8)


def fov_diameter_px(mask: np.ndarray) -> int:
    """Horizontal extent (px) of the FOV mask ``(H, W)``."""
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    return int(cols[-1] - cols[0] + 1) if cols.size else 0


def fov_spacing_mm(fov_degrees: float, diameter_px: int) -> float:
    """Pixel spacing (mm) that puts a ``fov_degrees`` field of view of ``diameter_px`` pixels on the
    common physical scale."""
    return fov_degrees * MM_PER_DEGREE / diameter_px


def _to_sitk(arr: np.ndarray, spacing: float):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.uint8))
    img.SetSpacing((spacing, spacing))
    return img


# ---- one case --------------------------------------------------------------------------------------------

@dataclass
class _Pair:
    """Where one case's files are. ``label``/``mask`` None with ``*_missing`` set: expected but absent."""
    case_id: str
    split: str
    image: Path
    label: Optional[Path] = None
    mask: Optional[Path] = None
    label_missing: str = ""  # what was expected, when the label is missing
    mask_missing: str = ""
    required: bool = False  # a missing label/mask is an error (DRIVE training), else the case is skipped
    metadata: Dict[str, object] = field(default_factory=dict)


class _Source:
    """The source as the user named it, for messages (files of an extracted zip are shown as ``ZIP::path``)."""

    def __init__(self, src: Path, base: Path):
        self.src, self.base, self.is_zip = Path(src), base, not Path(src).is_dir()

    def show(self, path: Path) -> str:
        if not self.is_zip:
            return str(path)
        try:
            return f"{self.src}::{path.relative_to(self.base).as_posix()}"
        except ValueError:
            return str(path)


def _make_case(pair: _Pair, source: _Source, dataset: "_Dataset", spacing_mode: str) -> Case:
    shown_image = source.show(pair.image)

    def load() -> CaseData:
        for missing, what in ((pair.label_missing, "label"), (pair.mask_missing, "FOV mask")):
            if missing:
                msg = f"no {what} for {shown_image}: expected {missing}"
                if pair.required:
                    raise ConversionError(f"{msg} (a training case needs one)")
                raise SkipCase(msg)
        image = _read_rgb(pair.image, shown_image)
        label = mask = None
        if pair.label is not None:
            label = _read_binary(pair.label, source.show(pair.label), "label", image.size)
        if pair.mask is not None:
            mask = _read_binary(pair.mask, source.show(pair.mask), "FOV mask", image.size)
        meta = {"source_image": pair.image.relative_to(source.base).as_posix(), **pair.metadata}
        if mask is None and not dataset.fov:
            mask = Image.fromarray(derive_fov_mask(np.asarray(image), shown_image))
        if mask is not None:
            meta["fov_mask"] = "shipped" if pair.mask is not None else "derived"
        if spacing_mode == "native":
            return CaseData(images=[image], label=label, mask=mask, metadata=meta)
        if mask is None:
            raise ConversionError(f"{shown_image}: no field-of-view mask to measure the scale from; use --spacing native")
        fov = np.asarray(mask)
        degrees = FOV_DEGREES_BY_CASE.get((dataset.name, pair.case_id), FOV_DEGREES[dataset.name])
        diameter = fov_diameter_px(fov)
        spacing = fov_spacing_mm(degrees, diameter)
        meta.update({"fov_degrees": degrees, "fov_diameter_px": diameter, "spacing_mm": round(spacing, 6)})
        rgb = np.asarray(image)
        return CaseData(images=[_to_sitk(rgb[..., c], spacing) for c in range(3)],
                        label=None if label is None else _to_sitk(np.asarray(label), spacing),
                        mask=_to_sitk(fov, spacing), metadata=meta)

    return Case(case_id=pair.case_id, split=pair.split, load=load, source=shown_image)


def _pair(case_id: str, split: str, image: Path, labels: Optional[_Index], label_stems: Sequence[str],
          masks: Optional[_Index], mask_stems: Sequence[str], required: bool = False, **metadata) -> _Pair:
    """Look up the label and mask of ``image``; ``labels``/``masks`` None: the dataset has none (no skip)."""
    p = _Pair(safe_case_id(case_id), split, image, required=required, metadata=metadata)
    if labels is not None:
        p.label = labels.find(*label_stems)
        if p.label is None:
            p.label_missing = f"{labels.folder}/{label_stems[0]}.*"
    if masks is not None:
        p.mask = masks.find(*mask_stems)
        if p.mask is None:
            p.mask_missing = f"{masks.folder}/{mask_stems[0]}.*"
    return p


def _find_root(base: Path, check: Callable[[Path], bool], what: str, expected: str, depth: int = 3) -> Path:
    """The first folder at or below ``base`` (breadth first, ``depth`` levels) that passes ``check``."""
    level = [base]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if check(d):
                return d
            nxt += sorted(c for c in d.iterdir() if c.is_dir() and c.name not in OS_CLUTTER
                          and not c.name.startswith("."))
        level = nxt
    raise ConversionError(f"{base}: no {what} layout found; expected {expected}")


# ---- the datasets ----------------------------------------------------------------------------------------

def _drive_pairs(root: Path, args) -> List[_Pair]:
    pairs = []
    for part, split in (("training", "Tr"), ("test", "Ts")):
        folder = _subdir(root, part)
        if folder is None:
            continue
        images = _image_files(_subdir(folder, "images"))
        manual = _subdir(folder, "1st_manual")
        labels = _Index(manual) if manual is not None or split == "Tr" else None
        if labels is not None and manual is None:
            labels.folder = folder / "1st_manual"
        mask_dir = _subdir(folder, "mask")
        masks = _Index(mask_dir) if mask_dir is not None else None
        for img in images:
            stem = _stem(img)  # 21_training / 01_test
            number = stem.split("_")[0]
            pairs.append(_pair(stem, split, img, labels, [f"{number}_manual1"], masks, [f"{stem}_mask"],
                               required=split == "Tr", drive_split=part))
    if not pairs:
        raise ConversionError(f"{root}: no DRIVE images; expected training/images/21_training.tif, "
                              "test/images/01_test.tif")
    return pairs


def _target_split(args) -> str:
    return "Tr" if getattr(args, "as_training", False) else "Ts"


def _iostar_pairs(root: Path, args) -> List[_Pair]:
    labels = _Index(_subdir(root, "GT"))
    mask_dir = _subdir(root, "mask")
    masks = _Index(mask_dir) if mask_dir is not None else None
    return [_pair(_stem(img), _target_split(args), img, labels, [f"{_stem(img)}_GT"], masks,
                  [f"{_stem(img)}_Mask"]) for img in _image_files(_subdir(root, "image"))]


def _lesav_pairs(root: Path, args) -> List[_Pair]:
    labels = _Index(_subdir(root, "vessel-segmentations"))
    mask_dir = _subdir(root, "masks")
    masks = _Index(mask_dir) if mask_dir is not None else None
    return [_pair(_stem(img), _target_split(args), img, labels, [_stem(img)], masks, [f"{_stem(img)}_mask"])
            for img in _image_files(_subdir(root, "images"))]


_CHASE_LABEL = re.compile(r"_(1st|2nd)HO$", re.IGNORECASE)
_CHASE_IMAGE = re.compile(r"image_(\d+)([lr])$", re.IGNORECASE)
#: ``--as-source``: the split most CHASE_DB1 papers use -- children 1-10 (20 images) train, 11-14 (8) test
CHASE_TRAIN_SUBJECTS = range(1, 11)


def _chase_split(img: Path, args) -> str:
    """``Tr``/``Ts`` of one CHASE_DB1 image: ``--as-source`` splits by child (both eyes of a child on the
    same side, so the in-domain test set holds only unseen children); otherwise as every target."""
    if not getattr(args, "as_source", False):
        return _target_split(args)
    m = _CHASE_IMAGE.fullmatch(_stem(img))
    if m is None:
        raise ConversionError(f"{img}: --as-source needs CHASE_DB1's file names Image_<child><L|R> "
                              "(e.g. Image_01L.jpg) to split by child")
    return "Tr" if int(m.group(1)) in CHASE_TRAIN_SUBJECTS else "Ts"


def _chase_pairs(root: Path, args) -> List[_Pair]:
    index = _Index(root)
    images = [p for p in _image_files(root)
              if p.name.lower().startswith("image_") and not _CHASE_LABEL.search(_stem(p))]
    pairs = []
    for img in images:
        stem = _stem(img)  # Image_01L
        pairs.append(_pair(stem, _chase_split(img, args), img, index, [f"{stem}_{args.annotator}"], None, [],
                           required=getattr(args, "as_source", False), eye=stem[-1].upper()))
    return pairs


def _stare_pairs(root: Path, args) -> List[_Pair]:
    image_dir = _subdir(root, "stare-images") or root
    label_dir = _subdir(root, f"labels-{args.annotator}")
    labels = _Index(label_dir if label_dir is not None else image_dir)
    images = [p for p in _image_files(image_dir) if re.fullmatch(r"im\d+", _stem(p), re.IGNORECASE)]
    return [_pair(_stem(img), _target_split(args), img, labels, [f"{_stem(img)}.{args.annotator}"], None, [])
            for img in images]


_HRF_GROUPS = {"h": "healthy", "g": "glaucoma", "dr": "diabetic_retinopathy"}


def _hrf_pairs(root: Path, args) -> List[_Pair]:
    labels = _Index(_subdir(root, "manual1"))
    mask_dir = _subdir(root, "mask")
    masks = _Index(mask_dir) if mask_dir is not None else None
    pairs = []
    for img in _image_files(_subdir(root, "images")):
        stem = _stem(img)  # 01_dr
        group = _HRF_GROUPS.get(stem.rsplit("_", 1)[-1].lower(), "")
        pairs.append(_pair(stem, _target_split(args), img, labels, [stem], masks, [f"{stem}_mask"], group=group))
    return pairs


@dataclass
class _Dataset:
    name: str  # converter name
    default_name: str  # nnU-Net dataset name
    title: str
    check: Callable[[Path], bool]
    expected: str
    pairs: Callable[[Path, argparse.Namespace], List[_Pair]]
    reference: str
    target: bool = True
    annotators: Sequence[str] = ()
    fov: bool = True  # the download has field-of-view masks
    source_split: str = ""  # help text of --as-source (a target with a split for use as a source domain)


def _has(*names: str) -> Callable[[Path], bool]:
    return lambda d: all(_subdir(d, n) is not None for n in names)


DATASETS = [
    _Dataset("drive", "DRIVE", "DRIVE (source domain)",
             lambda d: any(_subdir(d, s) is not None and _subdir(_subdir(d, s), "images") is not None
                           for s in ("training", "test")),
             "DRIVE/training/images/21_training.tif (+ 1st_manual/, mask/) and/or DRIVE/test/images/",
             _drive_pairs, "Staal et al., Ridge-based vessel segmentation in color images of the retina, "
             "IEEE TMI 23(4), 2004", target=False),
    _Dataset("iostar", "IOSTAR", "IOSTAR (scanning laser ophthalmoscope)", _has("image", "GT"),
             "'IOSTAR Vessel Segmentation Dataset'/image/'STAR 01_OSC.jpg', GT/'STAR 01_OSC_GT.tif', mask/",
             _iostar_pairs, "Zhang et al., Robust retinal vessel segmentation via locally adaptive derivative "
             "frames in orientation scores, IEEE TMI 35(12), 2016"),
    _Dataset("lesav", "LESAV", "LES-AV", _has("images", "vessel-segmentations"),
             "LES-AV/images/12.png, vessel-segmentations/12.png, masks/12_mask.gif (folder or the zip)",
             _lesav_pairs, "Orlando et al., Towards a glaucoma risk index based on simulated hemodynamics "
             "from fundus images, MICCAI 2018"),
    _Dataset("chase", "CHASEDB1", "CHASE_DB1",
             lambda d: any(_is_image_file(p) and p.name.lower().startswith("image_") for p in d.iterdir()),
             "a flat folder with Image_01L.jpg, Image_01L_1stHO.png, Image_01L_2ndHO.png",
             _chase_pairs, "Fraz et al., An ensemble classification-based approach applied to retinal blood "
             "vessel segmentation, IEEE TBME 59(9), 2012", annotators=("1stHO", "2ndHO"), fov=False,
             source_split="as a source domain: children 01-10 (Image_01L ... Image_10R, 20 images) -> imagesTr/"
                          "labelsTr, children 11-14 (8 images) -> imagesTs/labelsTs, the split most CHASE_DB1 "
                          "papers use; every image then needs its label"),
    _Dataset("stare", "STARE", "STARE",
             lambda d: _subdir(d, "stare-images") is not None
             or any(_is_image_file(p) and re.fullmatch(r"im\d+", _stem(p), re.I) for p in d.iterdir()),
             "stare-images/im0001.ppm[.gz], labels-ah/im0001.ah.ppm[.gz] (or labels-vk/)",
             _stare_pairs, "Hoover et al., Locating blood vessels in retinal images by piecewise threshold "
             "probing of a matched filter response, IEEE TMI 19(3), 2000", annotators=("ah", "vk"), fov=False),
    _Dataset("hrf", "HRF", "HRF (high-resolution fundus)", _has("images", "manual1"),
             "images/01_dr.JPG, manual1/01_dr.tif, mask/01_dr_mask.tif",
             _hrf_pairs, "Budai et al., Robust vessel segmentation in fundus images, Int. J. Biomed. "
             "Imaging, 2013"),
]


def convert(dataset: _Dataset, args: argparse.Namespace) -> Report:
    """Convert ``args.src`` (folder or zip) as ``dataset``; see the module docstring."""
    name = args.name or dataset.default_name
    with extracted(Path(args.src)) as base:
        source = _Source(args.src, base)
        root = _find_root(base, dataset.check, dataset.title, dataset.expected)
        pairs = dataset.pairs(root, args)
        if not pairs:
            raise ConversionError(f"{source.show(root) if source.is_zip else root}: no {dataset.title} images "
                                  f"found; expected {dataset.expected}")
        mode = getattr(args, "spacing", "fov")
        images = ("R, G, B as one 2D NIfTI per channel with the field-of-view-harmonized spacing "
                  f"({MM_PER_DEGREE} mm per degree of FOV)") if mode == "fov" else "RGB PNG at native resolution"
        spec = DatasetSpec(
            dataset_id=args.id, name=name, channel_names=dict(CHANNEL_NAMES), labels=dict(LABELS),
            file_ending=".nii.gz" if mode == "fov" else ".png", reference=dataset.reference,
            description=f"{dataset.title} retinal vessels, converted by nnunet-rc from {Path(args.src).name}. "
                        f"Images: {images} (per-image z-score in nnU-Net). masksTr/masksTs: field-of-view "
                        "masks (1 inside) for evaluation.")
        return write_dataset(spec, [_make_case(p, source, dataset, mode) for p in pairs], Path(args.out),
                             args.overwrite)


def _register(dataset: _Dataset) -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        if dataset.target:
            split = parser.add_mutually_exclusive_group() if dataset.source_split else parser
            split.add_argument("--as-training", action="store_true",
                               help="write the cases to imagesTr/labelsTr instead of imagesTs/labelsTs")
            if dataset.source_split:
                split.add_argument("--as-source", action="store_true", help=dataset.source_split)
        parser.add_argument("--spacing", choices=list(SPACING_MODES), default="fov",
                            help="fov (default): one physical scale for every retinal dataset, from the camera's "
                                 "field-of-view angle and the measured FOV diameter, written as per-channel NIfTI so "
                                 "nnU-Net resamples targets to the source's scale; native: RGB PNG at native "
                                 "resolution (the first release's output)")
        if dataset.annotators:
            parser.add_argument("--annotator", choices=list(dataset.annotators), default=dataset.annotators[0],
                                help=f"whose manual segmentation is the label (default {dataset.annotators[0]})")

    split = ("training -> imagesTr/labelsTr, test -> imagesTs" if not dataset.target
             else "all cases -> imagesTs/labelsTs (--as-training: imagesTr/labelsTr)")
    register_converter(Converter(
        name=dataset.name,
        help=f"{dataset.title} retinal vessels: RGB image + vessel label {{0,1}} + FOV mask"
             f"{'' if dataset.fov else ' (derived from the image)'}, on a common physical scale; {split}",
        run=lambda args: convert(dataset, args),
        add_arguments=add_arguments,
        example=f"nnunet-rc convert {dataset.name} ~/Downloads/{dataset.default_name} --id "
                f"{110 + DATASETS.index(dataset)}"))


for _d in DATASETS:
    _register(_d)
