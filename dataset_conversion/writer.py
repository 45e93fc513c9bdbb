"""The one writer behind every converter, and the small helpers converters share.

A dataset module answers two questions only: where are the cases (a list of :class:`Case`, each with a
lazy ``load``) and how is a label decoded. :func:`write_dataset` does the rest:

* writes ``DatasetXXX_Name/{imagesTr,labelsTr,imagesTs,labelsTs}`` in nnU-Net's raw layout
  (images ``CASE_0000<ending>``, labels ``CASE<ending>``), evaluation masks (e.g. the retinal field of
  view) to ``masksTr``/``masksTs`` with the label's file name, per-case metadata to
  ``case_metadata.csv`` and any extra files (e.g. a groups table);
* ``dataset.json`` through nnU-Net's own ``generate_dataset_json``;
* atomically: everything goes to a hidden temporary folder beside the target, renamed at the end; on
  any error the temporary folder is removed and nothing is left behind; an existing ``DatasetXXX_*``
  with the same id is refused unless ``overwrite``;
* a tqdm progress bar, and a :class:`Report` of written and skipped cases (a loader raises
  :class:`SkipCase` to skip a case with a reason; any other error aborts with the case named).

2D cases are ``PIL.Image`` objects written as PNG (an RGB image is one file holding 3 channels, as
nnU-Net's ``NaturalImage2DIO`` reads it); 3D cases are ``SimpleITK.Image`` objects written as NIfTI.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from PIL import Image
from tqdm import tqdm

__all__ = [
    "CONVERTERS", "Case", "CaseData", "ConversionError", "Converter", "DatasetSpec", "Report", "SkipCase",
    "binarize", "extracted", "is_os_clutter", "match_label_geometry", "register_converter", "safe_case_id", "write_dataset",
]

ImageLike = Union[Image.Image, sitk.Image]
SPLITS = ("Tr", "Ts")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OS_CLUTTER = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


class ConversionError(Exception):
    """Bad input: the message names the file or case and what was expected."""


class SkipCase(Exception):
    """Raised by a case loader to skip this case (the reason is reported, the rest is converted)."""


@dataclass
class CaseData:
    """What a loader returns. ``images``: one entry per file (2D RGB: a single RGB image)."""
    images: List[ImageLike]
    label: Optional[ImageLike] = None
    mask: Optional[ImageLike] = None
    metadata: Dict[str, object] = field(default_factory=dict)


@dataclass
class Case:
    case_id: str
    split: str  # "Tr" or "Ts"
    load: Callable[[], CaseData]
    source: str = ""  # file or folder named in messages


@dataclass
class DatasetSpec:
    dataset_id: int
    name: str
    channel_names: Dict[str, str]
    labels: Dict[str, int]
    file_ending: str  # ".png" or ".nii.gz"
    description: str = ""
    reference: str = ""
    license: str = ""
    extra_json: Dict[str, object] = field(default_factory=dict)
    extra_files: Dict[str, str] = field(default_factory=dict)  # relative path -> text content

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"


@dataclass
class Report:
    path: Path
    written: Dict[str, List[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    with_label: Dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Wrote {self.path}"]
        for s in SPLITS:
            if self.written[s]:
                lines.append(f"  images{s}: {len(self.written[s])} case(s), {self.with_label[s]} with label")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} case(s):")
            lines += [f"    {case}: {reason}" for case, reason in self.skipped]
        else:
            lines.append("  skipped: none")
        return "\n".join(lines)


# ---- registry used by `nnunet-rc convert` --------------------------------------------------------------

@dataclass
class Converter:
    """A dataset converter as the CLI sees it: ``nnunet-rc convert NAME SRC --id N [--name] [--overwrite]``.

    ``add_arguments`` adds the dataset's own options; ``run(args)`` converts and returns a Report.
    ``args`` always has ``src`` (Path), ``id`` (int), ``name`` (str or None), ``out`` (Path),
    ``overwrite`` (bool).
    """
    name: str
    help: str
    run: Callable[[argparse.Namespace], Report]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    example: str = ""


CONVERTERS: Dict[str, Converter] = {}


def register_converter(converter: Converter) -> Converter:
    if converter.name in CONVERTERS:
        raise ValueError(f"converter {converter.name!r} registered twice")
    CONVERTERS[converter.name] = converter
    return converter


# ---- helpers ------------------------------------------------------------------------------------------

def safe_case_id(raw: str) -> str:
    """A case id nnU-Net accepts everywhere: spaces and odd characters become ``_``."""
    cid = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw.strip()).strip("_.-")
    if not cid:
        raise ConversionError(f"cannot make a case id from {raw!r}")
    return cid


def binarize(array: np.ndarray, where: str) -> np.ndarray:
    """Binary label in {0, 1} (uint8) from {0, 1}, {0, 255}, bool or 1-bit data.

    Anything else (e.g. {0, 2}, grey levels) is an error naming ``where``: guessing a threshold for
    a label would silently change the ground truth.
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 1}:
        return arr.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (arr > 127).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    raise ConversionError(f"{where}: label values {{{shown}}}; expected a binary mask with values {{0, 1}} or {{0, 255}}")


