"""Fetal brain MRI (3D): the spatio-temporal atlases (RAS4DG's source domain) and FeTA 2021 (targets).

Both datasets are written with FeTA's label order, so a model trained on the atlases predicts FeTA
directly: ``background 0, eCSF 1, GM 2, WM 3, ventricles 4, cerebellum 5, deepGM 6, brainstem 7``; one
channel ``T2``.

``nnunet-rc convert atlases SRC --id N``
    ``SRC``: the ``fetal_brain_atlases`` folder of LucasFidon/trustworthy-ai-fetal-brain-segmentation, any
    parent of it, or a zip of either. Three groups, each a folder of atlases holding
    ``{srr,mask,parcellation}.nii.gz``: ``Neurotypical_Gholipour2017/HarvardSTA<GA>_Study1``,
    ``Neurotypical_Wu2021/Chinese<GA>_Study1``, ``SpinaBifida_Fidon2021/fetal_SB_atlas_GA<GA>_{notoperated,operated}``.
    Case ids ``gholipour_GA21``, ``wu_GA22``, ``sb_GA25_operated``; all go to ``imagesTr``/``labelsTr``.
    Labels are in Fidon's order (1 WM, 2 ventricles, 3 cerebellum, 4 eCSF, 5 GM, 6 deep GM, 7 brainstem,
    8 corpus callosum) and are remapped ``1→3, 2→4, 3→5, 4→1, 5→2, 6→6, 7→7, 8→3`` (corpus callosum into
    WM). ``case_metadata.csv``: group (neurotypical / spina_bifida), atlas, gestational_age (weeks, from the
    folder name), operated (yes / no / NA).

    Decisions: the image is zeroed outside the atlas brain mask (``mask.nii.gz``, > 0.5 after the header's
    ``scl_slope``, which turns Wu's uint8 {0, 255} masks into {0, 1}), so the source image shows the same
    brain-only field as its label; ``--keep-background`` writes ``srr`` untouched. The label is not touched
    by the mask. An atlas folder lacking one of its three files is skipped with the reason in the report;
    a label value outside 0..8 (after rounding) aborts with the case and value named.

``nnunet-rc convert feta SRC --id N``
    ``SRC``: the ``feta_2.1`` folder (``participants.tsv`` + ``sub-XXX/anat/``), a parent or a zip. Every
    ``sub-*/anat/*_rec-*_T2w.nii.gz`` (rec-mial and rec-irtk) is paired with the same name with ``T2w`` →
    ``dseg``; case id = the file name without ``_T2w.nii.gz`` (``sub-001_rec-mial``). Labels are rounded to
    integers and must be in 0..7. Written to ``imagesTs``/``labelsTs`` (target domain), or
    ``imagesTr``/``labelsTr`` with ``--as-training``. ``groups.csv`` (``case,group``; ``normal`` for
    Pathology ``Neurotypical``, ``abnormal`` for ``Pathological``) is the groups file of
    ``nnunet-rc evaluate --groups``.

    Decisions: a case without its ``dseg`` is skipped with a reason (an image without ground truth is of no
    use for a target-domain evaluation, and ``groups.csv`` then lists exactly the written cases). Look-alikes
    are rejected: a label 8 means Fidon's relabelled FeTA copy (his order, with corpus callosum), and a
    ``participants.tsv`` with an ``SRR quality rating`` column, a ``Spina Bifida`` pathology or without the
    columns ``participant_id``, ``Pathology``, ``Gestational age`` is not FeTA's own file.

Reading: NIfTI files are read with nibabel, which takes the sform when its code is set, else the qform
(atlas labels are qform-only, images sform-only), and applies ``scl_slope``/``scl_inter``; the SimpleITK
image is built from that affine (RAS → LPS). SimpleITK 2.5 reads such files to the same grid (checked in
the tests); building it ourselves keeps this independent of ITK's version-dependent sform/qform rules and
tolerates float noise in the direction cosines (re-orthonormalised, error beyond 1e-3). Images are written
as float32 whatever the stored dtype (int16/float32/float64); the label (and mask) get exactly the image's
geometry through :func:`match_label_geometry` (shape equal, origin/spacing within 0.5 mm, direction within
1e-3; anything else is an error naming the case).
"""
from __future__ import annotations

