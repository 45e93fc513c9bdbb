"""``nnunet-rc preview``: PNG grid of what each batch augmentation does to one case."""
from __future__ import annotations

import sys

COMMAND = "preview"
HELP = "write a PNG grid: rows = augmentations, columns = original + N random draws of one case"


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", "-d", required=True,
                        help="dataset id (looked up in $nnUNet_raw, then $nnUNet_preprocessed) or folder")
    parser.add_argument("--case", default=None, help="case id (default: the first case)")
    parser.add_argument("--out", "-o", default="preview.png", help="output PNG (default: preview.png)")
    parser.add_argument("--augmentations", "-a", default=None,
                        help="comma-separated names, e.g. RandConv,GIN (default: every registered one)")
    parser.add_argument("-n", type=int, default=4, help="random draws per augmentation (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--configuration", "-c", default=None,
                        help="preprocessed configuration to read (default: 2d, else 3d_fullres)")
    parser.add_argument("--channel", type=int, default=0, help="channel shown (default: 0)")


def run(args) -> int:
    from nnunet_rc.preview import PreviewError, preview

    names = [s.strip() for s in args.augmentations.split(",") if s.strip()] if args.augmentations else None
    try:
        out = preview(args.dataset, args.out, case=args.case, names=names, n=args.n, seed=args.seed,
                      configuration=args.configuration, channel=args.channel)
    except PreviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
