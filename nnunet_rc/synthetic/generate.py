"""Synthetic single-source domain-shift benchmark (numpy/scipy only).

One **source** domain dataset (``imagesTr``/``labelsTr`` plus an in-domain test set
``imagesTs``/``labelsTs``) and several **target** domain datasets (``imagesTs``/``labelsTs`` only). The
target test sets use exactly the label maps of the source test set (same seed -> same geometry); only
the appearance differs, the way a different scanner or camera changes it: contrast inversion,
non-linear intensity curves, other texture / noise, blur, bias field. All domains share the channel
name, file ending and label ids, so a model trained on the source predicts every target directly.

2D (default): vessel-like branching trees resembling retinal vessels, grey single-channel PNG,
labels 0 background / 1 vessel. Domains (intensities in [0, 1] before 8-bit quantisation):

* ``source`` (fundus-like): bright background with a smooth illumination field and a bright
  optic-disc spot at the tree root; vessels dark (contrast -0.32); Gaussian noise (sd 0.025).
* ``inverted`` (angiography-like): dark background, vessels bright (+0.5), darker disc,
  multiplicative bias field ``exp(0.35 * smooth)``, gamma 0.7, signal-dependent noise.
* ``texture`` (other camera): darker exposure, vessel contrast lower (-0.16), granular band-pass
  background texture (sd ~0.045, comparable to the vessel contrast), vessel blur sigma 0.7 px, s-shaped
  tone curve, multiplicative speckle (sd 0.08).
* ``blur`` (low-resolution, over-exposed scanner): Gaussian blur sigma 1.0 px of the whole image,
  bright background (0.85), contrast -0.22, linear bias ramp, gamma 1.6, noise sd 0.02.

3D (``dim=3``): blob "lesions" (label 1) in the white matter of a brain-like ellipsoid phantom
(skull, CSF, grey matter, white matter, ventricles), NIfTI, spacing 1 mm. Domains: ``source``
T1-like (WM bright, lesions dark), ``inverted`` T2-like (CSF and lesions bright), ``texture``
(PD-like low contrast with textured tissue and Rician-like noise), ``blur`` (thick-slice blur and bias field).

Determinism: the label map of training case ``i`` comes from ``SeedSequence([seed, 0, i])``, of test
case ``i`` from ``[seed, 1, i]``; the appearance noise of domain ``d`` for a case from
``[seed, 2, d, split, i]``. Decision where the spec is silent: the source test set and every target
share the same test label maps, so target-vs-in-domain differences are due to appearance only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

__all__ = [
    "DOMAINS", "TARGET_DOMAINS", "SyntheticBenchmark", "vessel_tree", "brain_phantom", "render",
    "make_case", "appearance_rng", "write_benchmark", "dataset_name",
]

DOMAINS = ("source", "inverted", "texture", "blur")
TARGET_DOMAINS = DOMAINS[1:]
_DOMAIN_INDEX = {d: i for i, d in enumerate(DOMAINS)}


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _smooth_field(shape, rng, sigma: float) -> np.ndarray:
    """Smooth random field, zero mean, max |value| = 1."""
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    f -= f.mean()
    return f / (np.abs(f).max() + 1e-8)


def _bandpass(shape, rng, s1: float, s2: float) -> np.ndarray:
    """Granular texture: difference of Gaussians of white noise, unit standard deviation."""
    n = rng.normal(size=shape)
    t = ndimage.gaussian_filter(n, s1, mode="wrap") - ndimage.gaussian_filter(n, s2, mode="wrap")
    return t / (t.std() + 1e-8)


# ---- geometry ----------------------------------------------------------------------------------------

def _segment_distance(yy, xx, p0, p1) -> np.ndarray:
    d = np.subtract(p1, p0)
    L2 = float(d @ d) + 1e-12
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / L2, 0.0, 1.0)
    return np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))


def vessel_tree(size: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float]]:
    """Branching vessel tree on a ``size x size`` grid.

    Returns ``(label, soft, root)``: ``label`` uint8 {0, 1} (pixel centre within half the local width of
    a segment's centre line), ``soft`` float32 in [0, 1] (anti-aliased vessel profile used for rendering)
    and the (row, col) of the root (where the optic disc is drawn). Two trees grow from a root near the
    left or right border; each segment (length ~size/6) turns by up to 25 degrees and splits in two
    (angles 20-45 degrees, widths x0.75) until the width falls below 1.2 px (root width ~size/22).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    soft = np.zeros((size, size), np.float32)
    side = rng.integers(2)
    root = (size * rng.uniform(0.35, 0.65), size * (0.12 if side == 0 else 0.88))
    base_angle = 0.0 if side == 0 else np.pi
    w0 = max(2.0, size / 22.0)
    seg_len = size / 6.0
    stack = []
    for k in (-1, 1):
        stack.append((root, base_angle + k * rng.uniform(0.5, 1.0), w0, 0))
    count = 0
    while stack and count < 400:
        p, ang, w, depth = stack.pop()
        n_steps = int(rng.integers(2, 4))
        for _ in range(n_steps):
            ang += rng.uniform(-0.45, 0.45)
            q = (p[0] + seg_len * np.sin(ang), p[1] + seg_len * np.cos(ang))
            d = _segment_distance(yy, xx, p, q)
            soft = np.maximum(soft, np.clip(w / 2.0 + 0.5 - d, 0.0, 1.0))
            count += 1
            p = q
            if not (-seg_len < p[0] < size + seg_len and -seg_len < p[1] < size + seg_len):
                break
        else:
            if w * 0.75 >= 1.2 and depth < 6:
                for k in (-1, 1):
                    stack.append((p, ang + k * rng.uniform(0.35, 0.8), w * rng.uniform(0.7, 0.8), depth + 1))
    label = (soft >= 0.5).astype(np.uint8)
    return label, soft, root


def brain_phantom(size, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain-like phantom on a ``size^3`` grid (or a grid of shape ``size`` = ``(Z, Y, X)``; the ellipsoid
    then stretches with it) with 2-5 blob lesions in the white matter.

    Returns ``(label, tissue, lesion_soft)``: ``label`` uint8 {0, 1} (lesions), ``tissue`` int8 with
    0 air, 1 skull, 2 CSF, 3 grey matter, 4 white matter, 5 ventricles, and the soft lesion map.
    Lesion radii and the wobble's smoothness scale with the shortest side.
    """
    shape = _grid_shape(size, 3)
    side = min(shape)
    g = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float32)
    g = g / (np.array(shape, np.float32) - 1).reshape(3, 1, 1, 1) * 2 - 1
    c = rng.uniform(-0.05, 0.05, 3)
    radii = np.array([0.8, 0.88, 0.75]) * rng.uniform(0.92, 1.05, 3)
    r = np.sqrt(sum(((g[i] - c[i]) / radii[i]) ** 2 for i in range(3)))
    wobble = 0.04 * _smooth_field(shape, rng, side / 8)
    r = r + wobble
    tissue = np.zeros(shape, np.int8)
    tissue[r < 1.0] = 1
    tissue[r < 0.9] = 2
    tissue[r < 0.84] = 3
    tissue[r < 0.66] = 4
    vent = np.sqrt(((g[0] - c[0]) / 0.12) ** 2 + ((g[1] - c[1]) / 0.3) ** 2 + ((np.abs(g[2] - c[2]) - 0.14) / 0.08) ** 2)
    tissue[vent < 1] = 5
    soft = np.zeros(shape, np.float32)
    wm = np.argwhere(tissue == 4)
    for _ in range(int(rng.integers(2, 6))):
        center = wm[rng.integers(len(wm))]
        rad = rng.uniform(0.05, 0.1) * side
        d = np.sqrt(sum((np.arange(shape[i])[tuple(slice(None) if j == i else None for j in range(3))]
                         - center[i]) ** 2 for i in range(3)))
        soft = np.maximum(soft, np.clip(rad + 0.5 - d, 0, 1))
    soft *= (tissue == 4) | (tissue == 3)
    label = (soft >= 0.5).astype(np.uint8)
    return label, tissue, soft


def _grid_shape(size, dim: int) -> tuple:
    """``size`` (an int: a square/cube, or ``dim`` ints) as a shape tuple; every side >= 8."""
    shape = (int(size),) * dim if np.isscalar(size) else tuple(int(n) for n in size)
    if len(shape) != dim or min(shape) < 8:
        raise ValueError(f"size must be one int or {dim} ints, each >= 8, got {size}")
    return shape


# ---- appearance ----------------------------------------------------------------------------------------

def _disc(shape, root, radius) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((yy - root[0]) ** 2 + (xx - root[1]) ** 2) / (2 * radius ** 2))


def _render_2d(domain: str, soft: np.ndarray, root, rng: np.random.Generator) -> np.ndarray:
    shape = soft.shape
    size = shape[0]
    illum = _smooth_field(shape, rng, size / 6)
    disc = _disc(shape, root, size / 14)
    if domain == "source":
        img = 0.62 + 0.05 * illum + 0.25 * disc - 0.32 * soft
        img = img + rng.normal(0, 0.025, shape)
    elif domain == "inverted":
        img = 0.2 + 0.04 * illum - 0.1 * disc + 0.5 * soft
        img = np.clip(img, 0, 1) * np.exp(0.35 * _smooth_field(shape, rng, size / 4))
        img = np.clip(img, 0, 1) ** 0.7
        img = img + rng.normal(0, 1, shape) * 0.04 * np.sqrt(np.clip(img, 0, 1))
    elif domain == "texture":
        v = ndimage.gaussian_filter(soft, 0.7)
        img = 0.34 + 0.03 * illum + 0.12 * disc - 0.16 * v + 0.045 * _bandpass(shape, rng, 0.7, 2.0)
        img = 0.5 + 0.5 * np.tanh(3.0 * (img - 0.3))  # s-shaped tone curve
        img = img * (1 + 0.08 * rng.normal(size=shape))
        img = img * 0.7
    elif domain == "blur":
        ramp = np.linspace(-1, 1, size)[None, :] * rng.choice([-1, 1])
        img = 0.85 + 0.04 * illum + 0.1 * disc - 0.22 * soft
        img = ndimage.gaussian_filter(img, 1.0) * (1 + 0.08 * ramp)
        img = np.clip(img, 0, 1) ** 1.6
        img = img + rng.normal(0, 0.02, shape)
        img = 1 - 0.6 * (1 - img)  # over-exposure: compress towards white
    else:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    return np.clip(img, 0, 1).astype(np.float32)


_TISSUE = {  # air, skull, CSF, GM, WM, ventricles, lesion
    "source": (0.0, 0.3, 0.15, 0.5, 0.75, 0.15, 0.35),    # T1-like
    "inverted": (0.0, 0.15, 0.9, 0.55, 0.35, 0.9, 0.8),   # T2-like
    "texture": (0.0, 0.25, 0.55, 0.62, 0.55, 0.55, 0.68),  # PD-like, low contrast
    "blur": (0.0, 0.35, 0.2, 0.45, 0.65, 0.2, 0.4),
}


def _render_3d(domain: str, tissue: np.ndarray, soft: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if domain not in _TISSUE:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    values = np.array(_TISSUE[domain][:6], np.float32)
    img = values[tissue]
    img = img * (1 - soft) + _TISSUE[domain][6] * soft * (tissue > 0)
    shape = img.shape
    if domain == "source":
        img = img + rng.normal(0, 0.02, shape)
    elif domain == "inverted":
        img = img * np.exp(0.25 * _smooth_field(shape, rng, shape[0] / 3)) + rng.normal(0, 0.03, shape)
    elif domain == "texture":
        img = img + 0.05 * _bandpass(shape, rng, 0.7, 2.0) * (tissue > 1)
        img = np.hypot(img + rng.normal(0, 0.04, shape), rng.normal(0, 0.04, shape))  # Rician-like
    elif domain == "blur":
        img = ndimage.gaussian_filter(img, (1.5, 0.5, 0.5)) * np.exp(0.3 * _smooth_field(shape, rng, shape[0] / 3))
        img = img + rng.normal(0, 0.02, shape)
    return np.clip(img, 0, 1).astype(np.float32)


def render(domain: str, geometry: dict, rng: np.random.Generator) -> np.ndarray:
    """Image in [0, 1] (float32) of ``geometry`` (from :func:`make_case`) as seen in ``domain``."""
    if geometry["dim"] == 2:
        return _render_2d(domain, geometry["soft"], geometry["root"], rng)
    return _render_3d(domain, geometry["tissue"], geometry["soft"], rng)


def make_case(seed: int, split: str, index: int, dim: int = 2, size: int = 64) -> dict:
    """Geometry of one case: ``{"dim", "label", "soft", ...}``; deterministic in (seed, split, index)."""
    rng = _rng(seed, 0 if split == "Tr" else 1, index)
    if dim == 2:
        label, soft, root = vessel_tree(size, rng)
        return {"dim": 2, "label": label, "soft": soft, "root": root}
    if dim == 3:
        label, tissue, soft = brain_phantom(size, rng)
        return {"dim": 3, "label": label, "tissue": tissue, "soft": soft}
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def appearance_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    return _rng(seed, 2, _DOMAIN_INDEX[domain], 0 if split == "Tr" else 1, index)


def dataset_name(domain: str, dim: int = 2) -> str:
    base = "SynthVessel" if dim == 2 else "SynthBrain"
    return f"{base}{domain.capitalize()}"


@dataclass
class SyntheticBenchmark:
    """What :func:`write_benchmark` wrote: dataset folders by domain and the source dataset id."""
    raw: Path
    dim: int
    source_id: int
    folders: Dict[str, Path]
    target_ids: Dict[str, int]

    @property
    def source_folder(self) -> Path:
        return self.folders["source"]


def write_benchmark(out_root, dim: int = 2, seed: int = 0, id_base: int = 970, num_train: int = 40,
                    num_test: int = 10, size=None, targets=TARGET_DOMAINS,
                    overwrite: bool = False, progress: bool = True, spacing=1.0) -> SyntheticBenchmark:
    """Write the source dataset (id ``id_base``) and one dataset per target domain (``id_base + k``).

    ``size``: image side (default 64 in 2D, 32 in 3D); in 3D also a shape ``(Z, Y, X)`` (array order),
    e.g. ``(155, 190, 135)`` for volumes the size of the fetal brain atlases. ``spacing`` (3D only): voxel
    spacing in mm, one value or ``(Z, Y, X)`` (default 1.0; the atlases' is 0.8); it changes only the
    files' header, so nnU-Net's planner sees the physical size. Returns a :class:`SyntheticBenchmark`.
    """
    from PIL import Image
    import SimpleITK as sitk

    from nnunet_rc.dataset_conversion.writer import Case, CaseData, DatasetSpec, write_dataset

    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    size = size or (64 if dim == 2 else 32)
    if dim == 2 and not np.isscalar(size):
        raise ValueError(f"size in 2D is one int (the square's side), got {size}")
    shape = _grid_shape(size, dim)
    sp = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(v) for v in spacing)
    if len(sp) != 3 or min(sp) <= 0:
        raise ValueError(f"spacing must be one positive number or 3 (Z, Y, X), got {spacing}")
    if dim == 2 and sp != (1.0, 1.0, 1.0):
        raise ValueError("spacing is for 3D (2D PNGs carry no spacing)")
    if num_train < 1 or num_test < 1:
        raise ValueError("num_train and num_test must be >= 1")
    unknown = [t for t in targets if t not in TARGET_DOMAINS]
    if unknown or not targets:
        raise ValueError(f"targets {list(targets)}: expected a non-empty subset of {TARGET_DOMAINS}")
    out_root = Path(out_root)
    ending = ".png" if dim == 2 else ".nii.gz"

    def to_image(arr: np.ndarray, is_label: bool):
        if dim == 2:
            data = arr.astype(np.uint8) if is_label else np.round(arr * 255).astype(np.uint8)
            return Image.fromarray(data, mode="L")
        im = sitk.GetImageFromArray(arr.astype(np.uint8) if is_label else arr.astype(np.float32))
        im.SetSpacing(sp[::-1])  # SimpleITK's order is (X, Y, Z)
        return im

    def loader(domain: str, split: str, index: int) -> Callable[[], CaseData]:
        def load() -> CaseData:
            geo = make_case(seed, split, index, dim, size)
            img = render(domain, geo, appearance_rng(seed, domain, split, index))
            return CaseData(images=[to_image(img, False)], label=to_image(geo["label"], True),
                            metadata={"domain": domain, "seed": seed, "index": index,
                                      "foreground_fraction": round(float(geo["label"].mean()), 5)})
        return load

    folders, ids = {}, {}
    for k, domain in enumerate(("source",) + tuple(targets)):
        did = id_base + k
        splits = (("Tr", num_train), ("Ts", num_test)) if domain == "source" else (("Ts", num_test),)
        cases = [Case(f"{'train' if split == 'Tr' else 'test'}{i:03d}", split, loader(domain, split, i), source=f"seed {seed}")
                 for split, n in splits for i in range(n)]
        spec = DatasetSpec(
            dataset_id=did, name=dataset_name(domain, dim), channel_names={"0": "intensity"},
            labels={"background": 0, "vessel" if dim == 2 else "lesion": 1}, file_ending=ending,
            description=f"nnunet_rc synthetic {'2D vessel' if dim == 2 else '3D brain-lesion'} benchmark, "
                        f"domain '{domain}', seed {seed}",
            license="CC0 (synthetic)", extra_json={"nnunet_rc_synthetic": {
                "domain": domain, "seed": seed, "size": size if np.isscalar(size) else list(shape), "dim": dim,
                **({"spacing": list(sp)} if dim == 3 else {})}})
        report = write_dataset(spec, cases, out_root, overwrite=overwrite, progress=progress)
        folders[domain] = report.path
        ids[domain] = did
    return SyntheticBenchmark(raw=out_root, dim=dim, source_id=id_base, folders=folders,
                              target_ids={d: ids[d] for d in targets})
