"""How visible the labelled structure stays under each augmentation, per plan (resolution): a label-aware check.

The structure score (:mod:`nnunet_rc.augment.structure`) correlates whole edge maps, which on a fundus
photograph are dominated by the field-of-view border and the optic disc; it barely moves when thin vessels
vanish. This script asks the label instead. For each training case of a preprocessed plan (nnU-Net's own
files: its resampling, normalization and cropping) it takes the plan's patch size from the image centre
(zero-padded where the image is smaller, as nnU-Net's loader pads), and measures

    visibility = max over channels of 2·|AUC - 0.5|

where AUC is the probability that a foreground pixel is brighter than a background pixel of the ring
around the foreground (background within ``--ring-mm`` of it, inside the image): 1 = the structure is
perfectly separable by intensity alone, 0 = not at all (contrast inversion keeps it). Each of ``--draws``
augmented versions (``p = 1``, default parameters, seed ``--seed``) is scored relative to the unaugmented
patch: ``relative = visibility(draw) / visibility(input)``. Reported per plan and augmentation: median
and 10th percentile of ``relative``, the share of draws that lost more than half of it (``lost``), and
the median structure score; per plan also RASS's ``sigma`` averaged over the foreground's spectrum.

With ``--per-kernel-size`` RandConv gets one more row per kernel size of its default set (``RandConv k=3``:
the same augmentation with ``kernel_sizes=(3,)``, depth still drawn from 1-4), to see which sizes lose the
structure: RandConv's default draws a size uniformly per sample, so its own row pools them.

Comparing a coarse plan with the native one (``-p nnUNetPlans_cpu nnUNetPlans``, both preprocessed for
``-c``) shows whether an augmentation hits the structure harder at the plan's resolution: its parameters
(kernel sizes in voxels, RASS's frequency schedule in cycles per patch) are defined on the voxel grid.

    python benchmarks/vessel_visibility.py -d 110 -c 2d -p nnUNetPlans_cpu nnUNetPlans --draws 25 --csv vis.csv
    python benchmarks/vessel_visibility.py -d 110 -c 2d -p nnUNetPlans_cpu -a RandConv --per-kernel-size
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import mannwhitneyu
from tqdm import tqdm

DEFAULT_AUGMENTATIONS = ("RandConv", "ProgressiveRandConv", "GIN", "RASS", "RMS")


def visibility(image: np.ndarray, fg: np.ndarray, ring: np.ndarray) -> float:
    """``max_c 2|AUC_c - 0.5|`` of ``image`` ``(C, *S)``: foreground ``fg`` against background ``ring``."""
    best = 0.0
    for channel in image:
        u = mannwhitneyu(channel[fg], channel[ring], method="asymptotic").statistic
        best = max(best, 2 * abs(u / (fg.sum() * ring.sum()) - 0.5))
    return float(best)


def load_patches(dataset: str, configuration: str, plans: str, cases: int, ring_mm: float) -> dict:
    """``{"patch", "spacing", "ring_px", "items"}`` of one plan; each item is a dict with ``case``, ``image``
    ``(C, *patch)``, the masks ``fg`` and ``ring`` and ``visibility`` (of the unaugmented patch)."""
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    pre = Path(os.environ["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(dataset)
    plan = json.loads((pre / f"{plans}.json").read_text())
    cfg = plan["configurations"][configuration]
    folder = pre / cfg["data_identifier"]
    if not folder.is_dir():
        raise SystemExit(f"{folder} does not exist: run nnUNetv2_preprocess -d {dataset} -plans_name {plans} "
                         f"-c {configuration} first")
    ds = infer_dataset_class(str(folder))(str(folder))
    patch = [int(v) for v in cfg["patch_size"]]
    spacing = [float(v) for v in cfg["spacing"]]
    ring_px = max(1, int(round(ring_mm / min(spacing))))
    items = []
    for case in sorted(ds.identifiers)[:cases]:
        data, seg, _, _ = ds.load_case(case)
        # the central patch, cropped and padded as nnU-Net's data loader does (image 0, label -1)
        bbox = []
        for n, p in zip(data.shape[-len(patch):], patch):
            lo = (n - p) // 2 if n >= p else -((p - n) // 2)
            bbox.append([lo, lo + p])
        img = crop_and_pad_nd(data, bbox, 0).astype(np.float32)
        lab = crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)[0]
        if configuration == "2d":
            img, lab = img[:, 0], lab[0]  # 2D cases are stored as (C, 1, X, Y)
        fg = lab > 0
        if not fg.any():
            continue
        ring = ndimage.binary_dilation(fg, iterations=ring_px) & (lab == 0)  # padding (-1) is neither
        items.append({"case": case, "image": img, "fg": fg, "ring": ring, "visibility": visibility(img, fg, ring)})
    if not items:
        raise SystemExit(f"{folder}: no case with foreground in its central patch")
    return {"patch": patch, "spacing": spacing, "ring_px": ring_px, "items": items}


def rass_sigma_on_foreground(patches: dict) -> tuple:
    """RASS's default ``sigma`` (Eq. 2) averaged over the amplitude spectrum of the foreground mask, weighted by
    its power, and the share of that power where ``sigma > 2``: how hard RASS hits the labelled structure at
    this plan's resolution and patch (``sigma`` is defined per cycle per patch, not per millimetre)."""
    from nnunet_rc.augment.rass import rass_sigma_grid

    sigma = rass_sigma_grid(patches["patch"]).numpy()
    means, shares = [], []
    for item in patches["items"]:
        f = item["fg"].astype(np.float32)
        power = np.abs(np.fft.rfftn(f - f.mean())) ** 2
        w = power / power.sum()
        means.append(float((w * sigma).sum()))
        shares.append(float((w * (sigma > 2)).sum()))
    return float(np.mean(means)), float(np.mean(shares))