def match_label_geometry(label: sitk.Image, image: sitk.Image, where: str, tolerance_mm: float = 0.5,
                         direction_tolerance: float = 1e-3) -> sitk.Image:
    """Return ``label`` on exactly ``image``'s grid.

    The shapes must be equal. Origin within ``tolerance_mm``, spacing within ``tolerance_mm`` and
    direction cosines within ``direction_tolerance`` count as the same grid written with different
    header rounding (qform vs sform, float noise): the image's geometry is copied onto the label.
    Anything larger is a mis-registration and an error naming ``where``.
    """
    if label.GetSize() != image.GetSize():
        raise ConversionError(f"{where}: label size {label.GetSize()} != image size {image.GetSize()}")
    d_origin = np.abs(np.subtract(label.GetOrigin(), image.GetOrigin())).max()
    d_spacing = np.abs(np.subtract(label.GetSpacing(), image.GetSpacing())).max()
    d_direction = np.abs(np.subtract(label.GetDirection(), image.GetDirection())).max()
    if d_origin > tolerance_mm or d_spacing > tolerance_mm or d_direction > direction_tolerance:
        raise ConversionError(
            f"{where}: label and image grids differ (origin by {d_origin:.3g} mm, spacing by {d_spacing:.3g} mm, "
            f"direction by {d_direction:.3g}); expected the same grid within {tolerance_mm} mm")
    out = sitk.Image(label)
    out.CopyInformation(image)
    return out


def is_os_clutter(parts: Sequence[str]) -> bool:
    """True if any path part is OS clutter (`__MACOSX`, `.DS_Store`, `._*`, ...)."""
    return any(p in OS_CLUTTER or p.startswith("._") for p in parts)


