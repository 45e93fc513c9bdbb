"""``nnunet-rc benchmark``: train, predict on every target, evaluate, compare trainers (resumable)."""
from __future__ import annotations

COMMAND = "benchmark"
HELP = "train/predict/evaluate trainers x targets from a JSON/TOML config and write a comparison table (resumes)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="benchmark config (.json or .toml), "
                                                        "see benchmarks/configs/retinal.json")
    parser.add_argument("--out", default=None, help="output folder (overrides the config's 'output')")
    parser.add_argument("--profile", choices=["full", "gpu-short", "cpu", "smoke"], default=None,
                        help="full (nnU-Net's schedule), gpu-short, cpu (coarse plan and narrow network trained to a "
                             "plateau on CPU) or smoke (coarse plan, a few iterations: pipeline check only)")
    parser.add_argument("--trainers", default=None, help="comma-separated trainers (replaces the config's list)")
    parser.add_argument("--targets", default=None, help="comma-separated target names (a subset of the config's)")
    parser.add_argument("--folds", type=int, default=None, help="number of folds (seeds) per trainer: folds 0..N-1")
    parser.add_argument("--grid", action="store_true", help="add the config's grid_trainers (RAS4DG Table 2 grid)")


def run(args) -> int:
    import sys

    from nnunet_rc.evaluation.benchmark import (BenchmarkError, apply_overrides, comparison_table, load_config,
                                                run_benchmark)
    from nnunet_rc.evaluation.evaluate import EvaluationError

    try:
        cfg = load_config(args.config)
        split = lambda v: [x for x in v.split(",") if x] if v else None
        cfg = apply_overrides(cfg, profile=args.profile, trainers=split(args.trainers), targets=split(args.targets),
                              folds=args.folds, grid=args.grid)
        if args.out:
            import os
            cfg["output"] = os.path.abspath(args.out)
        res = run_benchmark(cfg)
    except (BenchmarkError, EvaluationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    a = res["actions"]
    print(f"trained {len(a['trained'])} (skipped {len(a['train_skipped'])} already trained), "
          f"predicted {len(a['predicted'])} (skipped {len(a['predict_skipped'])} complete)")
    print(comparison_table(res["comparison"]))
    out = res["plan"]["output"]
    print(f"wrote {out}/comparison.csv, comparison.json, comparison.png, comparison_<target>.png; logs in {out}/logs")
    return 0
