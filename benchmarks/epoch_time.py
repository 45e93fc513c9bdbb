"""Time per epoch of every trainer against nnU-Net's default trainer, through the real ``nnUNetv2_train``.

For each dimension (2D: synthetic vessel images, ``--size2d`` px; 3D: the synthetic phantom,
``--size3d`` voxels, so nnU-Net plans a 3d_fullres-like patch) the script writes a small source dataset
with the project's generator, runs ``nnUNetv2_plan_and_preprocess`` once, then trains the baseline
``nnUNetTrainerDGBaseline`` first and every other trainer on the same preprocessed data and device,
for ``--epochs`` × ``--iterations`` (the ``NNUNET_RC_*`` schedule variables), with nnU-Net's defaults
otherwise (on CUDA: ``torch.compile``, autocast + grad scaler). It reads nnU-Net's own
``Epoch time: X s`` lines from each training log, drops the first epoch (compilation, warm-up), and
prints per trainer: the median epoch time, its ratio to the baseline's **measured in the same run**, the
peak GPU memory (``torch.cuda.max_memory_allocated`` of the training process, recorded by a thin
wrapper around nnU-Net's ``run_training_entry``) and its ratio, and the number of dynamo
recompilations (``TORCH_LOGS=recompiles``). Output: a terminal table, ``--csv`` and ``--json``.

    python benchmarks/epoch_time.py --device cpu --dims 2 --size2d 64 --epochs 2 --iterations 2 \\
        --trainers nnUNetTrainerDGBaseline,nnUNetTrainerRandConv                 # tiny CPU smoke run
    python benchmarks/epoch_time.py --device cuda --out /tmp/epoch_time          # a GPU: 512² and 128³
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

DEFAULT_TRAINERS = ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv", "nnUNetTrainerProRandConv",
                    "nnUNetTrainerProRandConvDeform", "nnUNetTrainerGIN", "nnUNetTrainerRASS",
                    "nnUNetTrainerRMS", "nnUNetTrainerRAS4DG", "nnUNetTrainerRSD", "nnUNetTrainerRandConvCL"]
BASELINE = "nnUNetTrainerDGBaseline"
_EPOCH_TIME = re.compile(r"Epoch time: ([0-9]+(?:\.[0-9]+)?) s")


class EpochTimeError(RuntimeError):
    """A failing training or a log without enough epochs."""


def parse_epoch_times(log_text: str, skip_first: int = 1) -> List[float]:
    """Epoch times (s) from an nnU-Net training log, in order, without the first ``skip_first``."""
    times = [float(m.group(1)) for m in _EPOCH_TIME.finditer(log_text)]
    if len(times) <= skip_first:
        raise EpochTimeError(f"the training log has {len(times)} 'Epoch time' line(s); need more than "
                             f"{skip_first} (the first epoch includes compilation and warm-up)")
    return times[skip_first:]


def count_recompiles(stderr: str) -> int:
    """Dynamo recompilations logged with ``TORCH_LOGS=recompiles``."""
    return stderr.count("Recompiling function")


def ratios(rows: List[dict]) -> List[dict]:
    """Add ``time_ratio`` and ``mem_ratio`` against the baseline row of the same ``dim``."""
    base = {r["dim"]: r for r in rows if r["trainer"] == BASELINE}
    for r in rows:
        b = base.get(r["dim"])
        r["time_ratio"] = r["median_epoch_s"] / b["median_epoch_s"] if b and b["median_epoch_s"] > 0 else None
        r["mem_ratio"] = (r["peak_mem_gib"] / b["peak_mem_gib"]
                          if b and r["peak_mem_gib"] is not None and b["peak_mem_gib"] else None)
    return rows


def format_table(rows: List[dict], header: str) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [header, f"{'dim':<4} {'trainer':<34} {'median epoch s':>14} {'× baseline':>10} "
                     f"{'peak GPU GiB':>12} {'mem ×':>6} {'recompiles':>10} {'epochs':>6}"]
    for r in rows:
        lines.append(f"{r['dim']:<4} {r['trainer']:<34} {r['median_epoch_s']:>14.3f} {f(r['time_ratio'], '.3f'):>10} "
                     f"{f(r['peak_mem_gib'], '.2f'):>12} {f(r['mem_ratio'], '.2f'):>6} {r['recompiles']:>10} "
                     f"{r['epochs_measured']:>6}")
    return "\n".join(lines)


# ---- running -------------------------------------------------------------------------------------------

def _train_wrapper(mem_file: str, argv: List[str]) -> None:
    """Run nnU-Net's own ``nnUNetv2_train`` entry point in this process and record the peak GPU memory."""
    import atexit

    import torch

    on_cuda = "-device" not in argv or argv[argv.index("-device") + 1] == "cuda"  # nnU-Net's default: cuda

    def record():
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if on_cuda and torch.cuda.is_available() else None
        Path(mem_file).write_text(json.dumps({"peak_mem_gib": peak}))

    atexit.register(record)
    from nnunetv2.run.run_training import run_training_entry

    sys.argv = ["nnUNetv2_train", *argv]
    run_training_entry()


def _env(work: Path, schedule: Dict[str, int]) -> dict:
    from nnunet_rc import trainer_path

    env = {**os.environ, "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
           "nnUNet_results": str(work / "results"), "nnUNet_extTrainer": trainer_path(),
           "NNUNET_RC_EPOCHS": str(schedule["epochs"]), "NNUNET_RC_ITERATIONS": str(schedule["iterations"]),
           "NNUNET_RC_VAL_ITERATIONS": str(schedule["val_iterations"]), "TORCH_LOGS": "recompiles"}
    return env


