"""MS lesion MRI (3D): one converter ``ms``, one small adapter per public dataset, one channel order.

``nnunet-rc convert ms --format FORMAT SRC --id N --modalities FLAIR[,T1,...]``

Every adapter answers "where are the cases": it returns :class:`SourceCase` objects (a dict
canonical modality -> file, a label file or ``None``, and whether the case belongs to the source's
training or test part). The rest is shared: the requested modalities in the requested order become
channels ``0000, 0001, ...`` (``dataset.json`` ``channel_names`` are the canonical names, so nnU-Net
z-scores them), every extra modality and the label are checked against the first requested modality's
grid with :func:`match_label_geometry` (sub-voxel header noise -> the reference geometry is copied;
anything else is an error naming the case), labels are rounded (scaled NIfTI) and binarized to
``{background: 0, lesion: 1}``; an empty lesion mask is kept.

Canonical modalities: ``FLAIR, T1, T1CE, T2, PD`` (:data:`MODALITY_ALIASES` maps each dataset's
names: mprage/T1W -> T1, GADO/T1WKS/T1POST -> T1CE, T2W -> T2, DP -> PD, ...).

Splits (``--split``): ``auto`` (default) writes the source's training part to ``imagesTr/labelsTr`` and
its test/validation parts to ``imagesTs`` (+ ``labelsTs`` where labels exist); ``Tr`` or ``Ts`` puts
every case there (``Ts`` for a target dataset of a domain-generalization experiment).

Formats and case ids (unique across centres, cohorts, timepoints and splits):

* ``msseg2016``: ``{Training,Testing}/Center_XX/Patient_YY/Preprocessed_Data/{FLAIR,T1,T2,DP,GADO}_preprocessed.nii.gz``,
  ``Masks/Consensus.nii.gz`` or ``ManualSegmentation_N.nii.gz`` (``--rater N``) -> ``msseg_C01_P01``
  (Testing: ``msseg_test_C03_P01``).
* ``isbi2015``: ``trainingNN/preprocessed/trainingNN_TT_{flair,mprage,pd,t2}_pp.nii`` (uncompressed),
  ``masks/trainingNN_TT_mask{1,2}.nii`` (``--rater``, default 1) -> ``isbi_01_01`` (test data: ``isbi_test01_01``).
* ``3dmrms``: original ``patientXX/patientXX_{FLAIR,T1W,T1WKS,T2W}.nii.gz`` + ``patientXX_consensus_gt.nii.gz``,
  or the open_ms_data mirror ``cross_sectional/{coregistered,coregistered_resampled,raw}/patientXX/{FLAIR,...,consensus_gt}.nii.gz``
  and ``cross_sectional/MNI/patientXX/{FLAIR,T1,T1POST,T2}_..._regtoMNI.nii.gz`` + ``GOLD_STANDARD_...`` (``--mrms-variant``,
  default ``coregistered``) -> ``3dmrms_patient01``.
* ``mslesseg``: ``train/P{n}/T{k}/P{n}_T{k}_{FLAIR,T1,T2,MASK}.nii.gz``, ``test/P{n}/P{n}_{FLAIR,T1,T2,MASK}.nii.gz``;
  file names are parsed by token position (``P6_T2_T2`` = patient 6, timepoint 2, T2) -> ``mslesseg_P6_T2``, ``mslesseg_P54``.
* ``shifts``: ``<cohort>/{train,dev_in,eval_in,dev_out}/{flair,t1,t2,pd,gt,fg_mask}/<id>_{FLAIR,...}_isovox.nii.gz``,
  ``gt/<id>_gt_isovox.nii.gz`` (ids restart per cohort and split; ``--shifts-splits`` selects) ->
  ``shifts_ljubljana_train_12``. ``auto`` split: ``train`` -> Tr, the others -> Ts.
* ``wmh``: ``training/{Utrecht,Singapore,Amsterdam/GE3T}/<id>/{wmh.nii.gz,pre/FLAIR.nii.gz,pre/T1.nii.gz}`` ->
  ``wmh_Utrecht_0``. Label 2 (other pathology) -> ``--wmh-label2 background`` (default) or ``ignore``
  (``"ignore": 2`` in dataset.json; nnU-Net requires the ignore label to be the highest).
* MSSEG-2 (``flair_time01_on_middle_space.nii.gz``) marks new lesions only: refused for every format;
  ``--format msseg2 --allow-new-lesions-only`` converts the time-02 FLAIR with the new-lesion mask.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .writer import (Case, CaseData, ConversionError, Converter, DatasetSpec, Report, binarize, extracted,
                     match_label_geometry, register_converter, safe_case_id, write_dataset)

CANONICAL = ("FLAIR", "T1", "T1CE", "T2", "PD")

#: Each dataset's modality name (lower case) -> canonical name.
MODALITY_ALIASES: Dict[str, str] = {
    "flair": "FLAIR",
    "t1": "T1", "t1w": "T1", "mprage": "T1",
    "t1ce": "T1CE", "t1c": "T1CE", "gado": "T1CE", "t1wks": "T1CE", "t1post": "T1CE", "t1gd": "T1CE",
    "t2": "T2", "t2w": "T2",
    "pd": "PD", "dp": "PD", "pdw": "PD",
}

NII = (".nii.gz", ".nii")


def canonical_modality(name: str) -> Optional[str]:
    """Canonical modality for a dataset's name (case-insensitive), ``None`` if unknown."""
    return MODALITY_ALIASES.get(name.strip().lower())


