"""``nnunet-rc evaluate``: Dice/HD95 (+ lesion detection) of a prediction folder, per group, as a table."""
from __future__ import annotations

COMMAND = "evaluate"
HELP = "evaluate nnUNetv2_predict output: Dice/HD95 per label, per group, optional lesion detection"


def add_arguments(parser) -> None:
    parser.add_argument("--pred", required=True, help="folder with predictions (<case><ending>)")
    parser.add_argument("--ref", required=True, help="folder with reference labels (same file names)")
    parser.add_argument("--dataset-json", default=None,
                        help="dataset.json giving labels/regions/ignore label and file ending "
                             "(default: <ref>/../dataset.json if present, else labels found in the references)")
    parser.add_argument("--groups", default=None, help="CSV/TSV with a case column (case/case_id/participant_id) "
                                                       "and a group column; results per group + average")
    parser.add_argument("--group-column", default=None, help="name of the group column (default: group)")
    parser.add_argument("--mask", default=None, help="folder of evaluation masks (same names as references); "
                                                     "voxels outside are set to background in both")
    parser.add_argument("--lesion", action="store_true", help="lesion-wise detection (connected components, "
                                                              "full connectivity)")
    parser.add_argument("--min-lesion-size", type=int, default=0, help="drop components smaller than N voxels")
    parser.add_argument("--lesion-overlap", type=float, default=0.0,
                        help="a lesion counts as detected/true when the covered fraction is > this (default 0: any voxel)")
    parser.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster on large 3D images)")
    parser.add_argument("--out", default=None, help="output folder for summary.json/per_case.csv (default: --pred)")


def run(args) -> int:
    import sys
    from pathlib import Path

    from nnunet_rc.evaluation.evaluate import EvaluationError, evaluate_folder, summary_table

    try:
        result = evaluate_folder(args.pred, args.ref, dataset_json=args.dataset_json, mask_dir=args.mask,
                                 groups=args.groups, lesion=args.lesion, out_dir=args.out,
                                 min_lesion_size=args.min_lesion_size, lesion_overlap=args.lesion_overlap,
                                 group_column=args.group_column, compute_hd95=not args.no_hd95)
    except (EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary_table(result))
    if result["not_predicted"]:
        print(f"note: {len(result['not_predicted'])} reference case(s) have no prediction and were not evaluated: "
              f"{result['not_predicted'][:5]}")
    out = Path(args.out) if args.out else Path(args.pred)
    print(f"wrote {out / 'summary.json'} and {out / 'per_case.csv'}")
    return 0
