"""``nnunet-rc preview``: a PNG grid showing what each batch augmentation does to one case.

Rows are augmentations (default: every one in :data:`nnunet_rc.augment.AUGMENTATIONS`), columns the
original and ``n`` draws. A case comes from an nnU-Net raw dataset (``imagesTr``/``imagesTs`` files
``<case>_XXXX<ending>``, z-scored per channel over the whole image here) or from a preprocessed one (already normalized by
nnU-Net, read with nnU-Net's own dataset class). 3D cases show their middle slice along the first
array axis; the augmentations are applied to that 2D slice (all channels), with ``p = 1``.
All draws of a row come from one batched call (the image repeated ``n`` times) with a generator
seeded by ``seed``, so a grid is reproducible.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["resolve_dataset", "load_raw_case", "load_preprocessed_case", "load_case", "augment_draws",
           "render_grid", "preview"]


class PreviewError(ValueError):
    """Bad input for the preview (unknown dataset, case or augmentation)."""


def resolve_dataset(dataset: str) -> Tuple[Path, str]:
    """Return ``(folder, kind)`` for a dataset id or folder; ``kind`` is ``"raw"`` or ``"preprocessed"``.

    An id (e.g. ``901``) is looked up as ``Dataset901_*`` in ``$nnUNet_raw`` first, then in
    ``$nnUNet_preprocessed``.
    """
    path = Path(dataset).expanduser()
    if path.is_dir():
        return path, _kind(path)
    if not re.fullmatch(r"\d+", str(dataset)):
        raise PreviewError(f"dataset {dataset!r} is neither an existing folder nor a dataset id")
    prefix = f"Dataset{int(dataset):03d}_"
    tried = []
    for var in ("nnUNet_raw", "nnUNet_preprocessed"):
        root = os.environ.get(var)
        if not root:
            tried.append(f"${var} (not set)")
            continue
        tried.append(f"${var}={root}")
        if os.path.isdir(root):
            hits = sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name.startswith(prefix))
            if hits:
                return hits[0], _kind(hits[0])
    raise PreviewError(f"dataset {dataset}: no folder {prefix}* in {', '.join(tried)}")


def _kind(folder: Path) -> str:
    if (folder / "imagesTr").is_dir() or (folder / "imagesTs").is_dir():
        return "raw"
    if any(folder.glob("*Plans*.json")):
        return "preprocessed"
    raise PreviewError(f"{folder}: neither a raw nnU-Net dataset (imagesTr/) nor a preprocessed one (*Plans*.json)")


def _zscore(image: np.ndarray) -> np.ndarray:
    """Per-channel z-score of ``(C, ...)``; a constant channel becomes 0."""
    image = image.astype(np.float32)
    axes = tuple(range(1, image.ndim))
    mean = image.mean(axis=axes, keepdims=True)
    std = image.std(axis=axes, keepdims=True)
    return np.where(std > 0, (image - mean) / np.maximum(std, 1e-8), 0.0).astype(np.float32)


def load_raw_case(folder: Path, case: Optional[str] = None) -> Tuple[str, np.ndarray]:
    """Read ``case`` (default: the first of ``imagesTr``) of a raw dataset as a z-scored ``(C, H, W)``
    array (middle slice of a 3D image)."""
    folder = Path(folder)
    meta_file = folder / "dataset.json"
    if not meta_file.is_file():
        raise PreviewError(f"{folder}: dataset.json not found")
    meta = json.loads(meta_file.read_text())
    ending = meta.get("file_ending", ".png")
    n_channels = len(meta.get("channel_names", meta.get("modality", {"0": ""})))
    if case is None:
        files = sorted((folder / "imagesTr").glob(f"*_0000{ending}"))
        if not files:
            raise PreviewError(f"{folder / 'imagesTr'}: no *_0000{ending} image")
        case = files[0].name[: -len(f"_0000{ending}")]
    channels = []
    for c in range(n_channels):
        candidates = [folder / sub / f"{case}_{c:04d}{ending}" for sub in ("imagesTr", "imagesTs")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise PreviewError(f"case {case!r}: none of {', '.join(map(str, candidates))} exists")
        channels.append(_read_image(found))
    shapes = {a.shape for a in channels}
    if len(shapes) != 1:
        raise PreviewError(f"case {case!r}: channels differ in shape {sorted(shapes)}")
    image = _zscore(np.stack(channels))  # statistics of the whole image, as nnU-Net's ZScoreNormalization
    if image.ndim == 4:
        image = image[:, image.shape[1] // 2]
    return case, image


def _read_image(path: Path) -> np.ndarray:
    name = path.name.lower()
    if name.endswith((".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")):
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    from PIL import Image

    arr = np.asarray(Image.open(path), dtype=np.float32)
    if arr.ndim == 3:  # RGB(A) stored in one file: average to grey
        arr = arr[..., :3].mean(-1)
    return arr


def load_preprocessed_case(folder: Path, case: Optional[str] = None,
                           configuration: Optional[str] = None) -> Tuple[str, np.ndarray]:
    """Read ``case`` of a preprocessed dataset (``<plans>_<configuration>`` sub-folder, default the
    first of ``2d``, ``3d_fullres``, ``3d_lowres`` present) as ``(C, H, W)`` (middle slice)."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = Path(folder)
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    if configuration is not None:
        chosen = [p for p in subs if p.name.endswith(f"_{configuration}")]
    else:
        chosen = []
        for cfg in ("2d", "3d_fullres", "3d_lowres"):
            chosen = [p for p in subs if p.name.endswith(f"_{cfg}")]
            if chosen:
                break
    if not chosen:
        raise PreviewError(f"{folder}: no preprocessed data folder"
                           + (f" for configuration {configuration!r}" if configuration else "")
                           + f" (found {[p.name for p in subs]})")
    data_folder = str(chosen[0])
    dataset = infer_dataset_class(data_folder)(data_folder)
    if case is None:
        if not dataset.identifiers:
            raise PreviewError(f"{data_folder}: no preprocessed case")
        case = dataset.identifiers[0]
    elif case not in dataset.identifiers:
        raise PreviewError(f"case {case!r} not in {data_folder} (has {dataset.identifiers[:5]}...)")
    data = np.asarray(dataset.load_case(case)[0][:], dtype=np.float32)  # (C, Z, Y, X); Z = 1 for 2D
    return case, data[:, data.shape[1] // 2]


def load_case(dataset: str, case: Optional[str] = None, configuration: Optional[str] = None):
    """``(case, image (C, H, W) float32, folder)`` for a dataset id/folder, raw or preprocessed."""
    folder, kind = resolve_dataset(dataset)
    if kind == "raw":
        case, image = load_raw_case(folder, case)
    else:
        case, image = load_preprocessed_case(folder, case, configuration)
    return case, image, folder


def augment_draws(image: np.ndarray, names: Sequence[str], n: int = 4, seed: int = 0) -> dict:
    """``{name: (n, C, H, W) array}``: ``n`` draws of every augmentation (``p = 1``) of ``image``."""
    import torch

    from nnunet_rc.augment import AUGMENTATIONS

    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise PreviewError(f"unknown augmentation(s) {unknown}; registered: {sorted(AUGMENTATIONS)}")
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].repeat(n, 1, 1, 1)
    out = {}
    for name in names:
        generator = torch.Generator().manual_seed(int(seed))
        out[name] = AUGMENTATIONS[name](p=1.0)(x, generator=generator).numpy()
    return out


