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
      "env": {"nnUNet_def_n_proc": "1"},                               # optional: for every command
      "train_env": {"nnUNet_n_proc_DA": "0"},                          # optional: nnUNetv2_train only
      "output": "benchmark_out",                                       # default: next to the config
      "results": null,                                                 # optional nnUNet_results override
      "metric": "Dice"                                                 # Dice | HD95
    }

Profiles (``--profile``, or ``"profile"`` in the config; see :data:`PROFILES`): ``full`` (nnU-Net's
schedule), ``gpu-short`` (a short GPU schedule), ``cpu`` (a coarse plan, ``nnUNetPlans_cpu``, made with
nnU-Net's own planner at ``spacing_factor`` × the source's spacing with a narrower network, preprocessed
by ``nnUNetv2_preprocess``, and a schedule sized for 2 cores on ``-device cpu``; the ``converged`` column
says whether it reached a plateau) and ``smoke`` (a coarse plan and a few iterations: proves the pipeline,
and every table says it is smoke scale). Paths may use environment variables (``$nnUNet_raw/...``); a
target given by ``dataset`` id takes ``mask`` / ``groups`` relative to its dataset folder (``"mask": "masksTs"``).

Statistics: ``folds`` (default 3) runs per trainer; per target the mean ± std over folds, the difference
to the baseline (``baseline``, default ``nnUNetTrainerDGBaseline`` or the first trainer) and the p-value
of a paired per-case Wilcoxon signed-rank test (:mod:`.stats`: each case averaged over folds first). The
``converged`` column says per fold whether nnU-Net's EMA pseudo-Dice was flat (moved < 0.01) over the
last 20 % of the epochs (:mod:`.convergence`; ``n/a`` under 5 epochs; ``zero`` when it ended below 0.01:
flat because the network still predicts no foreground, not a plateau).

Resuming: a fold with ``checkpoint_final.pth`` is trained and skipped -- unless it was trained for another
number of epochs than the schedule asks (e.g. under an earlier version of a profile): then the run stops
with an error naming the folder, never mixing schedules in one table. A prediction folder holding a file
for every input case, none older than the fold's ``checkpoint_final.pth``, is predicted and skipped (a
retrained fold is predicted again). Evaluation always reruns (cheap). Every command's
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

from .convergence import fold_convergence, training_curve
from .stats import case_values, fold_mean, paired_test

IN_DOMAIN_SUFFIX = " (in-domain)"
BASELINE = "nnUNetTrainerDGBaseline"

#: Profiles. ``gpu-short``: 30 epochs x 250 iterations = 7,500 iterations, sized for <= 10 min of training per
#: trainer and fold on one current GPU if an iteration takes <= 80 ms (plus compilation and final
#: validation); no GPU run of this project has measured that yet (the README says how to).
#: ``smoke``: a plan at 3x the source's spacing and 8 epochs x 20 iterations on the CPU: proves the protocol
#: runs end to end, ranks nothing (real DRIVE: 224x192 patches, batch 2, ~1 s per iteration on 2 cores).
#: ``cpu``: the comparison a machine without a GPU can afford (6 trainers x 3 folds in 2 h on 2 cores), as
#: near to a plateau as that allows (the ``converged`` column says per fold whether it got there): per
#: configuration a coarse plan made by nnU-Net's own planner (``spacing_factor`` x the source's spacing)
#: with the network narrowed to ``base_features`` in the first stage (every stage scaled alike; at DRIVE's
#: coarse plan width 16 costs 1/3 and width 8 1/6 of nnU-Net's 32 per step), and the schedule chosen by
#: the measurements and the rule written in docs/cpu_profile.md (2d: 110 x 16 fits DRIVE -> CHASE_DB1 in
#: 1 h 57 min; 10 of its 18 folds reached the plateau. 3d_fullres: 90 x 16 at 3x spacing fits baseline,
#: RandConv and RAS4DG, one fold, on the fetal-atlas-sized phantom in 1 h 39 min on a machine half as fast as
#: the 2d run's, but no fold reached a plateau: at that resolution the networks leave "all background" late).
#: nnU-Net's final validation exports through a pool of ``nnUNet_def_n_proc`` (default 8) spawned
#: processes: on 2 cores their start-up alone took ~40 s per training; one process exports the few
#: validation cases of a fold in seconds. Two more knobs change the speed only, never what is trained
#: (measured on DRIVE's ``cpu`` plan, 2 cores, one run: 4.27 s per epoch with nnU-Net's settings, 3.29 s
#: drawing ``progress.png`` every 10th epoch, 2.71 s with that and ``nnUNet_n_proc_DA=0``):
#: nnU-Net redraws ``progress.png`` (a 30 x 54 inch figure) after every epoch -- here every 10th epoch and
#: the last (the trainers' ``NNUNET_RC_PLOT_EVERY``); and nnU-Net's background augmentation workers (2 on
#: 2 cores) compete with the training step for the cores, while its augmentation of a batch costs ~0.01 s
#: in the main process (``nnUNet_n_proc_DA=0``, for ``nnUNetv2_train`` only: nnU-Net's planner calls
#: ``torch.set_num_threads`` with the same number and fails at 0).
CPU_ENV = {"nnUNet_def_n_proc": "1", "NNUNET_RC_PLOT_EVERY": "10"}
CPU_TRAIN_ENV = {"nnUNet_n_proc_DA": "0"}