def parse_modalities(text: str) -> List[str]:
    """``"flair,mprage"`` -> ``["FLAIR", "T1"]``; unknown or repeated names are an error."""
    out: List[str] = []
    for raw in [t for t in text.split(",") if t.strip()]:
        mod = canonical_modality(raw)
        if mod is None:
            raise ConversionError(f"--modalities: unknown modality {raw!r}; expected one of {', '.join(CANONICAL)} "
                                  f"(or a dataset's name for one: {', '.join(sorted(MODALITY_ALIASES))})")
        if mod in out:
            raise ConversionError(f"--modalities: {mod} requested twice")
        out.append(mod)
    if not out:
        raise ConversionError("--modalities: expected at least one modality, e.g. FLAIR or FLAIR,T1")
    return out


@dataclass
class SourceCase:
    """One case as an adapter finds it. ``images``: modality (canonical, or the file's token if
    unknown) -> file. ``part``: ``"train"`` or ``"test"`` (the source's own split, used by ``--split auto``)."""
    case_id: str
    images: Dict[str, Path]
    label: Optional[Path]
    part: str
    source: Path
    metadata: Dict[str, object] = field(default_factory=dict)


def _strip_nii(name: str) -> Optional[str]:
    for ext in NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return None


def _add_image(images: Dict[str, Path], token: str, path: Path) -> None:
    images[canonical_modality(token) or token] = path


def _rater(args, default: str, allowed: Sequence[str], fmt: str) -> str:
    rater = args.rater or default
    if rater not in allowed:
        raise ConversionError(f"--rater {rater}: {fmt} has {', '.join(allowed)}")
    return rater


# ---- adapters: find the cases ------------------------------------------------------------------------------

def find_msseg2016(root: Path, args) -> List[SourceCase]:
    rater = _rater(args, "consensus", ["consensus"] + [str(i) for i in range(1, 8)], "MSSEG-2016")
    label_name = "Consensus" if rater == "consensus" else f"ManualSegmentation_{rater}"
    cases = []
    for pre in sorted(root.rglob("Preprocessed_Data")):
        patient = pre.parent
        centre = patient.parent
        m_p, m_c = re.search(r"(\d+)$", patient.name), re.search(r"(\d+)$", centre.name)
        if not (pre.is_dir() and m_p and m_c and centre.name.lower().startswith("center")):
            continue
        test = any(p.lower().startswith("test") for p in patient.relative_to(root).parts[:-2]) or \
            root.name.lower().startswith("test")
        images: Dict[str, Path] = {}
        for f in sorted(pre.iterdir()):
            stem = _strip_nii(f.name)
            if stem and stem.endswith("_preprocessed"):
                _add_image(images, stem[: -len("_preprocessed")], f)
        label = next((patient / "Masks" / f"{label_name}{e}" for e in NII if (patient / "Masks" / f"{label_name}{e}").exists()), None)
        cid = f"msseg_{'test_' if test else ''}C{int(m_c.group(1)):02d}_P{int(m_p.group(1)):02d}"
        cases.append(SourceCase(cid, images, label, "test" if test else "train", patient,
                                {"centre": centre.name, "patient": patient.name, "rater": rater}))
    return cases


