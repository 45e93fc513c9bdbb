"""``nnunet-rc benchmark``: train, predict on every target, evaluate, compare trainers (resumable)."""
from __future__ import annotations

COMMAND = "benchmark"
HELP = "train/predict/evaluate trainers x targets from a JSON/TOML config and write a comparison table (resumes)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="benchmark config (.json or .toml), "
                                                        "see benchmarks/configs/example_benchmark.json")
    parser.add_argument("--out", default=None, help="output folder (overrides the config's 'output')")


def run(args) -> int:
    import sys

    from nnunet_rc.evaluation.benchmark import BenchmarkError, comparison_table, load_config, run_benchmark
    from nnunet_rc.evaluation.evaluate import EvaluationError

    try:
        cfg = load_config(args.config)
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
    print(f"wrote {out}/comparison.csv, comparison.json, comparison.png; logs in {out}/logs")
    return 0