PROFILES = {
    "full": {"schedule": {}, "note": "full profile: nnU-Net's schedule (1000 epochs x 250 iterations)"},
    "gpu-short": {"schedule": {"epochs": 30, "iterations": 250, "val_iterations": 20},
                  "note": "gpu-short profile: 30 epochs x 250 iterations"},
    "smoke": {"schedule": {"epochs": 8, "iterations": 20, "val_iterations": 2}, "device": "cpu", "env": CPU_ENV,
              "train_env": CPU_TRAIN_ENV,
              "coarse_plan": {"name": "nnUNetPlans_smoke", "spacing_factor": 3.0},
              "note": "smoke profile: SMOKE-SCALE comparison (plan at 3x spacing, 8 epochs x 20 iterations on CPU)"},
    "cpu": {"device": "cpu", "env": CPU_ENV, "train_env": CPU_TRAIN_ENV, "by_configuration": {
        "2d": {"schedule": {"epochs": 110, "iterations": 16, "val_iterations": 10},
               "coarse_plan": {"name": "nnUNetPlans_cpu", "spacing_factor": 3.0, "base_features": 8}},
        "3d_fullres": {"schedule": {"epochs": 90, "iterations": 16, "val_iterations": 10},
                       "coarse_plan": {"name": "nnUNetPlans_cpu3d", "spacing_factor": 3.0, "base_features": 8}},
    }, "note": "cpu profile: sized for 2 CPU cores (plan at {spacing_factor:g}x spacing, first-stage width "
               "{base_features}, {epochs} epochs x {iterations} iterations; see the converged column)"},
}


class BenchmarkError(RuntimeError):
    """Bad config or a failing nnU-Net command."""


def _check_trained_schedule(fold_dir, epochs) -> None:
    """Raise :class:`BenchmarkError` when the finished training in ``fold_dir`` logged another number of
    epochs than ``epochs`` (the schedule's ``NNUNET_RC_EPOCHS``; ``None``: nnU-Net's own, not checked)."""
    if epochs is None:
        return
    trained = len(training_curve(fold_dir))
    if trained != int(epochs):
        raise BenchmarkError(
            f"{fold_dir} holds a finished training of {trained} epochs, but this schedule trains {int(epochs)}: "
            f"move that folder away (or set another nnUNet_results) to train it again, or run the schedule it "
            f"was trained with")


def _predictions_current(pred: Path, files, checkpoint: Path) -> bool:
    """True when ``pred`` holds every one of ``files`` and none is older than ``checkpoint``."""
    if not pred.is_dir() or not all((pred / n).is_file() for n in files):
        return False
    made = checkpoint.stat().st_mtime if checkpoint.is_file() else 0.0
    return all((pred / n).stat().st_mtime >= made for n in files)


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


