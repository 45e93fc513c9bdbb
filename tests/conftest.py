"""Shared fixtures: an isolated nnU-Net environment, tiny synthetic datasets, and CLI helpers.

Session-scoped, so the expensive nnU-Net steps (plan + preprocess) run once per test session:
``preprocessed_2d`` (Dataset901, 2D PNG, 1 channel) and ``preprocessed_3d`` (Dataset902, 3D NIfTI,
2 channels). Use :func:`run_cli` for real nnU-Net / nnunet-rc commands, and :func:`short_schedule_env`
for trainings of a few iterations.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent

#: Few iterations, one epoch: enough to exercise every step of nnUNetv2_train on CPU.
SHORT_SCHEDULE = {"NNUNET_RC_EPOCHS": "1", "NNUNET_RC_ITERATIONS": "2", "NNUNET_RC_VAL_ITERATIONS": "1"}

#: ``NNUNET_RC_TEST_DEVICE=cuda`` runs every real-CLI test on the GPU under nnU-Net's CUDA defaults
#: (``torch.compile`` on, autocast + grad scaler): ``-device cpu`` becomes ``-device cuda``, training runs
#: more iterations (:data:`CUDA_ITERATIONS`) and fails when dynamo recompiles more than
#: :data:`MAX_RECOMPILES` times (a recompilation on every step would exceed it). Default: ``cpu``.
TEST_DEVICE = os.environ.get("NNUNET_RC_TEST_DEVICE", "cpu")
CUDA_ITERATIONS = 8
MAX_RECOMPILES = 3


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` imported as module ``name`` (the scripts are not a package); registered in
    ``sys.modules``, where dataclasses look their module up."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def train_iterations(env: dict) -> int:
    """Training iterations per epoch that :func:`run_cli` gives ``nnUNetv2_train`` under ``env``."""
    return CUDA_ITERATIONS if TEST_DEVICE == "cuda" else int(env["NNUNET_RC_ITERATIONS"])


def count_recompiles(stderr: str) -> int:
    """Number of dynamo recompilations logged with ``TORCH_LOGS=recompiles`` (one ``Recompiling
    function`` line each; a hit of the cache size limit counts as too many)."""
    if "cache_size_limit" in stderr or "recompile_limit" in stderr:
        return 10 ** 6
    return stderr.count("Recompiling function")


def run_cli(args, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Run a console command from this venv (``args[0]`` is looked up in the venv's bin folder).

    With ``NNUNET_RC_TEST_DEVICE=cuda`` a ``-device cpu`` argument is replaced by ``-device cuda`` and
    ``nnUNetv2_train`` runs :data:`CUDA_ITERATIONS` iterations with dynamo's recompilation log checked."""
    exe = BIN / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *map(str, args[1:])]
    env = {**os.environ, **(env or {})}
    on_cuda = TEST_DEVICE == "cuda" and "-device" in cmd and cmd[cmd.index("-device") + 1] == "cpu"
    if on_cuda:
        cmd[cmd.index("-device") + 1] = "cuda"
        if args[0] == "nnUNetv2_train":
            env.update({"TORCH_LOGS": "recompiles", "NNUNET_RC_ITERATIONS": str(CUDA_ITERATIONS)})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout ---\n"
                             f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    if check and on_cuda and args[0] == "nnUNetv2_train":
        n = count_recompiles(proc.stderr)
        assert n <= MAX_RECOMPILES, (f"{' '.join(cmd)}: dynamo recompiled {n} times in {CUDA_ITERATIONS} "
                                     f"iterations\n{proc.stderr[-6000:]}")
        print(f"[cuda] {' '.join(cmd[1:])}: {n} recompilation(s)")
    return proc


def short_schedule_env(**extra) -> dict:
    return {**SHORT_SCHEDULE, **extra}


# ---- tiny synthetic datasets --------------------------------------------------------------------------

