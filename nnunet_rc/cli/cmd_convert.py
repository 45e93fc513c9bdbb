"""``nnunet-rc convert NAME SRC --id N``: public dataset, as downloaded, to an nnU-Net raw dataset."""
from __future__ import annotations

import os
from pathlib import Path

COMMAND = "convert"
HELP = "convert a downloaded public dataset (folder or zip) to an nnU-Net raw dataset"


def add_arguments(parser) -> None:
    from nnunet_rc.dataset_conversion import CONVERTERS

    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    for name, conv in sorted(CONVERTERS.items()):
        p = sub.add_parser(name, help=conv.help, description=conv.help,
                           epilog=f"example: {conv.example}" if conv.example else None)
        p.add_argument("src", type=Path, help="the downloaded folder (after unzipping) or the .zip itself")
        p.add_argument("--id", type=int, required=True, help="nnU-Net dataset id (1..999)")
        p.add_argument("--name", default=None, help="dataset name (default: the converter's)")
        p.add_argument("--out", type=Path, default=None, help="raw folder to write into (default: $nnUNet_raw)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_* with this id")
        conv.add_arguments(p)
        p.set_defaults(_converter=conv)


def run(args) -> int:
    from nnunet_rc.dataset_conversion.writer import ConversionError

    if args.out is None:
        raw = os.environ.get("nnUNet_raw")
        if not raw:
            print("error: pass --out or set nnUNet_raw")
            return 2
        args.out = Path(raw)
    try:
        report = args._converter.run(args)
    except ConversionError as e:
        print(f"error: {e}")
        return 1
    print(report.summary())
    return 0