def apply_overrides(cfg: dict, profile: str = None, trainers=None, targets=None, folds=None,
                    grid: bool = False) -> dict:
    """Return a copy of ``cfg`` with a profile (:data:`PROFILES`) and command-line overrides applied:
    ``trainers`` / ``targets`` (names, subset or new list), ``folds`` (a count ``n`` -> folds 0..n-1, or a
    list), ``grid`` (add the config's ``grid_trainers``, the RAS4DG Table 2 ablation grid)."""
    cfg = json.loads(json.dumps(cfg))
    if grid:
        cfg["trainers"] = list(cfg.get("trainers", [])) + [t for t in cfg.get("grid_trainers", [])
                                                           if t not in cfg.get("trainers", [])]
    profile = profile or cfg.get("profile")
    if profile is not None:
        if profile not in PROFILES:
            raise BenchmarkError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        prof = dict(PROFILES[profile])
        if "by_configuration" in prof:
            configuration = (cfg.get("source") or {}).get("configuration")
            if configuration not in prof["by_configuration"]:
                raise BenchmarkError(f"profile {profile!r} has no settings for configuration {configuration!r} "
                                     f"(it has {sorted(prof['by_configuration'])})")
            prof.update(prof.pop("by_configuration")[configuration])
        coarse = prof.get("coarse_plan")
        cfg["profile"] = profile
        cfg["profile_note"] = prof["note"].format(**prof["schedule"], **(coarse or {}))
        cfg["schedule"] = dict(prof["schedule"])
        if "device" in prof:
            cfg["device"] = prof["device"]
        for key in ("env", "train_env"):
            if key in prof:
                cfg[key] = {**prof[key], **(cfg.get(key) or {})}
        if coarse:
            cfg.setdefault("source", {})["plans"] = coarse["name"]
            cfg["coarse_plan"] = dict(coarse)
    if trainers:
        cfg["trainers"] = list(trainers)
    if targets:
        known = [t.get("name") for t in cfg.get("targets", [])]
        missing = [t for t in targets if t not in known]
        if missing:
            raise BenchmarkError(f"--targets {missing}: not in the config's targets {known}")
        cfg["targets"] = [t for t in cfg["targets"] if t.get("name") in targets]
    if folds is not None:
        cfg["folds"] = list(range(int(folds))) if isinstance(folds, int) else list(folds)
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

    def p(v, rel=None):
        """Absolute path: env vars expanded; relative to ``rel`` (a dataset folder) when it exists there,
        else to the config's folder."""
        if v is None:
            return None
        v = os.path.expandvars(str(v))
        if os.path.isabs(v):
            return v
        if rel is not None and (Path(rel) / v).exists():
            return str((Path(rel) / v).resolve())
        return str((base / v).resolve())
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
        folder = None
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
        targets.append({"name": t["name"], "images": images, "labels": labels, "groups": p(t.get("groups"), folder),
                        "mask": p(t.get("mask"), folder), "dataset_json": p(t.get("dataset_json")) or tdj
                        or str(src_raw / "dataset.json"), "in_domain": bool(t.get("in_domain", False)),
                        "lesion": bool(t.get("lesion", False)), "min_lesion_size": int(t.get("min_lesion_size", 0)),
                        "lesion_overlap": float(t.get("lesion_overlap", 0.0))})
    if not targets:
        raise BenchmarkError("config: no targets (and no source.test)")
    names = [t["name"] for t in targets]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"config: target names must be unique, got {names}")
    schedule = cfg.get("schedule") or {}
    env = {str(k): str(v) for k, v in (cfg.get("env") or {}).items()}  # e.g. a profile's nnU-Net knobs
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
    baseline = cfg.get("baseline") or (BASELINE if BASELINE in trainers else trainers[0])
    if baseline not in trainers:
        raise BenchmarkError(f"config: baseline {baseline} is not among the trainers {trainers}")
    return {"dataset": str(dataset), "dataset_name": src_raw.name, "configuration": configuration,
            "plans": src.get("plans", "nnUNetPlans"), "trainers": trainers, "baseline": baseline,
            "folds": [str(f) for f in cfg.get("folds", [0, 1, 2])], "targets": targets, "env": env,
            "train_env": {**env, **{str(k): str(v) for k, v in (cfg.get("train_env") or {}).items()}},
            "device": cfg.get("device", "cuda"), "file_ending": ending, "metric": metric,
            "profile": cfg.get("profile"), "profile_note": cfg.get("profile_note", ""),
            "coarse_plan": cfg.get("coarse_plan"),
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


def ensure_coarse_plans(plan: dict, logs: Path, env: dict) -> None:
    """Create and preprocess ``plan["plans"]`` (a cpu/smoke profile's coarse plan, ``plan["coarse_plan"]``)
    unless it exists: nnU-Net's default planner with ``-overwrite_target_spacing`` = ``spacing_factor`` ×
    the default plan's spacing of the configuration (for ``2d`` the slice axis is kept; passed in the images'
    own axis order, so an anisotropic volume keeps the default plan's transpose), the network
    narrowed to ``base_features`` if given (:func:`narrow_network`), then ``nnUNetv2_preprocess``."""
    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise BenchmarkError("nnUNet_preprocessed is not set (needed for the profile's coarse plan)")
    folder = Path(pre) / plan["dataset_name"]
    ident = plan["plans"]
    coarse = plan["coarse_plan"]
    if (folder / f"{ident}.json").is_file() and (folder / f"{ident}_{plan['configuration']}").is_dir():
        check_coarse_plan(folder / f"{ident}.json", plan["configuration"], coarse)
        return
    if not (folder / "nnUNetPlans.json").is_file():
        _run(["nnUNetv2_plan_and_preprocess", "-d", plan["dataset"], "-c", plan["configuration"], "--no_pp",
              "-npfp", "1"], logs / "plan_default.log", env)
    default = json.loads((folder / "nnUNetPlans.json").read_text())
    cfgs = default["configurations"]
    if plan["configuration"] not in cfgs:
        raise BenchmarkError(f"{folder}/nnUNetPlans.json has no configuration {plan['configuration']}")
    f = float(coarse["spacing_factor"])
    sp = [float(v) * f for v in cfgs[plan["configuration"]]["spacing"]]  # nnU-Net's transposed axis order
    if len(sp) == 2:  # 2d: keep the slice axis of the (3-axis) full-resolution spacing
        sp = [float(default["original_median_spacing_after_transp"][0])] + sp
    # the planner takes the target spacing in the images' own axis order (and derives its transpose from it)
    sp = [sp[i] for i in default["transpose_backward"]]
    _run(["nnUNetv2_plan_experiment", "-d", plan["dataset"], "-overwrite_target_spacing", *map(str, sp),
          "-overwrite_plans_name", ident], logs / f"plan_{ident}.log", env)
    if coarse.get("base_features"):
        narrow_network(folder / f"{ident}.json", plan["configuration"], int(coarse["base_features"]))
    _run(["nnUNetv2_preprocess", "-d", plan["dataset"], "-plans_name", ident, "-c", plan["configuration"],
          "-np", "1"], logs / f"preprocess_{ident}.log", env)


def check_coarse_plan(plans_file: Path, configuration: str, coarse: dict) -> None:
    """Refuse an existing coarse plan made with other settings (e.g. ``nnUNetPlans_cpu`` of the former cpu
    profile, now ``smoke``, which kept nnU-Net's width): training on it would silently compare another plan."""
    plans = json.loads(Path(plans_file).read_text())
    width = plans["configurations"].get(configuration, {}).get("architecture", {}).get("arch_kwargs", {}).get(
        "features_per_stage", [None])[0]
    want = coarse.get("base_features")
    if want is not None and width != want:
        raise BenchmarkError(f"{plans_file} has first-stage width {width}, the profile asks for {want}: it was made "
                             f"with other settings (before 2026-12-06 the cpu profile, now smoke, kept nnU-Net's "
                             f"width). Delete {plans_file.name} and {plans_file.stem}_{configuration}/ beside it (and "
                             f"results trained with it) to re-plan.")


def narrow_network(plans_file: Path, configuration: str, base_features: int) -> List[int]:
    """Scale every stage's width of ``configuration`` in an nnU-Net plans file so the first stage has
    ``base_features`` (nnU-Net's planner: 32, doubling per stage up to 512 in 2D / 320 in 3D); stages,
    kernels, strides, patch and batch stay as planned. Returns the new ``features_per_stage``."""
    plans = json.loads(Path(plans_file).read_text())
    kwargs = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    old = list(kwargs["features_per_stage"])
    kwargs["features_per_stage"] = [max(1, int(round(c * base_features / old[0]))) for c in old]
    Path(plans_file).write_text(json.dumps(plans, indent=4))
    return kwargs["features_per_stage"]


def _case_ids(images: str, ending: str) -> List[str]:
    suffix = "_0000" + ending
    return sorted(f.name[:-len(suffix)] for f in Path(images).iterdir() if f.name.endswith(suffix))


def run_benchmark(config, progress: bool = True) -> dict:
    """Run (or resume) the benchmark described by ``config`` (a path or a loaded dict). Returns
    ``{"plan", "actions", "results", "comparison"}``; ``actions`` lists what ran and what was skipped."""
    from tqdm import tqdm

    from .evaluate import evaluate_folder

    cfg = load_config(config) if not isinstance(config, dict) else config
    if cfg.get("profile") and not cfg.get("profile_note"):  # a profile named in the config itself
        cfg = apply_overrides(cfg)
    plan = resolve(cfg)
    out = Path(plan["output"])
    logs = out / "logs"
    env = plan["env"]
    actions = {"trained": [], "train_skipped": [], "predicted": [], "predict_skipped": []}

    if plan["coarse_plan"]:
        ensure_coarse_plans(plan, logs, env)
    train_dir = lambda tr, f: (Path(plan["results"]) / plan["dataset_name"] /
                               f"{tr}__{plan['plans']}__{plan['configuration']}" / f"fold_{f}")
    jobs = [(tr, f) for tr in plan["trainers"] for f in plan["folds"]]
    for tr, f in tqdm(jobs, desc="train", unit="run", disable=not progress):
        if (train_dir(tr, f) / "checkpoint_final.pth").is_file():
            _check_trained_schedule(train_dir(tr, f), plan["env"].get("NNUNET_RC_EPOCHS"))
            actions["train_skipped"].append(f"{tr}/fold_{f}")
            continue
        _run(["nnUNetv2_train", plan["dataset"], plan["configuration"], f, "-tr", tr, "-p", plan["plans"],
              "-device", plan["device"]], logs / f"train_{tr}_fold{f}.log", plan["train_env"])
        actions["trained"].append(f"{tr}/fold_{f}")

    pjobs = [(tr, f, t) for tr, f in jobs for t in plan["targets"]]
    results: Dict[str, Dict[str, Dict[str, dict]]] = {}
    for tr, f, t in tqdm(pjobs, desc="predict+evaluate", unit="run", disable=not progress):
        pred = out / "predictions" / tr / f"fold_{f}" / t["name"].replace(" ", "_").replace("(", "").replace(")", "")
        cases = _case_ids(t["images"], plan["file_ending"])
        if not cases:
            raise BenchmarkError(f"target {t['name']}: no images named <case>_0000{plan['file_ending']} in {t['images']}")
        tag = f"{tr}/fold_{f}/{t['name']}"
        if _predictions_current(pred, [c + plan["file_ending"] for c in cases],
                                train_dir(tr, f) / "checkpoint_final.pth"):
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

    convergence = {tr: {f: fold_convergence(train_dir(tr, f)) for f in plan["folds"]} for tr in plan["trainers"]}
    comparison = compare(plan, results, convergence)
    write_comparison(comparison, out)
    return {"plan": plan, "actions": actions, "results": results, "comparison": comparison}


def compare(plan: dict, results: dict, convergence: dict = None) -> dict:
    """Rows: trainers; columns: targets (+ ``OOD mean``); cells: mean/std over folds of the metric.
    ``convergence``: ``{trainer: {fold: convergence.plateau(...)}}``, shown as the ``converged`` column."""
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
    baseline = plan.get("baseline") or plan["trainers"][0]
    per_case = {tr: {c: fold_mean([case_values(results[tr][c][f].get("per_case", []), metric) for f in plan["folds"]])
                     for c in cols} for tr in plan["trainers"]}
    for tr, row in rows.items():
        for c in columns:
            b = rows[baseline][c]["mean"]
            row[c]["delta"] = None if tr == baseline or b is None or row[c]["mean"] is None else row[c]["mean"] - b
            row[c]["test"] = paired_test(per_case[tr][c], per_case[baseline][c]) if tr != baseline and c in cols \
                else None
    return {"metric": metric, "columns": columns, "in_domain": [t["name"] for t in plan["targets"] if t["in_domain"]],
            "folds": plan["folds"], "rows": rows, "baseline": baseline, "per_case": per_case,
            "convergence": convergence or {},
            "profile": plan.get("profile"), "profile_note": plan.get("profile_note", "")}


def _convergence_summary(by_fold: dict, folds) -> tuple:
    """Per fold ``yes`` / ``no`` / ``n/a`` (EMA pseudo-Dice flat over the last 20 % of epochs), ``zero`` where
    the EMA ended below 0.01 (flat because the network predicts no foreground: not a plateau), and the
    largest EMA change over the folds (``None`` if no fold has one)."""
    words = {True: "yes", False: "no", None: "n/a"}
    changes = [c["change"] for c in by_fold.values() if c.get("change") is not None]
    cells = [by_fold.get(f, {}) for f in folds]
    return ([("zero" if c.get("no_foreground") else words[c.get("converged")]) for c in cells],
            (max(changes) if changes else None))


def _converged_cell(by_fold: dict, folds) -> str:
    """e.g. ``yes yes no (max Δ 0.021)``; ``n/a`` without curves."""
    if not by_fold:
        return "n/a"
    words, largest = _convergence_summary(by_fold, folds)
    return " ".join(words) + (f" (max Δ {largest:.3f})" if largest is not None else "")


def _cell(c: dict) -> str:
    if c["mean"] is None:
        return "-"
    text = f"{c['mean']:.4f} ± {c['std']:.4f}" if len(c["folds"]) > 1 else f"{c['mean']:.4f}"
    if c.get("delta") is not None:
        text += f" ({c['delta']:+.4f}"
        test = c.get("test")
        if test is not None:
            text += f", p={test['p']:.3g}" if test["p"] is not None else ", p n/a"
        text += ")"
    return text


def comparison_table(comparison: dict) -> str:
    from .evaluate import format_table

    conv = comparison.get("convergence") or {}
    header = ["trainer"] + comparison["columns"] + (["converged"] if conv else [])
    rows = [[tr] + [_cell(r[c]) for c in comparison["columns"]]
            + ([_converged_cell(conv.get(tr, {}), comparison["folds"])] if conv else [])
            for tr, r in comparison["rows"].items()]
    note = f"{comparison['profile_note']}\n" if comparison.get("profile_note") else ""
    conv_note = ("; converged = nnU-Net's EMA pseudo-Dice moved < 0.01 over the last 20 % of epochs, per fold; "
                 "zero = it ended below 0.01 (no foreground predicted)"
                 if conv else "")
    return (note + f"{comparison['metric']} (foreground mean; mean ± std over folds {', '.join(comparison['folds'])}; "
            f"(Δ vs {comparison.get('baseline')}, p = paired per-case Wilcoxon signed-rank){conv_note})\n"
            + format_table(rows, header))


def write_comparison(comparison: dict, out: Path) -> None:
    import csv

    from .evaluate import _json_safe

    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(_json_safe(comparison), indent=2))
    with open(out / "comparison.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if comparison.get("profile_note"):
            w.writerow([f"# {comparison['profile_note']}"])
        conv = comparison.get("convergence") or {}
        w.writerow(["trainer"] + [x for c in comparison["columns"]
                                  for x in (c, f"{c} std", f"{c} delta", f"{c} p", f"{c} n_pairs")]
                   + (["converged", "converged max change"] if conv else []))
        for tr, r in comparison["rows"].items():
            vals = []
            for c in comparison["columns"]:
                test = r[c].get("test") or {}
                vals += [r[c]["mean"], r[c]["std"], r[c].get("delta"), test.get("p"), test.get("n")]
            extra = []
            if conv:
                words, largest = _convergence_summary(conv.get(tr, {}), comparison["folds"])
                extra = [";".join(words), "" if largest is None else f"{largest:.6g}"]
            w.writerow([tr] + ["" if v is None else (str(v) if isinstance(v, int) else f"{v:.6g}") for v in vals]
                       + extra)
    plot_comparison(comparison, out / "comparison.png")
    plot_per_target(comparison, out)


def plot_per_target(comparison: dict, out: Path) -> List[Path]:
    """One PNG per target, ``comparison_<target>.png``: every case's metric (averaged over folds) with the
    baseline on x and each other trainer on y (one panel per trainer; above the diagonal = better)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = comparison.get("baseline")
    others = [t for t in comparison["rows"] if t != base]
    paths = []
    for target, by_trainer in ((c, {t: comparison["per_case"][t][c] for t in comparison["rows"]})
                               for c in comparison["columns"] if c in comparison["per_case"].get(base, {})):
        if not others:
            break
        fig, axes = plt.subplots(1, len(others), figsize=(3.2 * len(others), 3.3), squeeze=False)
        for ax, tr in zip(axes[0], others):
            cases = sorted(set(by_trainer[tr]) & set(by_trainer[base]))
            x = [by_trainer[base][c] for c in cases]
            y = [by_trainer[tr][c] for c in cases]
            ax.scatter(x, y, s=12)
            finite = [v for v in x + y if math.isfinite(v)]
            lo, hi = (min(finite), max(finite)) if finite else (0, 1)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            test = comparison["rows"][tr][target].get("test") or {}
            p = test.get("p")
            ax.set_title(f"{tr.replace('nnUNetTrainer', '')}\np={'n/a' if p is None else f'{p:.3g}'}", fontsize=8)
            ax.set_xlabel(f"{base.replace('nnUNetTrainer', '')} {comparison['metric']}", fontsize=8)
            ax.set_ylabel(comparison["metric"], fontsize=8)
        fig.suptitle(target + (f" ({comparison['profile_note']})" if comparison.get("profile_note") else ""), fontsize=8)
        fig.tight_layout()
        path = out / f"comparison_{''.join(ch if ch.isalnum() or ch in '-_' else '_' for ch in target)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


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