def _blob_label(shape, rng) -> np.ndarray:
    """Two labels: a large ellipsoid (1) with a smaller one inside (2)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    center = rng.uniform(-0.15, 0.15, size=len(shape))
    radius = rng.uniform(0.45, 0.65, size=len(shape))
    r = np.sqrt(sum(((g - c) / rr) ** 2 for g, c, rr in zip(grids, center, radius)))
    label = np.zeros(shape, np.uint8)
    label[r < 1] = 1
    label[r < 0.45] = 2
    return label


def write_tiny_dataset(raw: Path, dataset_id: int, dim: int, num_cases: int = 5, num_channels: int = 1,
                       size: int = 32, seed: int = 0, name: str = "Tiny") -> Path:
    """Write a tiny nnU-Net raw dataset (2D: grey PNG; 3D: NIfTI) with labels {0, 1, 2}."""
    import SimpleITK as sitk
    from PIL import Image
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    rng = np.random.default_rng(seed)
    folder = Path(raw) / f"Dataset{dataset_id:03d}_{name}{dim}D"
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    ending = ".png" if dim == 2 else ".nii.gz"
    if dim == 2:
        assert num_channels == 1, "2D tiny datasets are grey PNGs"
    shape = (size,) * dim
    for i in range(num_cases):
        label = _blob_label(shape, rng)
        case = f"case{i:03d}"
        for c in range(num_channels):
            img = (40 + 60 * label * (c + 1) + rng.normal(0, 10, shape)).clip(0, 255)
            if dim == 2:
                Image.fromarray(img.astype(np.uint8)).save(folder / "imagesTr" / f"{case}_{c:04d}.png")
            else:
                im = sitk.GetImageFromArray(img.astype(np.float32))
                im.SetSpacing((1.0, 1.0, 1.0))
                sitk.WriteImage(im, str(folder / "imagesTr" / f"{case}_{c:04d}.nii.gz"))
        if dim == 2:
            Image.fromarray(label).save(folder / "labelsTr" / f"{case}.png")
        else:
            lb = sitk.GetImageFromArray(label)
            lb.SetSpacing((1.0, 1.0, 1.0))
            sitk.WriteImage(lb, str(folder / "labelsTr" / f"{case}.nii.gz"))
    channels = {str(c): ("MRI" if dim == 3 else "grey") for c in range(num_channels)}
    generate_dataset_json(str(folder), channels, {"background": 0, "outer": 1, "inner": 2}, num_cases, ending,
                          dataset_name=folder.name)
    return folder


# ---- the nnU-Net environment -----------------------------------------------------------------------------

def _session_root(tmp_path_factory) -> Path:
    """One folder per test session, shared by all pytest-xdist workers of that session."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "nnunet_shared"
        root.mkdir(exist_ok=True)
        return root
    return tmp_path_factory.mktemp("nnunet")


def _once(root: Path, key: str, make) -> None:
    """Run ``make()`` once per session even with several xdist workers (file lock + marker)."""
    from filelock import FileLock

    marker = root / f".{key}.done"
    with FileLock(str(root / f".{key}.lock")):
        if not marker.exists():
            make()
            marker.touch()


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory):
    """Isolated nnUNet_raw/preprocessed/results, the plugin registered, CPU-friendly knobs. Set in
    ``os.environ`` for the whole session (in-process code and subprocesses see the same); shared by
    the xdist workers of a session (tests use distinct dataset ids)."""
    from nnunet_rc import trainer_path

    root = _session_root(tmp_path_factory)
    env = {
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"),
        "nnUNet_extTrainer": trainer_path(),
        "nnUNet_n_proc_DA": "1",
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": "2",
    }
    if TEST_DEVICE == "cuda":  # nnU-Net's CUDA default: compile on
        del env["nnUNet_compile"]
        os.environ.pop("nnUNet_compile", None)
    for k in ("raw", "preprocessed", "results"):
        (root / k).mkdir(exist_ok=True)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


#: Foreground intensity samples for a fixture's fingerprint. nnU-Net draws 1e8 per channel whatever the
#: dataset's size (arrays of 400 MB per channel); the fixtures have < 1e6 foreground voxels, so 1e5 samples
#: give the same statistics within ~1 %. Measured on a 2-core machine: the default suite 14 min 16 s -> 9 min 57 s.
FIXTURE_FINGERPRINT_SAMPLES = 100_000