@contextmanager
def extracted(src: Path) -> Iterator[Path]:
    """Yield a folder with the contents of ``src``: the folder itself, or a ``.zip`` extracted safely.

    Zip entries that would land outside the target (absolute paths, ``..``) are an error naming the
    entry; ``__MACOSX/``, ``.DS_Store`` and ``._*`` are skipped. If the archive holds a single top-level
    folder, that folder is yielded.
    """
    src = Path(src)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or folder")
    if src.is_dir():
        yield src
        return
    if src.suffix.lower() != ".zip":
        raise ConversionError(f"{src}: expected a folder or a .zip archive")
    with tempfile.TemporaryDirectory(prefix="nnunet_rc_unzip_") as tmp:
        root = Path(tmp).resolve()
        try:
            archive = zipfile.ZipFile(src)
        except zipfile.BadZipFile as e:
            raise ConversionError(f"{src}: not a valid zip archive ({e})") from None
        with archive:
            for info in archive.infolist():
                name = info.filename.replace("\\", "/")
                parts = [p for p in name.split("/") if p]
                if not parts or is_os_clutter(parts):
                    continue
                target = (root / name).resolve()
                if name.startswith("/") or ".." in parts or root not in target.parents:
                    raise ConversionError(f"{src}: zip entry {info.filename!r} points outside the extraction folder; refusing to extract")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as fin, open(target, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
        entries = [p for p in root.iterdir() if not is_os_clutter([p.name])]
        yield entries[0] if len(entries) == 1 and entries[0].is_dir() else root


# ---- the writer ------------------------------------------------------------------------------------------

def _size(img: ImageLike) -> tuple:
    return tuple(img.size) if isinstance(img, Image.Image) else tuple(img.GetSize())


def _label_values(img: ImageLike) -> np.ndarray:
    arr = np.asarray(img) if isinstance(img, Image.Image) else sitk.GetArrayViewFromImage(img)
    return np.unique(arr)


def _save(img: ImageLike, path: Path) -> None:
    if isinstance(img, Image.Image):
        img.save(path, format="PNG")
    else:
        sitk.WriteImage(img, str(path), useCompression=True)


def _check_case(spec: DatasetSpec, case: Case, data: CaseData) -> None:
    where = f"case {case.case_id}" + (f" ({case.source})" if case.source else "")
    if not data.images:
        raise ConversionError(f"{where}: no image")
    kinds = {isinstance(i, Image.Image) for i in data.images + [x for x in (data.label, data.mask) if x is not None]}
    want_2d = spec.file_ending == ".png"
    if kinds != {want_2d}:
        raise ConversionError(f"{where}: converter returned {'3D' if want_2d else '2D'} data for a {spec.file_ending} dataset")
    ref = _size(data.images[0])
    for i, img in enumerate(data.images[1:], start=1):
        if _size(img) != ref:
            raise ConversionError(f"{where}: channel {i} size {_size(img)} != channel 0 size {ref}")
    for what, img in (("label", data.label), ("mask", data.mask)):
        if img is not None and _size(img) != ref:
            raise ConversionError(f"{where}: {what} size {_size(img)} != image size {ref}")
        if img is not None and not want_2d:
            for getter in ("GetSpacing", "GetOrigin", "GetDirection"):
                a, b = getattr(img, getter)(), getattr(data.images[0], getter)()
                if not np.allclose(a, b, atol=1e-4):
                    raise ConversionError(f"{where}: {what} {getter[3:].lower()} {a} != image {b}; "
                                          f"use match_label_geometry in the converter")
    if data.label is not None:
        allowed = set(spec.labels.values())
        extra = sorted(set(_label_values(data.label).tolist()) - allowed)
        if extra:
            raise ConversionError(f"{where}: label values {extra} not in the dataset's labels {sorted(allowed)}")


def write_dataset(spec: DatasetSpec, cases: Sequence[Case], out_root: Path, overwrite: bool = False,
                  progress: bool = True) -> Report:
    """Write ``cases`` as the nnU-Net raw dataset ``out_root/DatasetXXX_Name`` (see module docstring)."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    out_root = Path(out_root)
    if not _SAFE_ID.match(spec.name) or "__" in spec.name:
        raise ConversionError(f"dataset name {spec.name!r}: use letters, digits, '-', '_' (no '__', no spaces)")
    if not 1 <= spec.dataset_id <= 999:
        raise ConversionError(f"dataset id {spec.dataset_id}: expected 1..999")
    if not cases:
        raise ConversionError(f"no cases found for {spec.folder_name}: check the source folder")
    seen: Dict[str, str] = {}
    for case in cases:
        if case.split not in SPLITS:
            raise ConversionError(f"case {case.case_id}: split {case.split!r}, expected 'Tr' or 'Ts'")
        if not _SAFE_ID.match(case.case_id):
            raise ConversionError(f"case id {case.case_id!r} ({case.source}): use safe_case_id()")
        if case.case_id in seen:
            raise ConversionError(f"duplicate case id {case.case_id!r}: {seen[case.case_id]} and {case.source}")
        seen[case.case_id] = case.source

    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / spec.folder_name
    existing = sorted(out_root.glob(f"Dataset{spec.dataset_id:03d}_*"))
    if existing and not overwrite:
        raise ConversionError(f"{existing[0]} already exists; pass --overwrite to replace it")

    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder_name}.partial-", dir=out_root))
    report = Report(path=final)
    metadata_rows: List[Dict[str, object]] = []
    try:
        for case in tqdm(cases, desc=f"converting {spec.folder_name}", unit="case", disable=not progress):
            try:
                data = case.load()
            except SkipCase as e:
                report.skipped.append((case.case_id, str(e)))
                continue
            _check_case(spec, case, data)
            s = case.split
            for sub in (f"images{s}",) + ((f"labels{s}",) if data.label is not None else ()) + \
                       ((f"masks{s}",) if data.mask is not None else ()):
                (tmp / sub).mkdir(exist_ok=True)
            for i, img in enumerate(data.images):
                _save(img, tmp / f"images{s}" / f"{case.case_id}_{i:04d}{spec.file_ending}")
            if data.label is not None:
                _save(data.label, tmp / f"labels{s}" / f"{case.case_id}{spec.file_ending}")
                report.with_label[s] += 1
            if data.mask is not None:
                _save(data.mask, tmp / f"masks{s}" / f"{case.case_id}{spec.file_ending}")
            report.written[s].append(case.case_id)
            if data.metadata:
                metadata_rows.append({"case": case.case_id, "split": s, **data.metadata})
        if not any(report.written.values()):
            raise ConversionError(f"{spec.folder_name}: every case was skipped:\n" +
                                  "\n".join(f"  {c}: {r}" for c, r in report.skipped))
        n_train = len(report.written["Tr"])
        if n_train and report.with_label["Tr"] != n_train:
            raise ConversionError(f"{spec.folder_name}: {n_train - report.with_label['Tr']} training case(s) without label")
        (tmp / "imagesTr").mkdir(exist_ok=True)
        (tmp / "labelsTr").mkdir(exist_ok=True)
        generate_dataset_json(str(tmp), spec.channel_names, spec.labels, n_train, spec.file_ending,
                              dataset_name=spec.folder_name, reference=spec.reference or None,
                              license=spec.license or None, description=spec.description or None,
                              **spec.extra_json)
        if metadata_rows:
            columns = list(dict.fromkeys(k for row in metadata_rows for k in row))
            with open(tmp / "case_metadata.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(metadata_rows)
        for rel, text in spec.extra_files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        for old in existing:
            shutil.rmtree(old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