import argparse
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

from .writer import (Case, CaseData, ConversionError, Converter, DatasetSpec, Report, SkipCase, is_os_clutter,
                     extracted, match_label_geometry, register_converter, write_dataset)

#: FeTA 2021 label order, used for both datasets.
FETA_LABELS = {"background": 0, "eCSF": 1, "GM": 2, "WM": 3, "ventricles": 4, "cerebellum": 5, "deepGM": 6,
               "brainstem": 7}
#: Fidon's atlas label value -> FeTA label value (index = Fidon value).
FIDON_TO_FETA = np.array([0, 3, 4, 5, 1, 2, 6, 7, 3], dtype=np.uint8)
_LPS = np.diag([-1.0, -1.0, 1.0])


# ---- reading NIfTI ------------------------------------------------------------------------------------

def read_nifti(path: Path, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """(array indexed x, y, z with header scaling applied, 4x4 RAS affine) of a 3D NIfTI file."""
    import nibabel as nib

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise ConversionError(f"{where}: {path} is a Git LFS pointer, not a NIfTI file; run `git lfs pull` "
                              f"in the repository (or download the files themselves)")
    try:
        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises many kinds of errors for broken files
        raise ConversionError(f"{where}: cannot read {path} as NIfTI ({e})") from None
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ConversionError(f"{where}: {path} has shape {arr.shape}; expected a 3D volume")
    return arr, np.asarray(img.affine, dtype=np.float64)


def to_sitk(arr: np.ndarray, affine: np.ndarray, where: str) -> sitk.Image:
    """SimpleITK image (LPS) of an x, y, z array with a RAS affine."""
    m = affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise ConversionError(f"{where}: degenerate affine (voxel size {spacing.tolist()})")
    d = m / spacing
    if np.abs(d.T @ d - np.eye(3)).max() > 1e-3:
        raise ConversionError(f"{where}: affine has sheared axes (not a rotation); cannot keep its geometry")
    u, _, vt = np.linalg.svd(d)
    d = u @ vt
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in _LPS @ affine[:3, 3]))
    img.SetDirection(tuple(float(v) for v in (_LPS @ d).ravel()))
    return img


def _read_image(path: Path, where: str) -> Tuple[np.ndarray, sitk.Image]:
    arr, affine = read_nifti(path, where)
    arr = np.asarray(arr, dtype=np.float32)
    return arr, to_sitk(arr, affine, where)


def _read_label(path: Path, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """Rounded integer label (int64, x, y, z) and its affine."""
    arr, affine = read_nifti(path, where)
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)):
            raise ConversionError(f"{where}: {path} holds NaN/inf label values")
        arr = np.rint(arr)
    return arr.astype(np.int64), affine


def _unexpected(values: np.ndarray, allowed: range) -> List[int]:
    return [int(v) for v in np.unique(values) if int(v) not in allowed]


def _find_dirs(root: Path, name: str) -> List[Path]:
    if (root / name).is_dir():
        return [root / name]
    return sorted(p for p in root.rglob(name) if p.is_dir() and not is_os_clutter(p.relative_to(root).parts))


# ---- Atlases ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AtlasGroup:
    key: str          # option value and case id prefix
    folder: str       # folder name in the repository
    group: str        # neurotypical / spina_bifida
    pattern: str      # atlas folder name -> GA (and operated)


ATLAS_GROUPS = (
    AtlasGroup("gholipour", "Neurotypical_Gholipour2017", "neurotypical", r"HarvardSTA(\d+)_Study1"),
    AtlasGroup("wu", "Neurotypical_Wu2021", "neurotypical", r"Chinese(\d+)_Study1"),
    AtlasGroup("sb", "SpinaBifida_Fidon2021", "spina_bifida", r"fetal_SB_atlas_GA(\d+)_(notoperated|operated)"),
)
ATLAS_FILES = ("srr.nii.gz", "mask.nii.gz", "parcellation.nii.gz")


