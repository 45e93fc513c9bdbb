"""benchmarks/gpu_wheels.py and benchmarks/gpu_check.py: the GPU check as one prepared call, proven on CPU.

The tiny setting runs exactly as on the GPU machine: in a fresh virtual environment that holds only
what that machine's image holds (``gpu_wheels.GPU_PREINSTALLED`` and what those need, linked from this
venv), with the wheel folders ``make gpu-wheels`` builds (here for this machine's Python) installed by
``gpu_check.py install`` into a target folder, one folder per call, and no nnU-Net anywhere else. A
wheel missing from the set fails the run with an ImportError.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


gpu_wheels = load_benchmark("gpu_wheels")
gpu_check = load_benchmark("gpu_check")


def test_split_into_parts_first_fit_decreasing():
    mib = gpu_wheels.MIB
    parts = gpu_wheels.split_into_parts({"big": 50 * mib, "mid": 8 * mib, "a": 3 * mib, "b": 1 * mib}, 58 * mib)
    assert parts == [["big", "mid"], ["a", "b"]]
    with pytest.raises(gpu_wheels.WheelError, match="more than one part may hold"):
        gpu_wheels.split_into_parts({"huge": 70 * mib}, 58 * mib)


def test_markdown_report_names_the_device_and_every_step():
    report = {"budget_s": 540, "elapsed_s": 12.0, "setting": "gpu",
              "environment": {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0", "python": "3.12.3",
                              "host_cpus": 16, "packages": {"nnunetv2": "2.8.1"}},
              "steps": [{"step": "cuda_unit_tests", "budget_s": 90, "status": "ok", "seconds": 10, "counts": {"passed": 4}},
                        {"step": "epoch_time_2d", "budget_s": 120, "status": "skipped", "reason": "5 s left"}]}
    md_text = gpu_check.format_markdown(report)
    assert md_text.startswith("# GPU check: NVIDIA H100 80GB HBM3")
    assert "| cuda_unit_tests | ok | 10 | 90 |" in md_text and "| epoch_time_2d | skipped | – | 120 |" in md_text
    assert "**epoch_time_2d**: 5 s left" in md_text


def test_a_step_that_does_not_fit_is_skipped_not_started(tmp_path):
    settings = gpu_check.tiny_settings()
    settings.budgets = {"first": 5, "second": 1000}
    check = gpu_check.Check(settings, tmp_path / "work", tmp_path / "out", budget=30, site=None)
    ran = []
    check.run_step("first", lambda deadline: ran.append("first") or {"value": 1})
    check.run_step("second", lambda deadline: ran.append("second") or {})
    assert ran == ["first"]
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["ok", "skipped"] and steps[0]["value"] == 1
    assert "needs 1000 s" in steps[1]["reason"]


def test_a_command_past_its_budget_is_killed(tmp_path):
    import time

    t = time.time()
    with pytest.raises(gpu_check.StepTimeout, match="budget"):
        gpu_check.run_cmd([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ),
                          tmp_path / "log.txt", deadline=time.time() + 1.5)
    assert time.time() - t < 20
    assert "killed at the step's budget" in (tmp_path / "log.txt").read_text()


def _closure(names):
    """The installed distributions ``names`` and everything they require (no extras), normalized names."""
    from packaging.requirements import Requirement

    seen, todo = {}, list(names)
    while todo:
        n = gpu_wheels.norm(todo.pop())
        if n in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            seen[n] = None
            continue
        seen[n] = dist
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return {n: d for n, d in seen.items() if d is not None}


def _gpu_like_venv(path: Path) -> Path:
    """A venv holding only the GPU image's packages (linked from this venv's site-packages)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next((path / "lib").glob("python3*/site-packages"))
    runtime = {gpu_wheels.norm(n) for n in gpu_wheels.RUNTIME_WHEELS} | {"nnunet-rc"}
    for name, dist in _closure(gpu_wheels.GPU_PREINSTALLED).items():
        assert name not in runtime, f"{name} is both preinstalled and carried"
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    return path / "bin" / "python"


@pytest.mark.slow  # ~3 min of one test worker: in make test-all, not in make test
def test_gpu_check_tiny_setting_in_a_gpu_like_environment(tmp_path):
    wheels = tmp_path / "wheels"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = gpu_wheels.build(wheels, python_version, part_mib=58.0, progress=False)
    assert len(manifest["parts"]) == 2, "SimpleITK's wheel alone fills most of one call's 64 MiB"
    names = [w["distribution"] for p in manifest["parts"].values() for w in p["wheels"]]
    assert sorted(names) == sorted(set(names)) and "nnunet_rc" in names and "imagecodecs" not in names
    assert all(p["bytes"] <= 58 * gpu_wheels.MIB for p in manifest["parts"].values())

    python = _gpu_like_venv(tmp_path / "gpu_venv")
    probe = subprocess.run([str(python), "-c", "import torch, numpy, sklearn; import nnunetv2"], capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "nnunetv2" in probe.stderr  # nothing of nnU-Net before the install

    script = str(ROOT / "benchmarks" / "gpu_check.py")
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "PYTHONPATH"}
    for part in sorted(manifest["parts"]):  # one folder per call, as on the GPU machine
        subprocess.run([str(python), script, "install", str(wheels / part), "--target", str(target)], check=True,
                       env=env)
    out = tmp_path / "report"
    proc = subprocess.run([str(python), script, "run", "--tiny", "--device", "cpu", "--site", str(target),
                           "--out", str(out), "--work", str(tmp_path / "work")], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["environment"]["device"].startswith("CPU")
    assert all(Path(p).is_relative_to(target) for p in report["environment"]["locations"].values()), \
        report["environment"]["locations"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["cuda_unit_tests"]["status"] == "ok (all skipped: no CUDA)"
    assert steps["cuda_unit_tests"]["counts"]["skipped"] >= 1
    rows = steps["cli_compile_amp"]["rows"]
    assert [(r["config"], r["trainer"], r["status"]) for r in rows] == [
        ("2d", "nnUNetTrainerDGBaseline", "ok"), ("2d", "nnUNetTrainerRAS4DG", "ok")]
    assert all(r["recompiles_vs_baseline"] == 0 and 0 <= r["test_dice"] <= 1 for r in rows)
    assert {r["what"] for r in steps["augment_overhead"]["rows"]} >= {"network fwd+bwd", "aug RandConv", "block RSD"}
    assert steps["epoch_time_3d"]["status"] == "not in this setting"
    epoch_rows = steps["epoch_time_2d"]["rows"]
    assert [r["trainer"] for r in epoch_rows] == ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv"]
    assert epoch_rows[0]["time_ratio"] == 1.0 and epoch_rows[1]["time_ratio"] > 0
    assert all(r["epochs_measured"] == 1 and r["peak_mem_gib"] is None for r in epoch_rows)
    log = next((tmp_path / "work" / "epoch_time_2d" / "results").rglob(
        "nnUNetTrainerRandConv__*/fold_all/training_log_*.txt")).read_text()
    assert "batch augmentations applied to 1 training batches" in log
    md_text = (out / "gpu_check.md").read_text()
    assert md_text.startswith("# GPU check: CPU") and "`nnUNetTrainerRAS4DG`" in md_text
    assert (out / "gpu_check_logs.tar.gz").is_file()


def test_run_without_the_wheels_says_what_to_install(tmp_path):
    python = _gpu_like_venv(tmp_path / "gpu_venv")
    proc = subprocess.run([str(python), str(ROOT / "benchmarks" / "gpu_check.py"), "run", "--site",
                           str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert re.search(r"cannot import nnunetv2 .*install every wheel folder first", proc.stderr), proc.stderr