def nnunet_command(script: str, *args) -> List[str]:
    """The nnU-Net console command ``script`` (e.g. ``nnUNetv2_train``) run by this interpreter through its
    entry point: works where the wheels were installed with ``pip --target`` and no script is on PATH."""
    code = ("import sys; from importlib.metadata import entry_points; "
            "(ep,) = entry_points(group='console_scripts', name=sys.argv[1]); sys.argv = sys.argv[1:]; "
            "sys.exit(ep.load()())")
    return [sys.executable, "-c", code, script, *map(str, args)]


def _run(cmd: List[str], env: dict, log: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    if proc.returncode != 0:
        raise EpochTimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return proc


def prepare_dataset(work: Path, dim: int, size: int, cases: int, dataset_id: int, n_proc: int) -> str:
    """Write the synthetic source dataset and plan + preprocess it (reused when already there)."""
    from nnunet_rc.synthetic.generate import write_benchmark

    config = "2d" if dim == 2 else "3d_fullres"
    marker = work / "preprocessed" / f".ready_{dataset_id}_{config}_{size}"
    if marker.exists():
        return config
    for k in ("raw", "preprocessed", "results", "logs"):
        (work / k).mkdir(parents=True, exist_ok=True)
    write_benchmark(work / "raw", dim=dim, id_base=dataset_id, num_train=cases, num_test=1, size=size,
                    targets=("blur",), overwrite=True, progress=False)
    _run(nnunet_command("nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", config, "-np", n_proc,
                        "-npfp", n_proc),
         _env(work, {"epochs": 1, "iterations": 1, "val_iterations": 1}), work / "logs" / f"plan_{dataset_id}.log")
    marker.touch()
    return config


def time_trainer(work: Path, dataset_id: int, config: str, trainer: str, device: str, schedule: Dict[str, int],
                 dim: int) -> dict:
    """Train ``trainer`` once (fold ``all``, fresh output folder) and read its epoch times."""
    import shutil

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    env = _env(work, schedule)
    os.environ.update({k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    name = maybe_convert_to_dataset_name(dataset_id)
    out = work / "results" / name / f"{trainer}__nnUNetPlans__{config}" / "fold_all"
    shutil.rmtree(out, ignore_errors=True)
    mem_file = work / "logs" / f"mem_{dim}d_{trainer}.json"
    log = work / "logs" / f"train_{dim}d_{trainer}.log"
    proc = _run([sys.executable, str(Path(__file__).resolve()), "_train", str(mem_file), "--",
                 str(dataset_id), config, "all", "-tr", trainer, "-device", device], env, log)
    logs = sorted(out.glob("training_log_*.txt"))
    if not logs:
        raise EpochTimeError(f"{trainer}: no training log in {out}; see {log}")
    try:
        times = parse_epoch_times(logs[-1].read_text())
    except EpochTimeError as e:
        raise EpochTimeError(f"{trainer}: {e} ({logs[-1]})") from None
    mem = json.loads(mem_file.read_text())["peak_mem_gib"] if mem_file.exists() else None
    return {"dim": f"{dim}d", "trainer": trainer, "median_epoch_s": statistics.median(times),
            "epochs_measured": len(times), "epoch_times_s": times, "peak_mem_gib": mem,
            "recompiles": count_recompiles(proc.stderr)}


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_train"]:  # internal: one training through nnU-Net's entry point
        _train_wrapper(argv[1], argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainers", default=",".join(DEFAULT_TRAINERS), help="comma-separated; the baseline is added")
    ap.add_argument("--dims", default="2,3")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per training (the first is not measured)")
    ap.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    ap.add_argument("--val-iterations", type=int, default=2)
    ap.add_argument("--size2d", type=int, default=None, help="2D image side (default 512 on cuda, 64 on cpu)")
    ap.add_argument("--size3d", type=int, default=None, help="3D volume side (default 128 on cuda, 32 on cpu)")
    ap.add_argument("--cases", type=int, default=4, help="training cases of each synthetic dataset")
    ap.add_argument("--processes", type=int, default=2, help="-np/-npfp for nnUNetv2_plan_and_preprocess")
    ap.add_argument("--out", default="epoch_time_out", help="work folder (nnUNet_raw/preprocessed/results, logs)")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is not measured)")
    from tqdm import tqdm

    trainers = [t for t in args.trainers.split(",") if t]
    trainers = [BASELINE] + [t for t in trainers if t != BASELINE]
    dims = [int(d) for d in args.dims.split(",")]
    size = {2: args.size2d or (512 if args.device == "cuda" else 64),
            3: args.size3d or (128 if args.device == "cuda" else 32)}
    schedule = {"epochs": args.epochs, "iterations": args.iterations, "val_iterations": args.val_iterations}
    work = Path(args.out).resolve()
    rows = []
    with tqdm(total=len(dims) * len(trainers), desc="trainings") as bar:
        for dim in dims:
            dataset_id = 980 + dim
            config = prepare_dataset(work, dim, size[dim], args.cases, dataset_id, args.processes)
            for trainer in trainers:
                bar.set_postfix_str(f"{dim}d {trainer}")
                rows.append(time_trainer(work, dataset_id, config, trainer, args.device, schedule, dim))
                with open(work / "logs" / "rows.jsonl", "a") as f:  # partial results survive an interruption
                    f.write(json.dumps(rows[-1]) + "\n")
                bar.update()
    ratios(rows)
    header = (f"epoch time vs {BASELINE}, one run on {device_name(args.device)}; 2d {size[2]}², 3d {size[3]}³, "
              f"{args.cases} cases; {args.epochs} epochs × {args.iterations} iterations, first epoch dropped")
    print(format_table(rows, header))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "epoch_times_s"], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