_ISBI = re.compile(r"^(?P<prefix>[A-Za-z]+)(?P<p>\d+)_(?P<t>\d+)_(?P<mod>[A-Za-z0-9]+)_pp$")


def find_isbi2015(root: Path, args) -> List[SourceCase]:
    rater = _rater(args, "1", ["1", "2"], "ISBI 2015 (two raters, mask1 and mask2)")
    by_id: Dict[str, SourceCase] = {}
    for f in sorted(root.rglob("*_pp.nii*")):
        m = _ISBI.match(_strip_nii(f.name) or "")
        if not m or f.parent.name != "preprocessed":
            continue
        prefix, p, t = m.group("prefix").lower(), m.group("p"), m.group("t")
        test = prefix != "training"
        cid = f"isbi_{prefix + p if test else p}_{t}"
        if cid not in by_id:
            base = f"{m.group('prefix')}{p}_{t}_mask{rater}"
            masks = f.parent.parent / "masks"
            label = next((masks / f"{base}{e}" for e in NII if (masks / f"{base}{e}").exists()), None)
            by_id[cid] = SourceCase(cid, {}, label, "test" if test else "train", f.parent.parent,
                                    {"patient": f"{prefix}{p}", "timepoint": t, "rater": rater})
        _add_image(by_id[cid].images, m.group("mod"), f)
    return list(by_id.values())


def find_3dmrms(root: Path, args) -> List[SourceCase]:
    _rater(args, "consensus", ["consensus"], "3D-MR-MS (consensus only)")
    variant = args.mrms_variant
    cases = []
    mirror = [d for d in ([root] if root.name == "cross_sectional" else sorted(root.rglob("cross_sectional"))) if d.is_dir()]
    if mirror:  # open_ms_data mirror
        base = mirror[0] / variant
        if not base.is_dir():
            have = sorted(d.name for d in mirror[0].iterdir() if d.is_dir())
            raise ConversionError(f"{mirror[0]}: no {variant}/ folder (--mrms-variant); found {have}")
        for patient in sorted(d for d in base.iterdir() if d.is_dir() and d.name.lower().startswith("patient")):
            images: Dict[str, Path] = {}
            label = None
            for f in sorted(patient.iterdir()):
                stem = _strip_nii(f.name)
                if stem is None:
                    continue
                token = stem.split("_")[0] if variant == "MNI" else stem
                if stem == "consensus_gt" or stem.startswith("GOLD_STANDARD"):
                    label = f
                elif token.lower() != "brainmask":
                    _add_image(images, token, f)
            cases.append(SourceCase(f"3dmrms_{patient.name}", images, label, "train", patient,
                                    {"patient": patient.name, "variant": variant}))
        return cases
    for gt in sorted(root.rglob("patient*_consensus_gt.nii*")):  # the original zips
        patient = gt.name.split("_")[0]
        images = {}
        for f in sorted(gt.parent.glob(f"{patient}_*")):
            stem = _strip_nii(f.name)
            token = stem[len(patient) + 1:] if stem else ""
            if token and token not in ("consensus_gt", "brainmask"):
                _add_image(images, token, f)
        cases.append(SourceCase(f"3dmrms_{patient}", images, gt, "train", gt.parent, {"patient": patient}))
    return cases


_MSLESSEG_P, _MSLESSEG_T = re.compile(r"^P\d+$", re.I), re.compile(r"^T\d+$", re.I)