def _load_atlas(case_id: str, folder: Path, metadata: Dict[str, object], mask_image: bool) -> CaseData:
    where = f"case {case_id} ({folder})"
    missing = [f for f in ATLAS_FILES if not (folder / f).is_file()]
    if missing:
        raise SkipCase(f"missing {', '.join(missing)} in {folder}")
    image_arr, image = _read_image(folder / "srr.nii.gz", where)
    fidon, label_affine = _read_label(folder / "parcellation.nii.gz", where)
    bad = _unexpected(fidon, range(len(FIDON_TO_FETA)))
    if bad:
        raise ConversionError(f"{where}: parcellation.nii.gz has label value(s) {bad}; expected Fidon's atlas "
                              f"labels 0..8 (1 WM, 2 ventricles, 3 cerebellum, 4 eCSF, 5 GM, 6 deep GM, "
                              f"7 brainstem, 8 corpus callosum)")
    label = to_sitk(FIDON_TO_FETA[fidon], label_affine, where)
    label = match_label_geometry(label, image, f"{where} parcellation.nii.gz")
    mask_arr, mask_affine = read_nifti(folder / "mask.nii.gz", where)
    mask_arr = (np.asarray(mask_arr, dtype=np.float64) > 0.5).astype(np.uint8)
    # the mask itself is not written; its grid must still be the image's
    match_label_geometry(to_sitk(mask_arr, mask_affine, where), image, f"{where} mask.nii.gz")
    if mask_image:
        image_arr = image_arr * mask_arr
        masked = to_sitk(image_arr.astype(np.float32), np.eye(4), where)
        masked.CopyInformation(image)
        image = masked
    return CaseData(images=[image], label=label, metadata=metadata)


def atlas_cases(root: Path, groups=tuple(g.key for g in ATLAS_GROUPS), mask_image: bool = True) -> List[Case]:
    """One training case per atlas folder of the chosen ``groups`` found under ``root``."""
    cases: List[Case] = []
    for grp in ATLAS_GROUPS:
        if grp.key not in groups:
            continue
        found = _find_dirs(root, grp.folder)
        if not found:
            raise ConversionError(
                f"{root}: no {grp.folder}/ folder found; expected the fetal_brain_atlases folder (or a parent) "
                f"holding {', '.join(g.folder for g in ATLAS_GROUPS)} (choose groups with --atlas-groups)")
        if len(found) > 1:
            raise ConversionError(f"{root}: several {grp.folder}/ folders ({', '.join(map(str, found))}); "
                                  f"point SRC at one fetal_brain_atlases folder")
        n_before = len(cases)
        for sub in sorted(p for p in found[0].iterdir() if p.is_dir() and not is_os_clutter([p.name])):
            m = re.fullmatch(grp.pattern, sub.name)
            if not m:
                continue
            ga = int(m.group(1))
            operated = "NA"
            case_id = f"{grp.key}_GA{ga}"
            if grp.group == "spina_bifida":
                operated = "yes" if m.group(2) == "operated" else "no"
                case_id += f"_{m.group(2)}"
            metadata = {"group": grp.group, "atlas": grp.folder, "gestational_age": ga, "operated": operated}
            cases.append(Case(case_id, "Tr", source=str(sub),
                              load=lambda c=case_id, s=sub, md=metadata: _load_atlas(c, s, md, mask_image)))
        if len(cases) == n_before:
            raise ConversionError(f"{found[0]}: no atlas folder matching {grp.pattern!r}")
    return cases


def _atlases_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--atlas-groups", nargs="+", choices=[g.key for g in ATLAS_GROUPS],
                        default=[g.key for g in ATLAS_GROUPS],
                        help="atlas groups to convert (default: all three: gholipour wu sb)")
    parser.add_argument("--keep-background", action="store_true",
                        help="write srr as is (default: zero the image outside the atlas brain mask)")


