"""``nnunet-rc demo``: the synthetic single-source domain-generalization benchmark, end to end.

Steps (each a tqdm step; nnU-Net's own output goes to ``OUT/logs/<step>.log``):

1. write the synthetic 2D vessel benchmark (:mod:`nnunet_rc.synthetic`) to ``OUT/nnUNet_raw``:
   source dataset (train + in-domain test) and the target domains ``inverted``, ``texture``, ``blur``;
2. ``nnUNetv2_plan_and_preprocess -c 2d`` on the source;
3. ``nnUNetv2_train SOURCE 2d 0 -tr T -device cpu`` (fold 0 of a ``splits_final.json`` that keeps
   ~10% of the source training cases, at most 4, for nnU-Net's validation) for each trainer (baseline, RandConv, RAS4DG)
   with a short schedule set through ``NNUNET_RC_EPOCHS`` / ``NNUNET_RC_ITERATIONS`` /
   ``NNUNET_RC_VAL_ITERATIONS``;
4. one ``nnUNetv2_predict`` per trainer on a folder holding the source test set and every target's
   test set (linked as ``<domain>__<case>_0000.png``; one call instead of one per domain saves the
   model-loading start-up), split back per domain;
5. :func:`nnunet_rc.evaluation.evaluate_folder` per trainer and domain; a trainer x domain Dice table
   (in-domain column, each target, mean over targets, difference to the baseline) printed and written
   to ``OUT/results.csv`` / ``OUT/results.json``, and ``OUT/examples.png`` (image, ground truth and
   each trainer's prediction for one test case per domain).

The subprocesses get ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` inside ``OUT`` and
``nnUNet_extTrainer`` = :func:`nnunet_rc.trainer_path` (prepended), so no variables need to be set.
An existing ``OUT`` made by a previous demo (it holds ``.nnunet_rc_demo``) is replaced; any other
non-empty folder is refused.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["DEFAULT_TRAINERS", "SCHEDULES", "DemoError", "DemoConfig", "run_demo", "format_table"]

DEFAULT_TRAINERS = ("nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv", "nnUNetTrainerRAS4DG")
BASELINE = "nnUNetTrainerDGBaseline"
#: name -> (epochs, training iterations per epoch, validation iterations per epoch, training cases)
SCHEDULES = {
    "default": (8, 30, 2, 40),
    "quick": (1, 3, 1, 12),
}
MARKER = ".nnunet_rc_demo"


class DemoError(RuntimeError):
    """A step failed: the message names the command and its log file."""


@dataclass
class DemoConfig:
    out: Path = Path("demo_output")
    trainers: Sequence[str] = DEFAULT_TRAINERS
    schedule: str = "default"
    epochs: Optional[int] = None
    iterations: Optional[int] = None
    val_iterations: Optional[int] = None
    num_train: Optional[int] = None
    num_test: int = 10
    seed: int = 0
    dataset_id: int = 970
    device: str = "cpu"
    timings: Dict[str, float] = field(default_factory=dict)

    def resolved_schedule(self):
        e, i, v, n = SCHEDULES[self.schedule]
        return (self.epochs or e, self.iterations or i, self.val_iterations or v, self.num_train or n)


def _bin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def _env(cfg: DemoConfig) -> dict:
    from nnunet_rc import trainer_path

    out = cfg.out.resolve()
    epochs, iterations, val_iterations, _ = cfg.resolved_schedule()
    env = dict(os.environ)
    ext = env.get("nnUNet_extTrainer", "")
    env.update({
        "nnUNet_raw": str(out / "nnUNet_raw"),
        "nnUNet_preprocessed": str(out / "nnUNet_preprocessed"),
        "nnUNet_results": str(out / "nnUNet_results"),
        "nnUNet_extTrainer": trainer_path() + (os.pathsep + ext if ext else ""),
        "NNUNET_RC_EPOCHS": str(epochs),
        "NNUNET_RC_ITERATIONS": str(iterations),
        "NNUNET_RC_VAL_ITERATIONS": str(val_iterations),
        "nnUNet_compile": "f",
    })
    # small images on few cores: no data-augmentation worker processes in training (the planner needs
    # a positive value: see the plan step), at most 2 export processes
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("nnUNet_def_n_proc", "2")
    return env


def _run(cmd: List[str], log: Path, env: dict) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-25:])
        raise DemoError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                        f"full output: {log}\n--- last lines ---\n{tail}")


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise DemoError(f"{out} exists and is not a folder")
        if any(out.iterdir()):
            if not (out / MARKER).exists():
                raise DemoError(f"{out} is not empty and was not made by `nnunet-rc demo`; choose another --out")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by nnunet-rc demo; replaced by the next demo run into this folder\n")


def _write_split(preprocessed: Path, num_train: int) -> None:
    """Fold 0 of ``splits_final.json``: train on all but the last ~10% of the cases (at least 1, at
    most 4), validate on those. nnU-Net's final validation predicts every validation case one at a
    time, which dominates a short CPU run with its default 5-fold split or fold ``all``."""
    cases = [f"train{i:03d}" for i in range(num_train)]
    n_val = min(4, max(1, num_train // 10)) if num_train > 1 else 0
    split = {"train": cases[:num_train - n_val] or cases, "val": cases[num_train - n_val:] or cases}
    (preprocessed / "splits_final.json").write_text(json.dumps([split], indent=1))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def format_table(rows: List[dict], domains: Sequence[str], targets: Sequence[str]) -> str:
    """Plain-text table of ``rows`` (from :func:`run_demo`): Dice per domain, mean over targets, delta."""
    headers = ["trainer"] + [f"{d} (in-domain)" if d == "source" else d for d in domains] + \
              ["target mean", "d target vs baseline", "d in-domain vs baseline"]
    body = []
    for r in rows:
        body.append([r["trainer"]] + [f"{r['dice'][d]:.3f}" for d in domains] +
                    [f"{r['target_mean']:.3f}", f"{r['delta_target_mean']:+.3f}", f"{r['delta_in_domain']:+.3f}"])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])


def _examples_png(path: Path, bench, pred_dirs: Dict[str, Dict[str, Path]], domains, trainers, case: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    short = {t: t.replace("nnUNetTrainer", "") or t for t in trainers}
    cols = ["image", "ground truth"] + [short[t] for t in trainers]
    fig, axes = plt.subplots(len(domains), len(cols), figsize=(1.9 * len(cols), 1.9 * len(domains)), squeeze=False)
    for r, d in enumerate(domains):
        folder = bench.folders[d]
        panels = [np.asarray(Image.open(folder / "imagesTs" / f"{case}_0000.png")),
                  np.asarray(Image.open(folder / "labelsTs" / f"{case}.png"))]
        panels += [np.asarray(Image.open(pred_dirs[t][d] / f"{case}.png")) for t in trainers]
        for c, arr in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(arr, cmap="gray", vmin=0, vmax=255 if c == 0 else 1, interpolation="nearest")
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(d, fontsize=8)
    fig.suptitle(f"synthetic vessels, test case {case}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(cfg: DemoConfig) -> dict:
    """Run the whole benchmark (see module docstring); returns the results dict also written as JSON."""
    from tqdm import tqdm

    from nnunet_rc.evaluation import evaluate_folder
    from nnunet_rc.synthetic import TARGET_DOMAINS, write_benchmark

    trainers = list(cfg.trainers)
    if not trainers:
        raise DemoError("no trainer given")
    out = cfg.out.resolve()
    cfg.out = out
    epochs, iterations, val_iterations, num_train = cfg.resolved_schedule()
    _prepare_out(out)
    env = _env(cfg)
    logs = out / "logs"
    domains = ["source", *TARGET_DOMAINS]
    did = cfg.dataset_id
    steps = ["generate", "plan_and_preprocess"] + [f"train {t}" for t in trainers] + \
            [f"predict {t}" for t in trainers] + ["evaluate"]
    bar = tqdm(steps, desc="nnunet-rc demo", unit="step")
    t_all = time.perf_counter()

    def step(name):
        bar.set_postfix_str(name)
        return time.perf_counter()

    # 1. data
    t0 = step("generate")
    bench = write_benchmark(out / "nnUNet_raw", dim=2, seed=cfg.seed, id_base=did, num_train=num_train,
                            num_test=cfg.num_test, progress=False)
    cfg.timings["generate"] = time.perf_counter() - t0
    bar.update()

    # 2. plan + preprocess
    t0 = step("plan_and_preprocess")
    _run([_bin("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "2", "-npfp", "2"],
         logs / "01_plan_and_preprocess.log", {**env, "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "2")})
    _write_split(out / "nnUNet_preprocessed" / bench.source_folder.name, num_train)
    cfg.timings["plan_and_preprocess"] = time.perf_counter() - t0
    bar.update()

    # 3. train
    for k, t in enumerate(trainers):
        t0 = step(f"train {t}")
        _run([_bin("nnUNetv2_train"), str(did), "2d", "0", "-tr", t, "-device", cfg.device],
             logs / f"02_train_{t}.log", env)
        cfg.timings[f"train {t}"] = time.perf_counter() - t0
        bar.update()

    # 4. predict: one call per trainer over all domains' test sets
    pred_in = out / "predict_input"
    pred_in.mkdir()
    for d in domains:
        for f in sorted((bench.folders[d] / "imagesTs").glob("*_0000.png")):
            _link_or_copy(f, pred_in / f"{d}__{f.name}")
    pred_dirs: Dict[str, Dict[str, Path]] = {}
    for t in trainers:
        t0 = step(f"predict {t}")
        raw_out = out / "predictions" / t / "_all"
        _run([_bin("nnUNetv2_predict"), "-i", str(pred_in), "-o", str(raw_out), "-d", str(did), "-c", "2d",
              "-f", "0", "-tr", t, "-device", cfg.device, "-npp", "1", "-nps", "1"],
             logs / f"03_predict_{t}.log", env)
        pred_dirs[t] = {}
        for d in domains:
            dst = out / "predictions" / t / d
            dst.mkdir(parents=True)
            for f in sorted(raw_out.glob(f"{d}__*.png")):
                os.replace(f, dst / f.name.split("__", 1)[1])
            pred_dirs[t][d] = dst
        shutil.rmtree(raw_out)
        cfg.timings[f"predict {t}"] = time.perf_counter() - t0
        bar.update()

    # 5. evaluate
    t0 = step("evaluate")
    dice: Dict[str, Dict[str, float]] = {}
    for t in trainers:
        dice[t] = {}
        for d in domains:
            res = evaluate_folder(pred_dirs[t][d], bench.folders[d] / "labelsTs",
                                  dataset_json=bench.folders[d] / "dataset.json",
                                  out_dir=out / "evaluation" / t / d, compute_hd95=False, progress=False)
            dice[t][d] = float(res["foreground_mean"]["Dice"])
    cfg.timings["evaluate"] = time.perf_counter() - t0
    bar.update()
    bar.close()

    base = dice.get(BASELINE)
    rows = []
    for t in trainers:
        tm = sum(dice[t][d] for d in TARGET_DOMAINS) / len(TARGET_DOMAINS)
        btm = sum(base[d] for d in TARGET_DOMAINS) / len(TARGET_DOMAINS) if base else float("nan")
        rows.append({"trainer": t, "dice": dice[t], "target_mean": tm,
                     "delta_target_mean": tm - btm,
                     "delta_in_domain": dice[t]["source"] - (base["source"] if base else float("nan"))})
    _examples_png(out / "examples.png", bench, pred_dirs, domains, trainers, case="test000")
    cfg.timings["total"] = time.perf_counter() - t_all

    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainer", *domains, "target_mean", "delta_target_mean_vs_baseline", "delta_in_domain_vs_baseline"])
        for r in rows:
            w.writerow([r["trainer"], *(f"{r['dice'][d]:.4f}" for d in domains), f"{r['target_mean']:.4f}",
                        f"{r['delta_target_mean']:.4f}", f"{r['delta_in_domain']:.4f}"])
    results = {
        "metric": "Dice (foreground mean over test cases)", "in_domain": "source", "targets": list(TARGET_DOMAINS),
        "rows": rows, "schedule": {"epochs": epochs, "iterations_per_epoch": iterations,
                                   "val_iterations_per_epoch": val_iterations, "num_train": num_train,
                                   "num_test_per_domain": cfg.num_test, "name": cfg.schedule},
        "seed": cfg.seed, "device": cfg.device, "dataset_id": did,
        "timings_s": {k: round(v, 1) for k, v in cfg.timings.items()},
        "table": format_table(rows, domains, TARGET_DOMAINS),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
