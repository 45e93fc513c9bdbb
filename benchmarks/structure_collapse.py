"""How often each augmentation destroys the anatomy: collapse share and median structure score.

For every registered augmentation (``p = 1``, default parameters) draws ``--draws`` versions of test
images and scores each with :func:`nnunet_rc.augment.structure.structure_score` (edge-map correlation
with the input, ``[-1, 1]``); a draw under ``COLLAPSE_THRESHOLD`` (0.3) is *collapsed*. Test images
(from the project's synthetic generator, deterministic): a smooth 2D vessel image and the same with
pixel noise, each with 1 and 3 channels (3 = the image under three different tone curves, like an RGB
fundus photograph), and a 3D phantom (1 channel) at ``--size3d``. ``--image FILE`` adds a real 2D image
(e.g. a fundus photograph, read with PIL, RGB and its green channel).

    python benchmarks/structure_collapse.py --draws 200 --csv collapse.csv
"""
from __future__ import annotations

import argparse
import csv
from typing import Dict

import numpy as np
import torch
from tqdm import tqdm

from nnunet_rc.augment import AUGMENTATIONS
from nnunet_rc.augment.structure import COLLAPSE_THRESHOLD, collapse_share, structure_score


def _z(a: np.ndarray) -> np.ndarray:
    return ((a - a.mean()) / (a.std() + 1e-8)).astype(np.float32)


def test_images(size2d: int = 128, size3d: int = 48, image_file: str = None) -> Dict[str, torch.Tensor]:
    """``{name: (C, *S) float32 tensor}`` of the images described in the module docstring."""
    from nnunet_rc.synthetic.generate import appearance_rng, make_case, render

    rng = np.random.default_rng(0)
    geo2 = make_case(0, "Tr", 0, dim=2, size=size2d)
    smooth = render("source", geo2, appearance_rng(0, "source", "Tr", 0)).astype(np.float32)
    noisy = smooth + rng.normal(0, 0.3 * smooth.std(), smooth.shape).astype(np.float32)
    images = {}
    for name, im in (("2d smooth", smooth), ("2d noisy", noisy)):
        images[f"{name} 1ch"] = torch.from_numpy(_z(im))[None]
        rgb = np.stack([_z(im), _z(np.sqrt(im - im.min() + 1e-3)), _z(-(im - im.min()) ** 2)])
        images[f"{name} 3ch"] = torch.from_numpy(rgb)
    geo3 = make_case(0, "Tr", 0, dim=3, size=size3d)
    vol = render("source", geo3, appearance_rng(0, "source", "Tr", 0)).astype(np.float32)
    images["3d phantom 1ch"] = torch.from_numpy(_z(vol))[None]
    if image_file:
        from PIL import Image

        rgb = np.asarray(Image.open(image_file).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
        images["file 3ch"] = torch.from_numpy(np.stack([_z(c) for c in rgb]))
        images["file green 1ch"] = torch.from_numpy(_z(rgb[1]))[None]
    return images


def measure(names, images: Dict[str, torch.Tensor], draws: int, seed: int = 0, batch: int = 20) -> list:
    """Rows ``{augmentation, image, collapse_share, median_score, p10_score}``."""
    rows = []
    for aug_name in tqdm(names, desc="augmentations"):
        aug = AUGMENTATIONS[aug_name](p=1.0)
        for img_name, img in images.items():
            generator = torch.Generator().manual_seed(seed)
            scores = []
            for start in range(0, draws, batch):
                x = img[None].repeat(min(batch, draws - start), *([1] * img.ndim))
                scores.append(structure_score(x, aug(x, generator=generator)))
            s = torch.cat(scores)
            rows.append({"augmentation": aug_name, "image": img_name, "collapse_share": collapse_share(s),
                         "median_score": float(s.median()), "p10_score": float(s.quantile(0.1))})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--augmentations", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--size2d", type=int, default=128)
    ap.add_argument("--size3d", type=int, default=48)
    ap.add_argument("--image", default=None, help="an extra real 2D image (PNG/TIFF/JPEG)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    names = args.augmentations.split(",") if args.augmentations else sorted(AUGMENTATIONS)
    rows = measure(names, test_images(args.size2d, args.size3d, args.image), args.draws, args.seed)
    print(f"\n{args.draws} draws per image, p = 1, collapsed = structure score < {COLLAPSE_THRESHOLD}")
    print(f"{'augmentation':<22} {'image':<16} {'collapsed':>9} {'median':>7} {'p10':>6}")
    for r in rows:
        print(f"{r['augmentation']:<22} {r['image']:<16} {100 * r['collapse_share']:>8.1f}% "
              f"{r['median_score']:>7.3f} {r['p10_score']:>6.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
