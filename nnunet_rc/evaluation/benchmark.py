"""``nnunet-rc benchmark``: train -> predict per target -> evaluate -> one trainers x targets table.

Config (JSON, or TOML via ``tomllib`` when the file ends in ``.toml``); relative paths are relative to
the config file::

    {
      "source": {"dataset": 901, "configuration": "2d", "plans": "nnUNetPlans",
                 "test": {"images": "...", "labels": "..."}},          # optional: in-domain column
      "trainers": ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv"],
      "folds": [0],
      "targets": [{"name": "siteB", "images": "...", "labels": "...", "groups": "...", "mask": "...",
                   "lesion": false, "min_lesion_size": 0},                # lesion options as in evaluate
                  {"name": "siteC", "dataset": 905, "split": "Ts"}],   # raw images<split>/labels<split>
      "schedule": {"epochs": 1, "iterations": 2, "val_iterations": 1}, # optional -> NNUNET_RC_* env vars
      "device": "cuda",                                                # cuda | cpu | mps
      "output": "benchmark_out",                                       # default: next to the config
      "results": null,                                                 # optional nnUNet_results override
      "metric": "Dice"                                                 # Dice | HD95
    }

Resuming: a fold with ``checkpoint_final.pth`` is trained; a prediction folder holding a file for
every input case is predicted; both are skipped. Evaluation always reruns (cheap). Every command's
stdout/stderr goes to ``<output>/logs/<step>.log``; a failing command raises :class:`BenchmarkError`
naming the command and the log. Outputs: ``comparison.csv`` / ``comparison.json`` / ``comparison.png``
(mean +- std over folds of the foreground-mean metric) and a terminal table. The column
``OOD mean`` averages the out-of-domain targets (not the in-domain test set).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

IN_DOMAIN_SUFFIX = " (in-domain)"


class BenchmarkError(RuntimeError):
    """Bad config or a failing nnU-Net command."""


def load_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"config file {path} does not exist")
    if path.suffix.lower() == ".toml":
        import tomllib
        cfg = tomllib.loads(path.read_text())
    else:
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path}: not valid JSON ({e})") from None
    cfg["_base"] = str(path.parent.resolve())
    return cfg


def _raw_dataset_folder(dataset) -> Path:
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        raise BenchmarkError("nnUNet_raw is not set (needed to find datasets by id)")
    if isinstance(dataset, str) and not dataset.isdigit():
        folder = Path(raw) / dataset
        if folder.is_dir():
            return folder
        raise BenchmarkError(f"dataset folder {folder} does not exist")
    hits = sorted(Path(raw).glob(f"Dataset{int(dataset):03d}_*"))
    if not hits:
        raise BenchmarkError(f"no Dataset{int(dataset):03d}_* in nnUNet_raw={raw}")
    return hits[0]


def resolve(cfg: dict) -> dict:
    """Validate ``cfg`` and fill defaults; returns a plan with absolute paths."""
    base = Path(cfg.get("_base", "."))
    p = lambda v: None if v is None else str((base / v).resolve()) if not os.path.isabs(str(v)) else str(v)
    try:
        src = cfg["source"]
        dataset = src["dataset"]
        configuration = src["configuration"]
        trainers = list(cfg["trainers"])
    except (KeyError, TypeError) as e:
        raise BenchmarkError(f"config needs source.dataset, source.configuration and trainers (missing {e})") from None
    if not trainers:
        raise BenchmarkError("config: 'trainers' is empty")
    src_raw = _raw_dataset_folder(dataset)
    dj = json.loads((src_raw / "dataset.json").read_text())
    ending = dj["file_ending"]
    targets = []
    raw_targets = list(cfg.get("targets", []))
    if src.get("test"):
        raw_targets.insert(0, {**src["test"], "name": src["test"].get("name", src_raw.name.split("_", 1)[-1])
                               + IN_DOMAIN_SUFFIX, "in_domain": True})
    for t in raw_targets:
        if "name" not in t:
            raise BenchmarkError(f"config: every target needs a 'name' ({t})")
        if "dataset" in t:
            folder = _raw_dataset_folder(t["dataset"])
            split = t.get("split", "Ts")
            images = p(t.get("images")) or str(folder / f"images{split}")
            labels = p(t.get("labels")) or str(folder / f"labels{split}")
            tdj = str(folder / "dataset.json") if (folder / "dataset.json").is_file() else None
        else:
            if "images" not in t or "labels" not in t:
                raise BenchmarkError(f"config: target {t['name']} needs 'images' and 'labels' (or 'dataset')")
            images, labels, tdj = p(t["images"]), p(t["labels"]), None
        for what, d in (("images", images), ("labels", labels)):
            if not Path(d).is_dir():
                raise BenchmarkError(f"target {t['name']}: {what} folder {d} does not exist")
        targets.append({"name": t["name"], "images": images, "labels": labels, "groups": p(t.get("groups")),
                        "mask": p(t.get("mask")), "dataset_json": p(t.get("dataset_json")) or tdj
                        or str(src_raw / "dataset.json"), "in_domain": bool(t.get("in_domain", False)),
                        "lesion": bool(t.get("lesion", False)), "min_lesion_size": int(t.get("min_lesion_size", 0)),
                        "lesion_overlap": float(t.get("lesion_overlap", 0.0))})
    if not targets:
        raise BenchmarkError("config: no targets (and no source.test)")
    names = [t["name"] for t in targets]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"config: target names must be unique, got {names}")
    schedule = cfg.get("schedule") or {}
    env = {}
    for key, var in (("epochs", "NNUNET_RC_EPOCHS"), ("iterations", "NNUNET_RC_ITERATIONS"),
                     ("val_iterations", "NNUNET_RC_VAL_ITERATIONS")):
        if schedule.get(key) is not None:
            env[var] = str(int(schedule[key]))
    results = p(cfg.get("results")) or os.environ.get("nnUNet_results")
    if not results:
        raise BenchmarkError("nnUNet_results is not set and the config has no 'results'")
    env["nnUNet_results"] = results
    if not os.environ.get("nnUNet_extTrainer"):
        from nnunet_rc import trainer_path
        env["nnUNet_extTrainer"] = trainer_path()
    metric = cfg.get("metric", "Dice")
    if metric not in ("Dice", "HD95"):
        raise BenchmarkError(f"config: metric must be Dice or HD95, got {metric}")
    return {"dataset": str(dataset), "dataset_name": src_raw.name, "configuration": configuration,
            "plans": src.get("plans", "nnUNetPlans"), "trainers": trainers,
            "folds": [str(f) for f in cfg.get("folds", [0])], "targets": targets, "env": env,
            "device": cfg.get("device", "cuda"), "file_ending": ending, "metric": metric,
            "output": p(cfg.get("output")) or str(Path(base) / "benchmark_out"), "results": results}


def _run(cmd: List[str], log: Path, env: dict) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / cmd[0]
    full = [str(exe) if exe.exists() else cmd[0], *cmd[1:]]
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(full) + "\n")
        fh.flush()
        try:
            rc = subprocess.run(full, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
        except FileNotFoundError:
            raise BenchmarkError(f"command not found: {cmd[0]} (is nnU-Net installed in this environment?)") from None
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise BenchmarkError(f"command failed (exit {rc}): {' '.join(full)}\nlog: {log}\n--- last lines ---\n{tail}")


def _case_ids(images: str, ending: str) -> List[str]:
    suffix = "_0000" + ending
    return sorted(f.name[:-len(suffix)] for f in Path(images).iterdir() if f.name.endswith(suffix))


def run_benchmark(config, progress: bool = True) -> dict:
    """Run (or resume) the benchmark described by ``config`` (a path or a loaded dict). Returns
    ``{"plan", "actions", "results", "comparison"}``; ``actions`` lists what ran and what was skipped."""
    from tqdm import tqdm

    from .evaluate import evaluate_folder

    cfg = load_config(config) if not isinstance(config, dict) else config
    plan = resolve(cfg)
    out = Path(plan["output"])
    logs = out / "logs"
    env = plan["env"]
    actions = {"trained": [], "train_skipped": [], "predicted": [], "predict_skipped": []}

    train_dir = lambda tr, f: (Path(plan["results"]) / plan["dataset_name"] /
                               f"{tr}__{plan['plans']}__{plan['configuration']}" / f"fold_{f}")
    jobs = [(tr, f) for tr in plan["trainers"] for f in plan["folds"]]
    for tr, f in tqdm(jobs, desc="train", unit="run", disable=not progress):
        if (train_dir(tr, f) / "checkpoint_final.pth").is_file():
            actions["train_skipped"].append(f"{tr}/fold_{f}")
            continue
        _run(["nnUNetv2_train", plan["dataset"], plan["configuration"], f, "-tr", tr, "-p", plan["plans"],
              "-device", plan["device"]], logs / f"train_{tr}_fold{f}.log", env)
        actions["trained"].append(f"{tr}/fold_{f}")

    pjobs = [(tr, f, t) for tr, f in jobs for t in plan["targets"]]
    results: Dict[str, Dict[str, Dict[str, dict]]] = {}
    for tr, f, t in tqdm(pjobs, desc="predict+evaluate", unit="run", disable=not progress):
        pred = out / "predictions" / tr / f"fold_{f}" / t["name"].replace(" ", "_").replace("(", "").replace(")", "")
        cases = _case_ids(t["images"], plan["file_ending"])
        if not cases:
            raise BenchmarkError(f"target {t['name']}: no images named <case>_0000{plan['file_ending']} in {t['images']}")
        tag = f"{tr}/fold_{f}/{t['name']}"
        if pred.is_dir() and all((pred / (c + plan["file_ending"])).is_file() for c in cases):
            actions["predict_skipped"].append(tag)
        else:
            _run(["nnUNetv2_predict", "-i", t["images"], "-o", str(pred), "-d", plan["dataset"], "-c",
                  plan["configuration"], "-f", f, "-tr", tr, "-p", plan["plans"], "-device", plan["device"],
                  "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                 logs / f"predict_{tr}_fold{f}_{pred.name}.log", env)
            actions["predicted"].append(tag)
        res = evaluate_folder(pred, t["labels"], dataset_json=t["dataset_json"], mask_dir=t["mask"],
                              groups=t["groups"], lesion=t["lesion"], min_lesion_size=t["min_lesion_size"],
                              lesion_overlap=t["lesion_overlap"], out_dir=pred, progress=False)
        results.setdefault(tr, {}).setdefault(t["name"], {})[f] = res

    comparison = compare(plan, results)
    write_comparison(comparison, out)
    return {"plan": plan, "actions": actions, "results": results, "comparison": comparison}


def compare(plan: dict, results: dict) -> dict:
    """Rows: trainers; columns: targets (+ ``OOD mean``); cells: mean/std over folds of the metric."""
    metric = plan["metric"]
    cols = [t["name"] for t in plan["targets"]]
    ood = [t["name"] for t in plan["targets"] if not t["in_domain"]]
    rows = {}
    for tr in plan["trainers"]:
        row = {}
        for c in cols:
            vals = [results[tr][c][f]["foreground_mean"][metric] for f in plan["folds"]]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            row[c] = {"mean": float(np.mean(vals)) if vals else None,
                      "std": float(np.std(vals)) if vals else None, "folds": vals,
                      "groups": {g: a["foreground_mean"][metric]
                                 for g, a in results[tr][c][plan["folds"][0]].get("groups", {}).items()}}
        if (ood and len(ood) < len(cols)) or len(ood) > 1:
            fm = lambda c, f: results[tr][c][f]["foreground_mean"][metric]
            per_fold = [np.mean([np.nan if fm(c, f) is None else fm(c, f) for c in ood])
                        for f in plan["folds"]]
            per_fold = [float(v) for v in per_fold if math.isfinite(v)]
            row["OOD mean"] = {"mean": float(np.mean(per_fold)) if per_fold else None,
                               "std": float(np.std(per_fold)) if per_fold else None, "folds": per_fold, "groups": {}}
        rows[tr] = row
    columns = cols + (["OOD mean"] if rows and "OOD mean" in next(iter(rows.values())) else [])
    return {"metric": metric, "columns": columns, "in_domain": [t["name"] for t in plan["targets"] if t["in_domain"]],
            "folds": plan["folds"], "rows": rows}


def _cell(c: dict) -> str:
    if c["mean"] is None:
        return "-"
    return f"{c['mean']:.4f} ± {c['std']:.4f}" if len(c["folds"]) > 1 else f"{c['mean']:.4f}"


def comparison_table(comparison: dict) -> str:
    from .evaluate import format_table

    header = ["trainer"] + comparison["columns"]
    rows = [[tr] + [_cell(r[c]) for c in comparison["columns"]] for tr, r in comparison["rows"].items()]
    return (f"{comparison['metric']} (foreground mean; mean ± std over folds {', '.join(comparison['folds'])})\n"
            + format_table(rows, header))


def write_comparison(comparison: dict, out: Path) -> None:
    import csv

    from .evaluate import _json_safe

    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(_json_safe(comparison), indent=2))
    with open(out / "comparison.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trainer"] + [x for c in comparison["columns"] for x in (c, f"{c} std")])
        for tr, r in comparison["rows"].items():
            w.writerow([tr] + [("" if v is None else f"{v:.6f}") for c in comparison["columns"]
                               for v in (r[c]["mean"], r[c]["std"])])
    plot_comparison(comparison, out / "comparison.png")


def plot_comparison(comparison: dict, path: Path) -> None:
    """Grouped bar chart: x = targets, one bar per trainer, error bars = std over folds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, trainers = comparison["columns"], list(comparison["rows"])
    width = 0.8 / max(1, len(trainers))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(cols) + 1), 3.5))
    x = np.arange(len(cols))
    for i, tr in enumerate(trainers):
        means = [comparison["rows"][tr][c]["mean"] or 0.0 for c in cols]
        stds = [comparison["rows"][tr][c]["std"] or 0.0 for c in cols]
        ax.bar(x + (i - (len(trainers) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=tr.replace("nnUNetTrainer", ""))
    ax.set_xticks(x)
    ax.set_xticklabels(cols, rotation=20, ha="right")
    ax.set_ylabel(comparison["metric"])
    if comparison["metric"] == "Dice":
        ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
