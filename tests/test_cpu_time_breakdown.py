"""benchmarks/cpu_time_breakdown.py: the parts of a CPU training timed apart, on the tiny fixture dataset."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_time_breakdown.py"


@pytest.mark.slow
def test_breakdown_of_a_tiny_plan(preprocessed_2d, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "-d", str(preprocessed_2d["id"]), "-c", "2d",
                           "--trainers", "nnUNetTrainerDGBaseline,nnUNetTrainerRAS4DG", "--batches", "2",
                           "--cases", "1", "--iterations", "10", "--val-iterations", "2", "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["patch_size"] == [32, 32] and res["data_s"] > 0 and res["predict_tta_s"] > 0
    for name in ("nnUNetTrainerDGBaseline", "nnUNetTrainerRAS4DG"):
        t = res["trainers"][name]
        assert t["train_step_s"] > 0 and t["epoch_estimate_s"] == pytest.approx(
            10 * (res["data_s"] + t["train_step_s"]) + 2 * (res["val_data_s"] + t["val_step_s"]))
    assert res["trainers"]["nnUNetTrainerRAS4DG"]["parameters"] > res["trainers"]["nnUNetTrainerDGBaseline"]["parameters"]
    assert "train_step s" in proc.stdout and "nnU-Net CPU augmentation" in proc.stdout
