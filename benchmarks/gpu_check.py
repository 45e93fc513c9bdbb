"""The whole GPU check as one prepared call: install the carried wheels, then run every check that needs a GPU.

For a machine with one NVIDIA GPU, Python + PyTorch preinstalled and no network (the device this project
is sometimes lent). Two sub-commands; the wheel folders come from ``make gpu-wheels``
(``benchmarks/gpu_wheels.py``), which splits them in two because one call carries at most 64 MiB:

    python3 benchmarks/gpu_check.py install gpu_wheels/part1                 # call 1
    python3 benchmarks/gpu_check.py install gpu_wheels/part2 && \\
        python3 benchmarks/gpu_check.py run --out $OUT                        # call 2, within 30 s of call 1

``install`` puts the wheels into ``--target`` (default ``.gpu_site``, ignored by git, so it stays on a
warm machine between calls) with ``pip install --no-index --no-deps --no-compile``. ``run`` puts that
folder first on the import path of itself and of every command it starts, then runs these steps, in
order of value, each with a time budget (seconds, GPU setting):

1. ``cuda_unit_tests`` (90): ``pytest tests -m cuda``.
2. ``cli_compile_amp`` (330): a short real-CLI ``nnUNetv2_train`` + ``nnUNetv2_predict`` under nnU-Net's
   CUDA defaults (``torch.compile`` and autocast + grad scaler on) of the baseline, RandConv,
   ProRandConvDeform, GIN, RAS4DG and RandConvCL in ``2d`` and ``3d_fullres`` on small synthetic datasets,
   counting dynamo recompilations (``TORCH_LOGS=recompiles``) against the baseline's. The two baselines
   run first (they fill inductor's cache for the trainers whose network is the baseline's), then the
   others, several at a time.
3. ``augment_overhead`` (75): ``benchmarks/augment_overhead.py --device cuda`` (every augmentation against
   one forward+backward of nnU-Net's default U-Net at 2×1×128³ and 12×1×512²). Cheap, so it runs before
   the epoch timings that may not fit.
4. ``epoch_time_3d`` (180) and 5. ``epoch_time_2d`` (120): ``benchmarks/epoch_time.py`` ratios of
   RandConv, GIN and RAS4DG to the baseline at 128³ and 512² (3 epochs × 15 iterations, first epoch
   dropped; fewer than the script's default, to fit).

A step starts only if the time left of ``--budget`` (default 540 s = 9 min) covers its budget, and is
stopped at its budget; a step that does not fit is reported as skipped, never left half-run. The report
(``gpu_check.md`` and ``gpu_check.json`` in ``--out``, rewritten after every step, so an interrupted call
still leaves one) names the GPU, PyTorch, CUDA and every package version used.
``--device cpu --tiny`` runs the same steps in a tiny CPU setting (the test suite does this).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "nnUNetTrainerDGBaseline"
CLI_TRAINERS = [BASELINE, "nnUNetTrainerRandConv", "nnUNetTrainerProRandConvDeform", "nnUNetTrainerGIN",
                "nnUNetTrainerRAS4DG", "nnUNetTrainerRandConvCL"]
EPOCH_TIME_TRAINERS = ["nnUNetTrainerRandConv", "nnUNetTrainerGIN", "nnUNetTrainerRAS4DG"]
#: modules the check needs beyond the GPU machine's image; a missing one means a wheel folder is not installed
REQUIRED_MODULES = ["nnunetv2", "nnunet_rc", "SimpleITK", "nibabel", "blosc2", "cc3d", "acvl_utils",
                    "batchgenerators", "batchgeneratorsv2", "dynamic_network_architectures"]
DISTRIBUTIONS = ["torch", "numpy", "nnunetv2", "nnunet_rc", "SimpleITK", "blosc2", "batchgeneratorsv2",
                 "dynamic-network-architectures", "acvl-utils", "scikit-learn", "pytest"]


# ---- settings ----------------------------------------------------------------------------------------------

@dataclass
class Settings:
    """What each step does and may spend; :func:`gpu_settings` and :func:`tiny_settings`."""
    name: str
    device: str
    budgets: Dict[str, float]
    cli_trainers: List[str]
    cli_configs: List[str]
    cli_sizes: Dict[int, int]
    cli_iterations: int
    cli_parallel: int
    n_proc_da: int
    overhead_args: List[str]
    epoch_args: Dict[str, List[str]]
    epoch_trainers: List[str] = field(default_factory=lambda: list(EPOCH_TIME_TRAINERS))


def gpu_settings() -> Settings:
    return Settings(
        name="gpu", device="cuda",
        budgets={"cuda_unit_tests": 90, "cli_compile_amp": 330, "augment_overhead": 75, "epoch_time_3d": 180,
                 "epoch_time_2d": 120},
        cli_trainers=list(CLI_TRAINERS), cli_configs=["2d", "3d_fullres"], cli_sizes={2: 128, 3: 64},
        cli_iterations=8, cli_parallel=5, n_proc_da=3,
        overhead_args=["--device", "cuda", "--repeats", "5"],
        epoch_args={"epoch_time_3d": ["--dims", "3", "--size3d", "128", "--cases", "2", "--epochs", "3",
                                      "--iterations", "15", "--val-iterations", "1", "--processes", "8"],
                    "epoch_time_2d": ["--dims", "2", "--size2d", "512", "--cases", "4", "--epochs", "3",
                                      "--iterations", "15", "--val-iterations", "1", "--processes", "8"]},
    )


def tiny_settings(device: str = "cpu") -> Settings:
    return Settings(
        name="tiny", device=device,
        budgets={"cuda_unit_tests": 120, "cli_compile_amp": 240, "augment_overhead": 60, "epoch_time_3d": 0,
                 "epoch_time_2d": 150},
        cli_trainers=[BASELINE, "nnUNetTrainerRAS4DG"], cli_configs=["2d"], cli_sizes={2: 32, 3: 32},
        cli_iterations=2, cli_parallel=1, n_proc_da=1,
        overhead_args=["--device", device, "--size3d", "16", "--size2d", "32", "--batch2d", "2", "--repeats", "1"],
        epoch_args={"epoch_time_2d": ["--dims", "2", "--size2d", "32", "--cases", "2", "--epochs", "2",
                                      "--iterations", "1", "--val-iterations", "1", "--processes", "1"]},
        epoch_trainers=["nnUNetTrainerRandConv"],
    )


# ---- install -------------------------------------------------------------------------------------------------

def install(folders: List[Path], target: Path) -> int:
    """``pip install --no-index --no-deps --no-compile --upgrade --target`` of every wheel in ``folders``."""
    wheels = sorted(str(w) for f in folders for w in Path(f).glob("*.whl"))
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing or not wheels:
        print(f"error: no wheels in {missing or [str(f) for f in folders]} (build them with `make gpu-wheels` on a "
              f"machine with network and carry the folder)", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(target), *wheels])
    if proc.returncode != 0:
        print(f"error: pip could not install the wheels into {target}", file=sys.stderr)
        return proc.returncode
    print(f"installed {len(wheels)} wheel(s) into {target} in {time.time() - t:.1f} s")
    return 0


# ---- running commands under a deadline --------------------------------------------------------------------------

class StepTimeout(RuntimeError):
    pass


def run_cmd(cmd: List[str], env: dict, log: Path, deadline: float, cwd: Optional[Path] = None
            ) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group, killed (group and all) at ``deadline``; output to ``log``."""
    timeout = deadline - time.time()
    if timeout <= 0:
        raise StepTimeout(f"no time left for {' '.join(cmd[:4])}")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        log.write_text(f"$ {' '.join(cmd)}\n(killed at the step's budget)\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
        raise StepTimeout(f"stopped at the step's budget: {' '.join(cmd[:6])} (log {log.name})") from None
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@functools.lru_cache(maxsize=None)
def _load_epoch_time():
    """``benchmarks/epoch_time.py`` as a module (``benchmarks/`` is no package), loaded once: its nnU-Net
    command helper and recompilation count."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nnunet_rc_epoch_time", ROOT / "benchmarks" / "epoch_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nnunet_cmd(script: str, *args) -> List[str]:
    return _load_epoch_time().nnunet_command(script, *args)


def count_recompiles(stderr: str) -> int:
    return _load_epoch_time().count_recompiles(stderr)


def tail(text: str, n: int = 1500) -> str:
    return text[-n:]


# ---- the steps ---------------------------------------------------------------------------------------------------

class Check:
    def __init__(self, settings: Settings, work: Path, out: Path, budget: float, site: Optional[Path]):
        self.s, self.work, self.out, self.site = settings, work, out, site
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start = time.time()
        self.end = self.start + budget
        self.report: dict = {"budget_s": budget, "setting": settings.name, "steps": []}
        self.env = self._env()

    def _env(self) -> dict:
        from nnunet_rc import trainer_path

        env = {**os.environ, "nnUNet_raw": str(self.work / "raw"), "nnUNet_preprocessed": str(self.work / "pre"),
               "nnUNet_results": str(self.work / "results"), "nnUNet_extTrainer": trainer_path(),
               "nnUNet_n_proc_DA": str(self.s.n_proc_da), "PYTHONUNBUFFERED": "1"}
        if self.site:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.site), os.environ.get("PYTHONPATH")]))
        if self.s.device == "cuda":
            env.pop("nnUNet_compile", None)  # nnU-Net's CUDA default: compile on
        for k in ("raw", "pre", "results"):
            (self.work / k).mkdir(parents=True, exist_ok=True)
        return env

    # -- bookkeeping
    def environment(self) -> dict:
        import importlib
        import importlib.metadata as md

        import torch

        info = {"python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                "device": (torch.cuda.get_device_name(0) if self.s.device == "cuda" else f"CPU ({os.cpu_count()} cores)"),
                "host_cpus": os.cpu_count(), "packages": {}, "locations": {}}
        for m in ("nnunetv2", "nnunet_rc"):  # where the check imported them from (the wheels' target folder)
            info["locations"][m] = str(Path(importlib.import_module(m).__file__).resolve().parent)
        for d in DISTRIBUTIONS:
            try:
                info["packages"][d] = md.version(d)
            except md.PackageNotFoundError:
                info["packages"][d] = None
        return info

    def run_step(self, name: str, fn: Callable[[float], dict]) -> None:
        budget = self.s.budgets.get(name, 0)
        left = self.end - time.time()
        entry = {"step": name, "budget_s": budget}
        if budget <= 0:
            entry.update(status="not in this setting")
        elif left < budget:
            entry.update(status="skipped", reason=f"{left:.0f} s left of the total budget, the step needs {budget:.0f} s")
        else:
            t = time.time()
            try:
                entry.update(fn(t + budget))
                entry.setdefault("status", "ok")
            except StepTimeout as e:
                entry.update(status="timed out", reason=str(e))
            except Exception as e:  # a failing step is reported; the next steps still run
                entry.update(status="failed", reason=f"{type(e).__name__}: {e}"[-3000:])
            entry["seconds"] = round(time.time() - t, 1)
        self.report["steps"].append(entry)
        print(f"[gpu_check] {name}: {entry['status']}" + (f" ({entry.get('seconds')} s)" if "seconds" in entry else "")
              + (f" - {entry['reason'][:300]}" if entry.get("reason") else ""), flush=True)
        self.write_report()

    # -- 1. CUDA unit tests
    def cuda_unit_tests(self, deadline: float) -> dict:
        # -P: the repository root (cwd) must not shadow the installed nnunet_rc (its trainers live in trainers/)
        proc = run_cmd([sys.executable, "-P", "-m", "pytest", "tests", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=-ra"], self.env, self.logs / "cuda_unit_tests.log", deadline, cwd=ROOT)
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)",
                                                    proc.stdout.splitlines()[-1] if proc.stdout.strip() else "")}
        status = "ok" if proc.returncode == 0 else "failed"
        if proc.returncode == 0 and not counts.get("passed"):
            status = "ok (all skipped: no CUDA)" if self.s.device != "cuda" else "failed"
        return {"status": status, "counts": counts, "summary": tail(proc.stdout, 400).strip().splitlines()[-1:],
                **({"output": tail(proc.stdout + proc.stderr)} if proc.returncode else {})}

    # -- 2. real CLI with compile + AMP
    def _prepare_synthetic(self, dim: int, dataset_id: int, deadline: float) -> str:
        from nnunet_rc.synthetic.generate import write_benchmark

        config = "2d" if dim == 2 else "3d_fullres"
        write_benchmark(self.work / "raw", dim=dim, id_base=dataset_id, num_train=4, num_test=2,
                        size=self.s.cli_sizes[dim], targets=("blur",), overwrite=True, progress=False)
        n = "1" if self.s.cli_parallel == 1 else "4"
        proc = run_cmd(nnunet_cmd("nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", config, "-np", n, "-npfp", n),
                       self.env, self.logs / f"plan_{dataset_id}.log", deadline)
        if proc.returncode:
            raise RuntimeError(f"nnUNetv2_plan_and_preprocess failed for {dataset_id}: {tail(proc.stderr, 800)}")
        return config

    def _train_predict(self, dataset_id: int, config: str, trainer: str, deadline: float) -> dict:
        import numpy as np

        row = {"config": config, "trainer": trainer}
        env = {**self.env, "NNUNET_RC_EPOCHS": "1", "NNUNET_RC_ITERATIONS": str(self.s.cli_iterations),
               "NNUNET_RC_VAL_ITERATIONS": "2", "TORCH_LOGS": "recompiles"}
        t = time.time()
        try:
            proc = run_cmd(nnunet_cmd("nnUNetv2_train", dataset_id, config, "all", "-tr", trainer, "-device", self.s.device),
                           env, self.logs / f"train_{config}_{trainer}.log", deadline)
        except StepTimeout as e:
            return {**row, "status": "timed out", "reason": str(e)}
        row.update(train_s=round(time.time() - t, 1), recompiles=count_recompiles(proc.stderr),
                   compiled="Using torch.compile" in proc.stdout)
        if proc.returncode:
            return {**row, "status": "failed", "reason": tail(proc.stderr)}
        (raw,) = (self.work / "raw").glob(f"Dataset{dataset_id:03d}_*")
        pred = self.work / "pred" / f"{config}_{trainer}"
        t = time.time()
        try:
            proc = run_cmd(nnunet_cmd("nnUNetv2_predict", "-i", raw / "imagesTs", "-o", pred, "-d", dataset_id, "-c", config,
                                      "-f", "all", "-tr", trainer, "-device", self.s.device, "-npp", 2, "-nps", 2),
                           env, self.logs / f"predict_{config}_{trainer}.log", deadline)
        except StepTimeout as e:
            return {**row, "status": "timed out", "reason": str(e)}
        row["predict_s"] = round(time.time() - t, 1)
        if proc.returncode:
            return {**row, "status": "failed", "reason": tail(proc.stderr)}
        ending = ".png" if config == "2d" else ".nii.gz"
        refs = sorted((raw / "labelsTs").glob(f"*{ending}"))
        missing = [r.name for r in refs if not (pred / r.name).is_file()]
        if not refs or missing:
            return {**row, "status": "failed", "reason": f"predictions missing: {missing or 'no references'}"}
        from nnunet_rc.evaluation import evaluate_folder

        summary = evaluate_folder(pred, raw / "labelsTs", compute_hd95=False, progress=False, write=False)
        dice = summary["foreground_mean"]["Dice"]
        row.update(status="ok", test_dice=None if dice is None or np.isnan(dice) else round(float(dice), 3))
        return row

    def cli_compile_amp(self, deadline: float) -> dict:
        datasets = {}
        for config in self.s.cli_configs:
            dim = 2 if config == "2d" else 3
            dataset_id = 960 if dim == 2 else 965  # the synthetic target domain takes the next id
            datasets[config] = (dataset_id, self._prepare_synthetic(dim, dataset_id, deadline))
        rows: List[dict] = []
        first = [(c, BASELINE) for c in self.s.cli_configs if BASELINE in self.s.cli_trainers]
        rest = [(c, t) for t in self.s.cli_trainers if t != BASELINE for c in self.s.cli_configs]
        with ThreadPoolExecutor(max_workers=self.s.cli_parallel) as pool:
            for wave in (first, rest):
                futures = [pool.submit(self._train_predict, datasets[c][0], c, t, deadline) for c, t in wave]
                rows += [f.result() for f in futures]
        base = {r["config"]: r.get("recompiles") for r in rows if r["trainer"] == BASELINE}
        for r in rows:
            b = base.get(r["config"])
            r["recompiles_vs_baseline"] = (None if r.get("recompiles") is None or b is None
                                           else r["recompiles"] - b)
        bad = [r for r in rows if r["status"] != "ok"]
        more = [r for r in rows if (r.get("recompiles_vs_baseline") or 0) > 1]
        status = "ok" if not bad and not more else "failed"
        return {"status": status, "rows": rows,
                **({"reason": f"{len(bad)} of {len(rows)} trainings failed or timed out; "
                              f"{len(more)} recompiled more than once beyond the baseline"} if status != "ok" else {})}

    # -- 3. augmentation overhead
    def augment_overhead(self, deadline: float) -> dict:
        csv_path = self.work / "augment_overhead.csv"
        proc = run_cmd([sys.executable, str(ROOT / "benchmarks" / "augment_overhead.py"), *self.s.overhead_args,
                        "--csv", str(csv_path)], self.env, self.logs / "augment_overhead.log", deadline)
        if proc.returncode:
            return {"status": "failed", "reason": tail(proc.stderr)}
        import csv

        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        return {"rows": [{"config": r["config"], "what": r["what"], "seconds": float(r["seconds"]),
                          "time_over_network": float(r["time / network"])} for r in rows]}

    # -- 4./5. epoch time
    def epoch_time(self, name: str, deadline: float) -> dict:
        out_json = self.work / f"{name}.json"
        env = dict(self.env)
        if self.s.device == "cuda":  # timings: nnU-Net's own number of augmentation workers, nothing else running
            env.pop("nnUNet_n_proc_DA", None)
        proc = run_cmd([sys.executable, str(ROOT / "benchmarks" / "epoch_time.py"), "--device", self.s.device,
                        "--trainers", ",".join(self.s.epoch_trainers), *self.s.epoch_args[name],
                        "--out", str(self.work / name), "--json", str(out_json)],
                       env, self.logs / f"{name}.log", deadline)
        if proc.returncode:
            return {"status": "failed", "reason": tail(proc.stderr)}
        data = json.loads(out_json.read_text())
        keep = ("dim", "trainer", "median_epoch_s", "time_ratio", "peak_mem_gib", "mem_ratio", "recompiles",
                "epochs_measured")
        return {"header": data["header"], "rows": [{k: r.get(k) for k in keep} for r in data["rows"]]}

    # -- report
    def write_report(self) -> None:
        self.report["elapsed_s"] = round(time.time() - self.start, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2))
        (self.out / "gpu_check.md").write_text(format_markdown(self.report))

    def pack_logs(self) -> None:
        with tarfile.open(self.out / "gpu_check_logs.tar.gz", "w:gz") as tar:
            for p in sorted(self.logs.iterdir()):
                tar.add(p, arcname=f"logs/{p.name}")


def _fmt(v, spec=".3f"):
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def format_markdown(report: dict) -> str:
    env = report.get("environment", {})
    lines = [f"# GPU check: {env.get('device', '?')}", "",
             f"PyTorch {env.get('torch')} (CUDA {env.get('cuda')}), Python {env.get('python')}, "
             f"{env.get('host_cpus')} CPU cores; setting `{report.get('setting')}`, total budget "
             f"{report.get('budget_s')} s, {report.get('elapsed_s')} s used.", "",
             "Packages: " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items()), "",
             "| step | status | seconds | budget s |", "|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['step']} | {s['status']} | {_fmt(s.get('seconds'), '.0f')} | {s['budget_s']:.0f} |")
    for s in report["steps"]:
        if s.get("reason"):
            lines += ["", f"**{s['step']}**: {s['reason'][:1500]}"]
        if s["step"] == "cuda_unit_tests" and s.get("counts") is not None:
            lines += ["", f"CUDA unit tests: {s['counts']}"]
        if s["step"] == "cli_compile_amp" and s.get("rows"):
            lines += ["", "Real CLI, nnU-Net's defaults (compile: `Using torch.compile` in the log):", "",
                      "| config | trainer | status | compiled | recompiles | vs baseline | train s | predict s | test Dice |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in s["rows"]:
                lines.append(f"| {r['config']} | `{r['trainer']}` | {r['status']} | {_fmt(r.get('compiled'))} | "
                             f"{_fmt(r.get('recompiles'), 'd')} | {_fmt(r.get('recompiles_vs_baseline'), '+d')} | "
                             f"{_fmt(r.get('train_s'), '.0f')} | {_fmt(r.get('predict_s'), '.0f')} | "
                             f"{_fmt(r.get('test_dice'))} |")
        if s["step"] == "augment_overhead" and s.get("rows"):
            lines += ["", "| config | what | ms | × network fwd+bwd (batched/looped row: × the loop) |",
                      "|---|---|---|---|"]
            for r in s["rows"]:
                lines.append(f"| {r['config']} | {r['what']} | {r['seconds'] * 1e3:.2f} | {r['time_over_network']:.4f} |")
        if s["step"].startswith("epoch_time") and s.get("rows"):
            lines += ["", s.get("header", ""), "", "| dim | trainer | median epoch s | × baseline | peak GiB | mem × | recompiles |",
                      "|---|---|---|---|---|---|---|"]
            for r in s["rows"]:
                lines.append(f"| {r['dim']} | `{r['trainer']}` | {_fmt(r['median_epoch_s'])} | {_fmt(r['time_ratio'])} | "
                             f"{_fmt(r['peak_mem_gib'], '.2f')} | {_fmt(r['mem_ratio'], '.2f')} | {_fmt(r['recompiles'], 'd')} |")
    return "\n".join(lines) + "\n"


def check_imports() -> List[str]:
    import importlib

    missing = []
    for m in REQUIRED_MODULES:
        try:
            importlib.import_module(m)
        except ImportError as e:
            missing.append(f"{m} ({e})")
    return missing


def run(args) -> int:
    site = Path(args.site).resolve() if args.site else None
    if site:
        sys.path.insert(0, str(site))
    missing = check_imports()
    if missing:
        print(f"error: cannot import {', '.join(missing)}; install every wheel folder first "
              f"(`python3 benchmarks/gpu_check.py install gpu_wheels/part1`, then part2, into {site})", file=sys.stderr)
        return 2
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but PyTorch sees no CUDA device", file=sys.stderr)
        return 2
    settings = tiny_settings(device) if args.tiny else gpu_settings()
    out = Path(args.out).resolve()
    work = Path(args.work).resolve()
    check = Check(settings, work, out, args.budget, site)
    check.report["environment"] = check.environment()
    print(f"[gpu_check] {check.report['environment']['device']}, torch {torch.__version__}, budget {args.budget} s",
          flush=True)
    check.run_step("cuda_unit_tests", check.cuda_unit_tests)
    check.run_step("cli_compile_amp", check.cli_compile_amp)
    check.run_step("augment_overhead", check.augment_overhead)
    check.run_step("epoch_time_3d", lambda d: check.epoch_time("epoch_time_3d", d))
    check.run_step("epoch_time_2d", lambda d: check.epoch_time("epoch_time_2d", d))
    check.pack_logs()
    check.write_report()
    print(f"[gpu_check] report: {out / 'gpu_check.md'}")
    failed = [s["step"] for s in check.report["steps"] if s["status"] in ("failed", "timed out")]
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("install", help="install wheel folders into --target (no network)")
    a.add_argument("folders", nargs="+")
    a.add_argument("--target", default=str(ROOT / ".gpu_site"))
    r = sub.add_parser("run", help="run the check and write the report")
    r.add_argument("--site", default=str(ROOT / ".gpu_site"), help="folder the wheels were installed into ('' : none)")
    r.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    r.add_argument("--tiny", action="store_true", help="tiny setting (CPU test of the script itself)")
    r.add_argument("--budget", type=float, default=540.0, help="seconds for all steps together")
    r.add_argument("--out", default="gpu_check_out", help="report folder (gpu_check.md/json, logs archive)")
    r.add_argument("--work", default="/tmp/nnunet_rc_gpu_check", help="scratch folder (nnU-Net data, results, logs)")
    args = ap.parse_args(argv)
    if args.cmd == "install":
        return install([Path(f) for f in args.folders], Path(args.target))
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
