"""benchmarks/vessel_visibility.py: the label-aware visibility measure, and a run on the tiny fixture plan."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vessel_visibility.py"


def _module():
    return load_benchmark("vessel_visibility")


def test_visibility_separates_inverts_and_vanishes():
    vis = _module().visibility
    rng = np.random.default_rng(0)
    fg = np.zeros((32, 32), bool)
    fg[10:22, 14:18] = True
    ring = np.zeros_like(fg)
    ring[8:24, 11:21] = True
    ring &= ~fg
    noise = rng.normal(0, 1, (1, 32, 32)).astype(np.float32)
    bright = noise + 10 * fg
    assert vis(bright, fg, ring) > 0.99                       # perfectly separable
    assert vis(-bright, fg, ring) > 0.99                      # contrast inversion keeps it
    assert vis(noise, fg, ring) < 0.3                         # pure noise: nothing to see
    assert vis(np.concatenate([noise, bright]), fg, ring) > 0.99  # the best channel counts


def test_runs_on_a_preprocessed_plan(preprocessed_2d, tmp_path):
    out = tmp_path / "vis.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), "-d", str(preprocessed_2d["id"]), "-c", "2d",
                           "-a", "RandConv,RMS", "--per-kernel-size", "--cases", "2", "--draws", "3",
                           "--csv", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["augmentation"] for r in rows] == ["RandConv", "RandConv k=1", "RandConv k=3", "RandConv k=5",
                                                 "RandConv k=7", "RMS"]
    # one grey channel: 1x1 random convolutions only rescale it (the sign does not matter), so the per-size row
    # proves its kernel size reached the augmentation: the structure stays exactly as visible
    k1 = next(r for r in rows if r["augmentation"] == "RandConv k=1")
    assert abs(float(k1["median_relative"]) - 1) < 1e-4 and float(k1["lost_share"]) == 0
    for r in rows:
        assert r["plans"] == "nnUNetPlans" and 0 <= float(r["lost_share"]) <= 1
        assert float(r["base_visibility"]) > 0 and float(r["median_relative"]) >= 0
    assert "visibility without augmentation" in proc.stdout