def augmentation_rows(names: Sequence[str], per_kernel_size: bool, ndim: int) -> List[tuple]:
    """``(label, name, kwargs)`` per row of the table: each of ``names`` with its defaults and, with
    ``per_kernel_size``, RandConv once more per kernel size of its default set for ``ndim`` spatial axes."""
    from nnunet_rc.augment.randconv import DEFAULT_KERNEL_SIZES

    rows = []
    for name in names:
        rows.append((name, name, {}))
        if per_kernel_size and name == "RandConv":
            rows += [(f"RandConv k={k}", name, {"kernel_sizes": (k,)}) for k in DEFAULT_KERNEL_SIZES[ndim]]
    return rows


def measure(patches: dict, augmentations: Sequence[tuple], draws: int, seed: int) -> List[dict]:
    """One row per ``(label, name, kwargs)`` of :func:`augmentation_rows`; every row starts from the same
    ``seed``."""
    from nnunet_rc.augment import AUGMENTATIONS
    from nnunet_rc.augment.structure import structure_score

    rows = []
    for label, name, kwargs in tqdm(augmentations, desc="augmentations", leave=False):
        aug = AUGMENTATIONS[name](p=1.0, **kwargs)
        generator = torch.Generator().manual_seed(seed)
        rel, scores = [], []
        for item in patches["items"]:
            img = item["image"]
            x = torch.from_numpy(img)[None].repeat(draws, *([1] * img.ndim))
            y = aug(x, generator=generator)
            scores.append(structure_score(x, y).numpy())
            rel += [visibility(d, item["fg"], item["ring"]) / max(item["visibility"], 1e-6) for d in y.numpy()]
        rel = np.asarray(rel)
        rows.append({"augmentation": label, "median_relative": float(np.median(rel)),
                     "p10_relative": float(np.quantile(rel, 0.1)), "lost_share": float((rel < 0.5).mean()),
                     "median_structure_score": float(np.median(np.concatenate(scores)))})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-d", "--dataset", required=True)
    ap.add_argument("-c", "--configuration", default="2d")
    ap.add_argument("-p", "--plans", nargs="+", default=["nnUNetPlans"])
    ap.add_argument("-a", "--augmentations", default=",".join(DEFAULT_AUGMENTATIONS))
    ap.add_argument("--per-kernel-size", action="store_true",
                    help="add one RandConv row per kernel size of its default set")
    ap.add_argument("--cases", type=int, default=4, help="training cases (sorted ids; default 4)")
    ap.add_argument("--draws", type=int, default=25, help="draws per case and augmentation (default 25)")
    ap.add_argument("--ring-mm", type=float, default=0.2,
                    help="width of the background ring around the foreground, in mm (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: List[Dict] = []
    for plans in args.plans:
        patches = load_patches(args.dataset, args.configuration, plans, args.cases, args.ring_mm)
        base = np.mean([item["visibility"] for item in patches["items"]])
        sigma_fg, share_fg = rass_sigma_on_foreground(patches)
        print(f"\n{plans} {args.configuration}: patch {patches['patch']}, spacing "
              f"{[round(s, 4) for s in patches['spacing']]}, ring {patches['ring_px']} px, "
              f"{len(patches['items'])} cases, visibility without augmentation {base:.3f}; RASS sigma on the "
              f"foreground's spectrum {sigma_fg:.2f} ({100 * share_fg:.0f} % of its power where sigma > 2)")
        specs = augmentation_rows(args.augmentations.split(","), args.per_kernel_size, len(patches["patch"]))
        measured = measure(patches, specs, args.draws, args.seed)
        print(f"{'augmentation':<22} {'median':>7} {'p10':>6} {'lost':>6} {'structure':>9}")
        for r in measured:
            r = {"plans": plans, "base_visibility": float(base), "rass_sigma_foreground": sigma_fg, **r}
            rows.append(r)
            print(f"{r['augmentation']:<22} {r['median_relative']:>7.3f} {r['p10_relative']:>6.3f} "
                  f"{100 * r['lost_share']:>5.1f}% {r['median_structure_score']:>9.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
