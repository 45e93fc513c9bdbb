"""``nnunet-rc demo``: train and compare the DG trainers on the synthetic domain-shift benchmark (CPU)."""
from __future__ import annotations

from pathlib import Path

COMMAND = "demo"
HELP = "run the synthetic domain-shift benchmark end to end (generate, preprocess, train, predict, evaluate)"


def add_arguments(parser) -> None:
    from nnunet_rc.demo import DEFAULT_TRAINERS

    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="output folder (default ./demo_output; a previous demo's folder is replaced)")
    parser.add_argument("--quick", action="store_true", help="a much shorter schedule (smoke test, numbers meaningless)")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS),
                        help=f"trainers to compare (default: {' '.join(DEFAULT_TRAINERS)})")
    parser.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs")
    parser.add_argument("--iterations", type=int, default=None, help="override training iterations per epoch")
    parser.add_argument("--num-train", type=int, default=None, help="override the number of source training cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    parser.add_argument("--id", type=int, default=970, help="dataset id of the source (default 970)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="device (default cpu)")


def run(args) -> int:
    import time

    from nnunet_rc.demo import DemoConfig, DemoError, run_demo

    cfg = DemoConfig(out=args.out, trainers=args.trainers, schedule="quick" if args.quick else "default",
                     epochs=args.epochs, iterations=args.iterations, num_train=args.num_train, seed=args.seed,
                     dataset_id=args.id, device=args.device)
    t0 = time.perf_counter()
    try:
        results = run_demo(cfg)
    except DemoError as e:
        print(f"error: {e}")
        return 1
    print()
    print(results["table"])
    print(f"\nDice on the test sets; 'target mean' averages the shifted domains {', '.join(results['targets'])}.")
    print(f"Total {time.perf_counter() - t0:.0f} s. Results in {cfg.out}: results.csv, results.json, "
          f"examples.png, logs/")
    return 0