def find_mslesseg(root: Path, args) -> List[SourceCase]:
    """Names are parsed by position: ``P{n}_T{k}_{MOD}`` (train) or ``P{n}_{MOD}`` (test)."""
    _rater(args, "consensus", ["consensus"], "MSLesSeg (one mask per case)")
    by_id: Dict[str, SourceCase] = {}
    for f in sorted(root.rglob("P*_*.nii*")):
        stem = _strip_nii(f.name)
        tokens = stem.split("_") if stem else []
        if len(tokens) == 3 and _MSLESSEG_P.match(tokens[0]) and _MSLESSEG_T.match(tokens[1]):
            key, mod, meta = f"{tokens[0]}_{tokens[1]}", tokens[2], {"patient": tokens[0], "timepoint": tokens[1]}
        elif len(tokens) == 2 and _MSLESSEG_P.match(tokens[0]):
            key, mod, meta = tokens[0], tokens[1], {"patient": tokens[0], "timepoint": ""}
        else:
            continue
        test = any(p.lower() == "test" for p in f.relative_to(root).parts[:-1])
        cid = f"mslesseg_{key}"
        case = by_id.setdefault(cid, SourceCase(cid, {}, None, "test" if test else "train", f.parent, meta))
        if mod.upper() == "MASK":
            case.label = f
        else:
            _add_image(case.images, mod, f)
    return list(by_id.values())


SHIFTS_SPLITS = ("train", "dev_in", "eval_in", "dev_out")


def find_shifts(root: Path, args) -> List[SourceCase]:
    _rater(args, "consensus", ["consensus"], "Shifts (one ground truth per case)")
    wanted = [s.strip() for s in (args.shifts_splits or ",".join(SHIFTS_SPLITS)).split(",") if s.strip()]
    bad = sorted(set(wanted) - set(SHIFTS_SPLITS))
    if bad:
        raise ConversionError(f"--shifts-splits: unknown split(s) {bad}; expected some of {', '.join(SHIFTS_SPLITS)}")
    cases = []
    for flair in sorted(root.rglob("*_FLAIR_isovox.nii*")):
        split_dir = flair.parent.parent
        split, cohort = split_dir.name, split_dir.parent.name
        if split not in wanted:
            continue
        sid = flair.name[: flair.name.index("_FLAIR_isovox")]
        images: Dict[str, Path] = {}
        label = None
        for sub in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            if sub.name == "fg_mask":
                continue
            for f in sorted(sub.glob(f"{sid}_*_isovox.nii*")):
                token = f.name[len(sid) + 1: f.name.index("_isovox")]
                if token == "gt":
                    label = f
                else:
                    _add_image(images, token, f)
        cid = safe_case_id(f"shifts_{cohort}_{split}_{sid}")
        cases.append(SourceCase(cid, images, label, "train" if split == "train" else "test", split_dir,
                                {"cohort": cohort, "shifts_split": split, "shifts_id": sid}))
    return cases


def find_wmh(root: Path, args) -> List[SourceCase]:
    _rater(args, "consensus", ["consensus"], "WMH 2017 (one label per case)")
    cases = []
    for flair in sorted(root.rglob("pre/FLAIR.nii*")):
        case_dir = flair.parent.parent
        rel = case_dir.relative_to(root).parts
        site = [p for p in rel[:-1] if p.lower() not in ("training", "test")]
        test = any(p.lower() == "test" for p in rel[:-1])
        images: Dict[str, Path] = {}
        for f in sorted(flair.parent.iterdir()):
            stem = _strip_nii(f.name)
            if stem and stem in ("FLAIR", "T1"):
                _add_image(images, stem, f)
        label = next((case_dir / f"wmh{e}" for e in NII if (case_dir / f"wmh{e}").exists()), None)
        cases.append(SourceCase(safe_case_id("_".join(["wmh", *site, case_dir.name])), images, label,
                                "test" if test else "train", case_dir, {"site": "/".join(site), "subject": case_dir.name}))
    return cases


def find_msseg2(root: Path, args) -> List[SourceCase]:
    """MSSEG-2 (new lesions only): FLAIR = ``flair_time02_on_middle_space``, label = ``ground_truth``."""
    cases = []
    for f in sorted(root.rglob("flair_time02_on_middle_space.nii*")):
        label = next((f.parent / f"ground_truth{e}" for e in NII if (f.parent / f"ground_truth{e}").exists()), None)
        cases.append(SourceCase(safe_case_id(f"msseg2_{f.parent.name}"), {"FLAIR": f}, label, "train", f.parent,
                                {"patient": f.parent.name, "label": "new lesions only"}))
    return cases