def run_atlases(args: argparse.Namespace) -> Report:
    spec = DatasetSpec(
        dataset_id=args.id, name=args.name or "FetalBrainAtlases", channel_names={"0": "T2"},
        labels=dict(FETA_LABELS), file_ending=".nii.gz",
        description="Fetal brain atlases (Gholipour 2017, Wu 2021, spina bifida Fidon 2021), labels remapped "
                    "from Fidon's order to FeTA's (corpus callosum into WM)",
        reference="https://github.com/LucasFidon/trustworthy-ai-fetal-brain-segmentation",
        license="see the LICENSE files of each atlas group")
    with extracted(args.src) as root:
        cases = atlas_cases(root, tuple(getattr(args, "atlas_groups", None) or [g.key for g in ATLAS_GROUPS]),
                            mask_image=not getattr(args, "keep_background", False))
        return write_dataset(spec, cases, args.out, overwrite=args.overwrite)


register_converter(Converter(
    name="atlases", help="fetal brain atlases (RAS4DG source domain), labels in FeTA order",
    run=run_atlases, add_arguments=_atlases_arguments,
    example="nnunet-rc convert atlases trustworthy-ai-fetal-brain-segmentation/data/fetal_brain_atlases --id 120"))


# ---- FeTA 2021 ----------------------------------------------------------------------------------------

FETA_COLUMNS = ("participant_id", "Pathology", "Gestational age")
PATHOLOGY_GROUP = {"neurotypical": "normal", "pathological": "abnormal"}
_FIDON_TSV = ("this looks like the modified participants.tsv of LucasFidon/trustworthy-ai-fetal-brain-"
              "segmentation; use the participants.tsv shipped with feta_2.1")


