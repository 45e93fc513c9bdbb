"""``nnunet-rc make-synthetic``: write the synthetic source + target domain datasets (nnU-Net raw)."""
from __future__ import annotations

import os
from pathlib import Path

COMMAND = "make-synthetic"
HELP = "write a synthetic single-source domain-shift benchmark (source + shifted target datasets)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="nnUNet_raw folder to write into (default: $nnUNet_raw)")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=2,
                        help="2: vessel trees, grey PNG (default); 3: lesions in a brain phantom, NIfTI")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--id-base", type=int, default=970,
                        help="dataset id of the source; targets get the following ids (default 970)")
    parser.add_argument("--num-train", type=int, default=40, help="source training cases (default 40)")
    parser.add_argument("--num-test", type=int, default=10, help="test cases per domain (default 10)")
    parser.add_argument("--size", type=int, nargs="+", default=None,
                        help="image side in pixels (default 64 in 2D, 32 in 3D); in 3D also three sides Z Y X, "
                             "e.g. 155 190 135 for volumes the size of the fetal brain atlases")
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.0],
                        help="3D only: voxel spacing in mm, one value or Z Y X (default 1.0; the fetal atlases' 0.8)")
    parser.add_argument("--targets", nargs="+", default=None,
                        help="target domains (default: inverted texture blur)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing datasets with the same ids")


def _one_or_three(values):
    return values if values is None or len(values) != 1 else values[0]


def run(args) -> int:
    from nnunet_rc.dataset_conversion.writer import ConversionError
    from nnunet_rc.synthetic import TARGET_DOMAINS, write_benchmark

    out = args.out or (Path(os.environ["nnUNet_raw"]) if os.environ.get("nnUNet_raw") else None)
    if out is None:
        print("error: pass --out RAW_DIR or set nnUNet_raw")
        return 2
    try:
        bench = write_benchmark(out, dim=args.dim, seed=args.seed, id_base=args.id_base, num_train=args.num_train,
                                num_test=args.num_test, size=_one_or_three(args.size),
                                targets=tuple(args.targets or TARGET_DOMAINS), overwrite=args.overwrite,
                                spacing=_one_or_three(args.spacing))
    except (ConversionError, ValueError) as e:
        print(f"error: {e}")
        return 1
    print(f"source dataset {bench.source_id}: {bench.source_folder}")
    for d, i in bench.target_ids.items():
        print(f"target '{d}' dataset {i}: {bench.folders[d]}")
    return 0