ADAPTERS: Dict[str, Callable[[Path, argparse.Namespace], List[SourceCase]]] = {
    "msseg2016": find_msseg2016, "isbi2015": find_isbi2015, "3dmrms": find_3dmrms, "mslesseg": find_mslesseg,
    "shifts": find_shifts, "wmh": find_wmh, "msseg2": find_msseg2,
}
DEFAULT_NAMES = {"msseg2016": "MS_MSSEG2016", "isbi2015": "MS_ISBI2015", "3dmrms": "MS_3DMRMS",
                 "mslesseg": "MS_MSLesSeg", "shifts": "MS_Shifts", "wmh": "WMH2017", "msseg2": "MS_MSSEG2_new"}


def looks_like_msseg2(root: Path) -> Optional[Path]:
    return next(iter(root.rglob("flair_time0[12]_on_middle_space.nii*")), None)


# ---- loading: one case -> channels in the requested order + binary label -----------------------------------

def _read(path: Path, where: str) -> sitk.Image:
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ConversionError(f"{where}: cannot read {path} ({str(e).strip().splitlines()[-1] if str(e).strip() else e})") from None
    if img.GetDimension() != 3:
        raise ConversionError(f"{where}: {path.name} is {img.GetDimension()}D; expected a 3D volume")
    return img


def decode_label(arr: np.ndarray, where: str, wmh_label2: Optional[str] = None) -> np.ndarray:
    """Binary lesion mask (uint8). Float data (scaled NIfTI) is rounded first when every value is within
    1e-3 of an integer. ``wmh_label2``: WMH's label 2 (other pathology) -> 0 (``background``) or kept as 2
    (``ignore``); otherwise {0, 2} or grey values are an error (via :func:`binarize`)."""
    if np.issubdtype(arr.dtype, np.floating):
        rounded = np.rint(arr)
        if np.abs(arr - rounded).max(initial=0) <= 1e-3:
            arr = rounded.astype(np.int32)
    if wmh_label2 is not None:
        values = set(np.unique(arr).tolist())
        if not values <= {0, 1, 2}:
            raise ConversionError(f"{where}: WMH label values {sorted(values)}; expected {{0, 1, 2}}")
        out = (arr == 1).astype(np.uint8)
        if wmh_label2 == "ignore":
            out[arr == 2] = 2
        return out
    return binarize(arr, where)


def load_case(sc: SourceCase, modalities: Sequence[str], wmh_label2: Optional[str] = None) -> CaseData:
    """Channels in ``modalities`` order on the first one's grid, and the binary label (if any)."""
    where = f"case {sc.case_id}"
    ref = _read(sc.images[modalities[0]], where)
    images = [ref]
    for mod in modalities[1:]:
        img = _read(sc.images[mod], where)
        images.append(match_label_geometry(img, ref, f"{where}: {mod} ({sc.images[mod].name}) vs {modalities[0]}"))
    label = None
    if sc.label is not None:
        lab = _read(sc.label, where)
        arr = decode_label(sitk.GetArrayFromImage(lab), f"{where}: label {sc.label.name}", wmh_label2)
        lab_bin = sitk.GetImageFromArray(arr)
        lab_bin.CopyInformation(lab)
        label = match_label_geometry(lab_bin, ref, f"{where}: label {sc.label.name} vs {modalities[0]}")
    meta = {**sc.metadata,
            **{f"file_{m}": sc.images[m].name for m in modalities}, "label_file": sc.label.name if sc.label else ""}
    return CaseData(images=images, label=label, metadata=meta)


def _check_modalities(found: Sequence[SourceCase], modalities: Sequence[str]) -> None:
    for sc in found:
        missing = [m for m in modalities if m not in sc.images]
        if missing:
            raise ConversionError(f"case {sc.case_id} ({sc.source}): no {', '.join(missing)} image; "
                                  f"this case has {', '.join(sorted(sc.images)) or 'no images'}")