def draw_scores(image: np.ndarray, draws: dict) -> dict:
    """``{name: (n,) array}``: the structure score of every draw against ``image`` (see
    :mod:`nnunet_rc.augment.structure`; ``< COLLAPSE_THRESHOLD`` = collapsed)."""
    import torch

    from nnunet_rc.augment.structure import structure_score

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return {name: structure_score(x.repeat(d.shape[0], *([1] * image.ndim)), torch.from_numpy(d)).numpy()
            for name, d in draws.items()}


def render_grid(image: np.ndarray, draws: dict, out: Path, channel: int = 0, title: str = "",
                scores: Optional[dict] = None) -> Path:
    """Write the grid PNG: one row per augmentation, original then draws, shared grey scale; with
    ``scores`` each draw is captioned with its structure score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(draws))
    n = max((d.shape[0] for d in draws.values()), default=0)
    lo, hi = np.percentile(image[channel], [1, 99])
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    fig, axes = plt.subplots(rows, n + 1, figsize=(2 * (n + 1), 2 * rows + 0.4), squeeze=False)
    for r, (name, d) in enumerate(draws.items() or [("original", np.zeros((0,) + image.shape))]):
        axes[r, 0].imshow(image[channel], cmap="gray", vmin=lo, vmax=hi)
        axes[r, 0].set_ylabel(name)
        for j in range(n):
            if j < d.shape[0]:
                axes[r, j + 1].imshow(d[j, channel], cmap="gray", vmin=lo, vmax=hi)
                if scores is not None:
                    axes[r, j + 1].set_xlabel(f"structure {scores[name][j]:.2f}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("original")
    for j in range(n):
        axes[0, j + 1].set_title(f"draw {j + 1}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def preview(dataset: str, out: Path, case: Optional[str] = None, names: Optional[List[str]] = None, n: int = 4,
            seed: int = 0, configuration: Optional[str] = None, channel: int = 0) -> Path:
    """Load a case, draw ``n`` versions per augmentation and write the grid PNG to ``out``."""
    from nnunet_rc.augment import AUGMENTATIONS

    if n < 1:
        raise PreviewError(f"-n must be >= 1, got {n}")
    case, image, folder = load_case(dataset, case, configuration)
    if not 0 <= channel < image.shape[0]:
        raise PreviewError(f"--channel {channel}: case {case!r} has {image.shape[0]} channel(s)")
    names = list(names) if names else sorted(AUGMENTATIONS)
    draws = augment_draws(image, names, n=n, seed=seed)
    scores = draw_scores(image, draws)
    from nnunet_rc.augment.structure import COLLAPSE_THRESHOLD

    print(f"structure score per draw (edge-map correlation with the original, [-1, 1]; "
          f"< {COLLAPSE_THRESHOLD} = collapsed):")
    for name, sc in scores.items():
        flag = "  COLLAPSED: " + str(int((sc < COLLAPSE_THRESHOLD).sum())) if (sc < COLLAPSE_THRESHOLD).any() else ""
        print(f"  {name:<26} " + " ".join(f"{v:5.2f}" for v in sc) + flag)
    return render_grid(image, draws, out, channel=channel, title=f"{folder.name} / {case} (channel {channel}, seed {seed})",
                       scores=scores)