def write_fingerprint(dataset_id: int) -> None:
    """Write ``dataset_fingerprint.json`` for a fixture dataset with nnU-Net's own
    ``DatasetFingerprintExtractor``, drawing :data:`FIXTURE_FINGERPRINT_SAMPLES` foreground intensities
    instead of 1e8. A later ``nnUNetv2_plan_and_preprocess`` (without ``--clean``) keeps this file and
    runs everything else as usual, ``--verify_dataset_integrity`` included. Runs in a subprocess: nnU-Net
    reads its folders from the environment when ``nnunetv2.paths`` is first imported."""
    code = ("from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import "
            "DatasetFingerprintExtractor as E\n"
            "if __name__ == '__main__':\n"
            f"    e = E({int(dataset_id)}, num_processes=1, verbose=False)\n"
            f"    e.num_foreground_voxels_for_intensitystats = {FIXTURE_FINGERPRINT_SAMPLES}\n"
            "    e.show_progress_bar = False\n"
            "    e.run(overwrite_existing=True)\n")
    run_cli([sys.executable, "-c", code])


def plan_and_preprocess(dataset_id: int, configs) -> None:
    """``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` on a fixture-size dataset (one process),
    its fingerprint written first by :func:`write_fingerprint`."""
    write_fingerprint(dataset_id)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configs, "-np", "1", "-npfp", "1",
             "--verify_dataset_integrity"])


@pytest.fixture(scope="session")
def preprocessed_2d(nnunet_env):
    """Dataset 901: five 32x32 grey PNG cases, labels {0,1,2}, planned and preprocessed for ``2d``."""
    raw = Path(nnunet_env["nnUNet_raw"])
    _once(raw.parent, "dataset901", lambda: (write_tiny_dataset(raw, 901, dim=2), plan_and_preprocess(901, ["2d"])))
    folder = raw / "Dataset901_Tiny2D"
    return {"id": 901, "name": folder.name, "raw": folder, "config": "2d"}


@pytest.fixture(scope="session")
def preprocessed_3d(nnunet_env):
    """Dataset 902: five 32^3 two-channel NIfTI cases, labels {0,1,2}, preprocessed for ``3d_fullres``."""
    raw = Path(nnunet_env["nnUNet_raw"])
    _once(raw.parent, "dataset902",
          lambda: (write_tiny_dataset(raw, 902, dim=3, num_channels=2), plan_and_preprocess(902, ["3d_fullres"])))
    folder = raw / "Dataset902_Tiny3D"
    return {"id": 902, "name": folder.name, "raw": folder, "config": "3d_fullres"}


# ---- in-process trainer helpers ---------------------------------------------------------------------------

def make_trainer(trainer_cls, dataset: dict, fold=0, edit_plans=None, initialize: bool = True):
    """Instantiate ``trainer_cls`` on a preprocessed fixture dataset (CPU) and initialize it.
    ``edit_plans(plans)`` may change the plans dict in place first (e.g. a coarser spacing)."""
    import torch

    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset["name"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    if edit_plans is not None:
        edit_plans(plans)
    dataset_json = json.loads((pre / "dataset.json").read_text())
    trainer = trainer_cls(plans, dataset["config"], fold, dataset_json, device=torch.device("cpu"))
    if initialize:
        trainer.initialize()
    return trainer


def synthetic_batch(trainer, batch_size: int = 2, seed: int = 0) -> dict:
    """A batch shaped like nnU-Net's training batch for ``trainer`` (deep supervision targets)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    patch = list(trainer.configuration_manager.patch_size)
    data = torch.randn(batch_size, trainer.num_input_channels, *patch, generator=g)
    full = torch.randint(0, trainer.label_manager.num_segmentation_heads, (batch_size, 1, *patch), generator=g)
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        target = full.to(torch.int16)
    else:
        target = []
        for s in scales:
            size = [max(1, int(round(p * f))) for p, f in zip(patch, s)]
            target.append(torch.nn.functional.interpolate(full.float(), size=size, mode="nearest").to(torch.int16))
    return {"data": data, "target": target, "keys": [f"case{i}" for i in range(batch_size)]}