def build_cases(root: Path, args) -> List[Case]:
    """Run the format's adapter on ``root`` and turn its findings into writer :class:`Case` objects."""
    hit = looks_like_msseg2(root)
    if hit is not None and not (args.format == "msseg2" and args.allow_new_lesions_only):
        raise ConversionError(f"{hit}: this looks like MSSEG-2, whose masks mark NEW lesions only (not all lesions); "
                              f"pass --format msseg2 --allow-new-lesions-only to convert it anyway")
    if args.format == "msseg2" and not args.allow_new_lesions_only:
        raise ConversionError("--format msseg2 converts new-lesion masks; pass --allow-new-lesions-only to confirm")
    modalities = parse_modalities(args.modalities)
    found = ADAPTERS[args.format](root, args)
    if not found:
        raise ConversionError(f"{root}: no {args.format} cases found; see `nnunet-rc convert ms --help` for the expected layout")
    _check_modalities(found, modalities)
    wmh_label2 = args.wmh_label2 if args.format == "wmh" else None
    cases = []
    for sc in found:
        sc.metadata = {"source": sc.source.relative_to(root).as_posix() if sc.source != root else ".", **sc.metadata}
        split = args.split if args.split in ("Tr", "Ts") else ("Tr" if sc.part == "train" else "Ts")
        if split == "Tr" and sc.label is None:
            raise ConversionError(f"case {sc.case_id} ({sc.source}): no label file found for a training case "
                                  f"(check --rater, or write it with --split Ts)")
        cases.append(Case(sc.case_id, split, (lambda sc=sc: load_case(sc, modalities, wmh_label2)),
                          str(sc.source)))
    return cases


def run(args) -> Report:
    modalities = parse_modalities(args.modalities)
    labels = {"background": 0, "lesion": 1}
    if args.format == "wmh" and args.wmh_label2 == "ignore":
        labels["ignore"] = 2
    with extracted(args.src) as root:
        cases = build_cases(Path(root), args)
        spec = DatasetSpec(
            dataset_id=args.id, name=args.name or DEFAULT_NAMES[args.format],
            channel_names={str(i): m for i, m in enumerate(modalities)}, labels=labels, file_ending=".nii.gz",
            description=f"MS lesions converted from {args.format} by nnunet-rc (modalities {','.join(modalities)})",
            extra_json={"source_format": args.format})
        return write_dataset(spec, cases, args.out, overwrite=args.overwrite, progress=not getattr(args, "quiet", False))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=sorted(ADAPTERS), help="the source dataset's layout")
    parser.add_argument("--modalities", default="FLAIR",
                        help=f"comma-separated channels in this order (canonical: {', '.join(CANONICAL)}); default FLAIR")
    parser.add_argument("--rater", default=None,
                        help="which label: 'consensus' (default) or a rater number (MSSEG-2016: 1..7; ISBI 2015: 1 (default) or 2)")
    parser.add_argument("--split", default="auto", choices=["auto", "Tr", "Ts"],
                        help="auto: the source's training part -> imagesTr/labelsTr, its test part -> imagesTs/labelsTs; "
                             "Tr/Ts: every case there (Ts for a target dataset)")
    parser.add_argument("--mrms-variant", default="coregistered", choices=["coregistered", "coregistered_resampled", "raw", "MNI"],
                        help="3dmrms, open_ms_data mirror only: which cross_sectional/ folder (default coregistered)")
    parser.add_argument("--shifts-splits", default=None,
                        help=f"shifts: comma-separated splits to convert (default all of {','.join(SHIFTS_SPLITS)})")
    parser.add_argument("--wmh-label2", default="background", choices=["background", "ignore"],
                        help="wmh: label 2 (other pathology) -> background (default) or nnU-Net's ignore label")
    parser.add_argument("--allow-new-lesions-only", action="store_true",
                        help="convert MSSEG-2 (--format msseg2), whose masks mark new lesions only")


register_converter(Converter(
    name="ms", help="MS lesion MRI (MSSEG-2016, ISBI 2015, 3D-MR-MS, MSLesSeg, Shifts 2.0, WMH 2017), channels in a chosen order",
    run=run, add_arguments=add_arguments,
    example="nnunet-rc convert ms --format mslesseg 'MSLesSeg Dataset' --id 130 --modalities FLAIR,T1"))