def read_participants(path: Path) -> Dict[str, Dict[str, str]]:
    """participant_id -> {pathology, group, gestational_age} from FeTA's own ``participants.tsv``."""
    text = Path(path).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ConversionError(f"{path}: empty file; expected columns {', '.join(FETA_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    if "SRR quality rating" in header:
        raise ConversionError(f"{path}: has an 'SRR quality rating' column; {_FIDON_TSV}")
    missing = [c for c in FETA_COLUMNS if c not in header]
    if missing:
        raise ConversionError(f"{path}: missing column(s) {missing} (found {header}); expected FeTA's "
                              f"participants.tsv with tab-separated columns {', '.join(FETA_COLUMNS)} "
                              f"(a modified copy, e.g. Fidon's, is not accepted)")
    col = {c: header.index(c) for c in FETA_COLUMNS}
    out: Dict[str, Dict[str, str]] = {}
    for r in rows[1:]:
        r = r + [""] * (len(header) - len(r))
        pid, pathology, ga = (r[col[c]].strip() for c in FETA_COLUMNS)
        if pathology.lower() == "spina bifida":
            raise ConversionError(f"{path}: {pid} has Pathology 'Spina Bifida', which FeTA 2.1 does not use; "
                                  f"{_FIDON_TSV}")
        if pathology.lower() not in PATHOLOGY_GROUP:
            raise ConversionError(f"{path}: {pid} has Pathology {pathology!r}; expected Neurotypical or Pathological")
        out[pid] = {"pathology": pathology, "group": PATHOLOGY_GROUP[pathology.lower()], "gestational_age": ga}
    return out


def _find_feta_root(root: Path) -> Path:
    found = [p.parent for p in ([root / "participants.tsv"] if (root / "participants.tsv").is_file()
                                else sorted(root.rglob("participants.tsv")))
             if not is_os_clutter(p.relative_to(root).parts) and any(p.parent.glob("sub-*"))]
    if not found:
        raise ConversionError(f"{root}: no participants.tsv beside sub-*/ folders; expected the feta_2.1 folder "
                              f"(participants.tsv, sub-001/anat/sub-001_rec-mial_T2w.nii.gz, ...)")
    if len(found) > 1:
        raise ConversionError(f"{root}: several FeTA folders ({', '.join(map(str, found))}); point SRC at one")
    return found[0]


def _load_feta(case_id: str, t2w: Path, dseg: Path, metadata: Dict[str, object]) -> CaseData:
    where = f"case {case_id} ({t2w})"
    if not dseg.is_file():
        raise SkipCase(f"no label {dseg.name} beside {t2w}")
    _, image = _read_image(t2w, where)
    arr, affine = _read_label(dseg, where)
    values = np.unique(arr)
    if 8 in values:
        raise ConversionError(f"{where}: {dseg.name} has label 8; FeTA labels are 0..7. This looks like Fidon's "
                              f"relabelled FeTA copy (his label order, 8 = corpus callosum); use FeTA's own dseg files")
    bad = _unexpected(values, range(8))
    if bad:
        raise ConversionError(f"{where}: {dseg.name} has label value(s) {bad}; expected FeTA labels 0..7")
    label = to_sitk(arr.astype(np.uint8), affine, where)
    label = match_label_geometry(label, image, f"{where} {dseg.name}")
    return CaseData(images=[image], label=label, metadata=metadata)


def feta_cases(root: Path, split: str = "Ts") -> Tuple[List[Case], str]:
    """(cases, text of groups.csv) for the FeTA folder found under ``root``."""
    feta = _find_feta_root(root)
    participants = read_participants(feta / "participants.tsv")
    images = sorted(p for p in feta.glob("sub-*/anat/*_rec-*_T2w.nii.gz") if not is_os_clutter([p.name]))
    if not images:
        raise ConversionError(f"{feta}: no sub-*/anat/*_rec-*_T2w.nii.gz images")
    cases: List[Case] = []
    group_rows = ["case,group"]
    for t2w in images:
        case_id = t2w.name[: -len("_T2w.nii.gz")]
        pid = case_id.split("_")[0]
        rec = re.search(r"_rec-([^_]+)", case_id)
        if pid not in participants:
            raise ConversionError(f"case {case_id} ({t2w}): participant {pid} not in {feta / 'participants.tsv'}")
        info = participants[pid]
        dseg = t2w.with_name(t2w.name.replace("_T2w.nii.gz", "_dseg.nii.gz"))
        metadata = {"participant": pid, "reconstruction": rec.group(1) if rec else "", "pathology": info["pathology"],
                    "group": info["group"], "gestational_age": info["gestational_age"]}
        cases.append(Case(case_id, split, source=str(t2w),
                          load=lambda c=case_id, t=t2w, d=dseg, md=metadata: _load_feta(c, t, d, md)))
        if dseg.is_file():
            group_rows.append(f"{case_id},{info['group']}")
    return cases, "\n".join(group_rows) + "\n"


def _feta_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-training", action="store_true",
                        help="write imagesTr/labelsTr (default: imagesTs/labelsTs, FeTA as a target domain)")


def run_feta(args: argparse.Namespace) -> Report:
    split = "Tr" if getattr(args, "as_training", False) else "Ts"
    with extracted(args.src) as root:
        cases, groups = feta_cases(root, split)
        spec = DatasetSpec(
            dataset_id=args.id, name=args.name or "FeTA2021", channel_names={"0": "T2"},
            labels=dict(FETA_LABELS), file_ending=".nii.gz",
            description="FeTA 2021 (feta_2.1) fetal brain T2w reconstructions (rec-mial, rec-irtk); groups.csv: "
                        "normal = Neurotypical, abnormal = Pathological",
            reference="https://doi.org/10.7303/syn25649159", license="FeTA data use agreement",
            extra_files={"groups.csv": groups})
        return write_dataset(spec, cases, args.out, overwrite=args.overwrite)


register_converter(Converter(
    name="feta", help="FeTA 2021 fetal brain MRI (target domain; labels in FeTA order, groups.csv)",
    run=run_feta, add_arguments=_feta_arguments,
    example="nnunet-rc convert feta feta_2.1 --id 121"))
