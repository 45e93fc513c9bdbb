"""Evaluate a folder of predictions (``nnUNetv2_predict`` output) against reference labels.

``evaluate_folder`` pairs files by name (``<case><ending>`` in both folders; the case id is the file
name without the ending), reads them with nnU-Net's reader (``determine_reader_writer_from_dataset_json``
or, without a dataset.json, ``determine_reader_writer_from_file_ending``), and computes per case and
per label/region Dice (nnU-Net's counting), HD95 (SimpleITK) and optionally lesion detection.

Decisions (spec silent):
- Labels: from ``dataset.json`` (``dataset_json`` argument, else ``<ref>/../dataset.json`` if present):
  every entry except ``background``/``ignore``; list values are regions (union of labels), as in
  nnU-Net. Without a dataset.json: every nonzero value found in the references.
- Evaluation mask (``mask_dir``, same file names as the references, nonzero = inside): voxels
  outside the mask are set to background in both prediction and reference before any metric.
  For Dice this equals excluding them; for HD95 and lesions it means surfaces/lesions are clipped
  to the mask.
- Aggregation: a label's Dice is the mean over cases with ``nanmean`` (cases where the label is
  absent in both are skipped, as in nnU-Net); ``foreground_mean`` is the mean over labels of the
  per-label means. HD95 means skip undefined (both empty) and NaN (one empty) cases; the latter are
  counted in ``HD95_one_empty``.
- Lesions (``lesion=True``): computed on the foreground (all labels > 0 except ignore) -- see
  :mod:`nnunet_rc.evaluation.lesion`. Means of TPR/F1 are over cases with reference lesions, PPV over
  cases with predicted lesions; empty-reference cases are reported separately in
  ``lesion["empty_reference"]`` (number of cases and their false positives), so no mean is NaN
  because of them. Pooled rates (sums over cases) are given too.
- Groups: ``groups`` is a CSV/TSV path or a ``{case: group}`` dict; each group gets the same
  aggregates as the whole set; the whole set is added as group ``"average"`` (mean over all cases).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

KNOWN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".bmp", ".tif", ".tiff", ".gipl")
CASE_COLUMNS = ("case", "case_id", "participant_id", "subject", "id")


class EvaluationError(ValueError):
    """Bad input to the evaluation (missing files, mismatched shapes, unreadable groups file)."""


# ---- inputs --------------------------------------------------------------------------------------

def _detect_ending(folder: Path) -> str:
    counts: Dict[str, int] = {}
    for f in folder.iterdir():
        for e in KNOWN_ENDINGS:
            if f.name.lower().endswith(e):
                counts[e] = counts.get(e, 0) + 1
                break
    if not counts:
        raise EvaluationError(f"no label files ({', '.join(KNOWN_ENDINGS)}) found in {folder}")
    return max(counts, key=counts.get)


def _labels_from_dataset_json(dj: dict):
    """``(names, labels_or_regions, ignore_label)`` from a dataset.json ``labels`` entry."""
    names, items = [], []
    for name, value in dj["labels"].items():
        if name in ("background", "ignore"):
            continue
        names.append(name)
        items.append(tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value))
    ignore = dj["labels"].get("ignore")
    return names, items, (int(ignore) if ignore is not None else None)


def read_groups(groups: Union[str, os.PathLike, Dict[str, str], None],
                group_column: Optional[str] = None, case_column: Optional[str] = None) -> Optional[Dict[str, str]]:
    """``{case: group}`` from a dict or a CSV/TSV file with a header (delimiter sniffed).

    The case column is ``case_column`` or the first of ``case, case_id, participant_id, subject, id``;
    the group column is ``group_column`` or ``group``.
    """
    if groups is None or isinstance(groups, dict):
        return None if groups is None else {str(k): str(v) for k, v in groups.items()}
    path = Path(groups)
    text = path.read_text()
    delimiter = "\t" if (path.suffix.lower() == ".tsv" or "\t" in text.splitlines()[0]) else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    header = [h.strip() for h in (rows[0].keys() if rows else [])]
    lower = {h.lower(): h for h in header}
    ccol = case_column or next((lower[c] for c in CASE_COLUMNS if c in lower), None)
    gcol = group_column or lower.get("group")
    if ccol not in header or gcol not in header:
        raise EvaluationError(f"{path}: need a case column ({'/'.join(CASE_COLUMNS)}) and a group column "
                              f"('group' or --group-column); found columns {header}")
    return {r[ccol].strip(): r[gcol].strip() for r in rows if r.get(ccol)}


# ---- aggregation ---------------------------------------------------------------------------------

def _finite(values) -> List[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _mean(values) -> Optional[float]:
    v = _finite(values)
    return float(np.mean(v)) if v else None


def aggregate(records: Sequence[dict], label_names: Sequence[str], lesion: bool) -> dict:
    """Aggregates of per-case records (see module docstring)."""
    per_label = {}
    for name in label_names:
        dice = [r.get(f"Dice_{name}") for r in records]
        hd = [r.get(f"HD95_{name}") for r in records]
        per_label[name] = {
            "Dice": _mean(dice), "Dice_std": float(np.std(_finite(dice))) if _finite(dice) else None,
            "HD95": _mean(hd),
            "HD95_one_empty": int(sum(1 for v in hd if isinstance(v, float) and math.isnan(v))),
            "HD95_both_empty": int(sum(1 for v in hd if v is None)),
            "n_cases": len(records),
        }
    fg = {"Dice": _mean([per_label[n]["Dice"] for n in label_names]),
          "HD95": _mean([per_label[n]["HD95"] for n in label_names])}
    out = {"n_cases": len(records), "per_label": per_label, "foreground_mean": fg}
    if lesion:
        with_ref = [r for r in records if r["n_ref_lesions"] > 0]
        empty = [r for r in records if r["n_ref_lesions"] == 0]
        n_ref = sum(r["n_ref_lesions"] for r in records)
        n_pred = sum(r["n_pred_lesions"] for r in records)
        det = sum(r["detected"] for r in records)
        tp = sum(r["true_pred"] for r in records)
        p_tpr = det / n_ref if n_ref else None
        p_ppv = tp / n_pred if n_pred else None
        out["lesion"] = {
            "lesion_TPR": _mean([r["lesion_TPR"] for r in with_ref]),
            "lesion_PPV": _mean([r["lesion_PPV"] for r in records]),
            "lesion_F1": _mean([r["lesion_F1"] for r in with_ref]),
            "Dice": _mean([r["Dice_lesion"] for r in with_ref]),
            "false_pos_mean": float(np.mean([r["false_pos"] for r in records])) if records else None,
            "pooled": {"n_ref_lesions": n_ref, "n_pred_lesions": n_pred, "detected": det, "true_pred": tp,
                       "false_pos": n_pred - tp, "lesion_TPR": p_tpr, "lesion_PPV": p_ppv,
                       "lesion_F1": (2 * p_tpr * p_ppv / (p_tpr + p_ppv)) if (p_tpr and p_ppv) else
                       (0.0 if n_ref else None)},
            "empty_reference": {"n_cases": len(empty), "false_pos": int(sum(r["false_pos"] for r in empty)),
                                "cases": [r["case"] for r in empty]},
        }
    return out


# ---- main entry ----------------------------------------------------------------------------------

def _squeeze(seg: np.ndarray, spacing):
    """Drop the channel axis and singleton spatial axes (2D images come as (1, 1, X, Y))."""
    seg = seg[0]
    spacing = list(spacing)[-seg.ndim:] if spacing is not None else [1.0] * seg.ndim
    keep = [i for i, s in enumerate(seg.shape) if s > 1] or [seg.ndim - 1]
    return seg.reshape([seg.shape[i] for i in keep]), [float(spacing[i]) for i in keep]


def evaluate_folder(pred_dir, ref_dir, dataset_json=None, mask_dir=None, groups=None, lesion: bool = False,
                    out_dir=None, *, min_lesion_size: int = 0, lesion_overlap: float = 0.0,
                    group_column: Optional[str] = None, compute_hd95: bool = True, progress: bool = True,
                    write: bool = True) -> dict:
    """Evaluate ``pred_dir`` against ``ref_dir``; write ``summary.json`` and ``per_case.csv`` to ``out_dir``
    (default ``pred_dir``) and return the summary dict (keys ``foreground_mean``, ``per_label``,
    ``per_case``, ``groups`` when groups are given, ``lesion`` when ``lesion``)."""
    from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                         determine_reader_writer_from_file_ending)
    from tqdm import tqdm

    from .lesion import lesion_metrics
    from .metrics import label_metrics

    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for d, what in ((pred_dir, "prediction"), (ref_dir, "reference")):
        if not d.is_dir():
            raise EvaluationError(f"{what} folder {d} does not exist")
    if dataset_json is None and (ref_dir.parent / "dataset.json").is_file():
        dataset_json = ref_dir.parent / "dataset.json"
    dj = None
    if dataset_json is not None:
        dj = dict(dataset_json) if isinstance(dataset_json, dict) else json.loads(Path(dataset_json).read_text())
    ending = dj["file_ending"] if dj and "file_ending" in dj else _detect_ending(ref_dir)

    pred_files = sorted(f.name for f in pred_dir.iterdir() if f.name.endswith(ending))
    if not pred_files:
        raise EvaluationError(f"no predictions with ending {ending} in {pred_dir}")
    missing = [f for f in pred_files if not (ref_dir / f).is_file()]
    if missing:
        raise EvaluationError(f"no reference for prediction(s) {missing[:5]} in {ref_dir} "
                              f"(files must have the same name)")
    if mask_dir is not None:
        mask_dir = Path(mask_dir)
        nomask = [f for f in pred_files if not (mask_dir / f).is_file()]
        if nomask:
            raise EvaluationError(f"no evaluation mask for {nomask[:5]} in {mask_dir} (same names as references)")
    not_predicted = sorted(f.name[:-len(ending)] for f in ref_dir.iterdir()
                           if f.name.endswith(ending) and f.name not in pred_files)

    example = str(ref_dir / pred_files[0])
    rw = (determine_reader_writer_from_dataset_json(dj, example, verbose=False) if dj
          else determine_reader_writer_from_file_ending(ending, example, verbose=False))()

    if dj is not None:
        names, items, ignore = _labels_from_dataset_json(dj)
    else:
        values = set()
        for f in pred_files:
            values |= set(np.unique(rw.read_seg(str(ref_dir / f))[0]).tolist())
        items = sorted(int(v) for v in values if v != 0)
        names, ignore = [str(v) for v in items], None

    case_groups = read_groups(groups, group_column)
    records = []
    for f in tqdm(pred_files, desc="evaluate", unit="case", disable=not progress):
        case = f[:-len(ending)]
        ref, props = rw.read_seg(str(ref_dir / f))
        pred, _ = rw.read_seg(str(pred_dir / f))
        if ref.shape != pred.shape:
            raise EvaluationError(f"case {case}: prediction shape {pred.shape[1:]} != reference {ref.shape[1:]}")
        ref, spacing = _squeeze(ref, props.get("spacing"))
        pred, _ = _squeeze(pred, props.get("spacing"))
        if mask_dir is not None:
            m, _ = rw.read_seg(str(mask_dir / f))
            m, _ = _squeeze(m, None)
            if m.shape != ref.shape:
                raise EvaluationError(f"case {case}: mask shape {m.shape} != reference {ref.shape}")
            ref = np.where(m > 0, ref, 0)
            pred = np.where(m > 0, pred, 0)
        rec = {"case": case}
        if case_groups is not None:
            rec["group"] = case_groups.get(case)
        lm = label_metrics(ref, pred, items, ignore, spacing, compute_hd95=compute_hd95)
        dices = []
        for name, item in zip(names, items):
            rec[f"Dice_{name}"] = lm[item]["Dice"]
            rec[f"HD95_{name}"] = lm[item].get("HD95")
            rec[f"n_ref_{name}"] = lm[item]["n_ref"]
            rec[f"n_pred_{name}"] = lm[item]["n_pred"]
            dices.append(lm[item]["Dice"])
        rec["Dice_mean"] = _mean(dices)
        if lesion:
            valid = ref != ignore if ignore is not None else np.ones(ref.shape, bool)
            fg_ref, fg_pred = (ref > 0) & valid, (pred > 0) & valid
            if ignore is not None:
                fg_pred &= pred != ignore
            inter, tot = int(np.sum(fg_ref & fg_pred)), int(fg_ref.sum() + fg_pred.sum())
            rec["Dice_lesion"] = 2 * inter / tot if tot else math.nan
            rec.update(lesion_metrics(fg_ref, fg_pred, min_lesion_size, lesion_overlap))
        records.append(rec)

    if case_groups is not None:
        ungrouped = [r["case"] for r in records if r["group"] is None]
        if ungrouped:
            raise EvaluationError(f"cases {ungrouped[:5]} are not in the groups file ({len(ungrouped)} in total)")

    result = aggregate(records, names, lesion)
    result.update({"pred_dir": str(pred_dir), "ref_dir": str(ref_dir), "file_ending": ending,
                   "labels": dict(zip(names, [list(i) if isinstance(i, tuple) else i for i in items])),
                   "ignore_label": ignore, "mask_dir": str(mask_dir) if mask_dir else None,
                   "not_predicted": not_predicted,
                   "options": {"min_lesion_size": min_lesion_size, "lesion_overlap": lesion_overlap,
                               "connectivity": "full"} if lesion else {},
                   "per_case": records})
    if case_groups is not None:
        order = sorted({r["group"] for r in records})
        result["groups"] = {g: aggregate([r for r in records if r["group"] == g], names, lesion) for g in order}
        result["groups"]["average"] = aggregate(records, names, lesion)
    if write:
        out = Path(out_dir) if out_dir is not None else pred_dir
        out.mkdir(parents=True, exist_ok=True)
        write_outputs(result, out)
    return result


# ---- outputs --------------------------------------------------------------------------------------

def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def write_outputs(result: dict, out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(_json_safe(result), indent=2))
    records = result["per_case"]
    cols: List[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    with open(out / "per_case.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def summary_table(result: dict) -> str:
    """Paper-style table: one row per group (or one row ``all``), Dice per label, mean Dice, HD95."""
    names = list(result["per_label"])
    blocks = result.get("groups") or {"all": result}
    lesion = "lesion" in result
    header = ["group", "n"] + [f"Dice {n}" for n in names] + (["Dice mean"] if len(names) > 1 else []) + \
             [f"HD95 {n}" for n in names]
    if lesion:
        header += ["L-TPR", "L-PPV", "L-F1", "FP/case", "empty-ref"]
    rows = []
    for g, agg in blocks.items():
        row = [g, str(agg["n_cases"])] + [_fmt(agg["per_label"][n]["Dice"]) for n in names]
        if len(names) > 1:
            row.append(_fmt(agg["foreground_mean"]["Dice"]))
        row += [_fmt(agg["per_label"][n]["HD95"], 2) for n in names]
        if lesion:
            les = agg["lesion"]
            row += [_fmt(les["lesion_TPR"]), _fmt(les["lesion_PPV"]), _fmt(les["lesion_F1"]),
                    _fmt(les["false_pos_mean"], 2),
                    f"{les['empty_reference']['n_cases']} (FP {les['empty_reference']['false_pos']})"]
        rows.append(row)
    return format_table(rows, header)
