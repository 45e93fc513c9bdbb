"""benchmarks/epoch_time.py: parsing nnU-Net's training logs, the ratios, and one tiny real CPU run."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import load_benchmark

epoch_time = load_benchmark("epoch_time")

LOG = """2026-11-22 15:22:22.516396: Using torch.compile...
2026-11-22 15:22:27.818961: Epoch 0
2026-11-22 15:22:43.818961: train_loss -0.1
2026-11-22 15:22:43.818961: Epoch time: 15.98 s
2026-11-22 15:22:43.900000: Epoch 1
2026-11-22 15:22:46.606464: Epoch time: 1.24 s
2026-11-22 15:22:46.700000: Epoch 2
2026-11-22 15:22:49.294934: Epoch time: 1.19 s
2026-11-22 15:22:49.300000: Epoch 3
2026-11-22 15:22:51.000000: Epoch time: 2 s
"""


def test_parse_skips_the_first_epoch_and_keeps_the_order():
    assert epoch_time.parse_epoch_times(LOG) == [1.24, 1.19, 2.0]
    assert epoch_time.parse_epoch_times(LOG, skip_first=0)[0] == 15.98


def test_parse_rejects_a_log_with_too_few_epochs():
    with pytest.raises(epoch_time.EpochTimeError, match="1 'Epoch time' line"):
        epoch_time.parse_epoch_times(LOG.split("Epoch 1")[0])
    with pytest.raises(epoch_time.EpochTimeError, match="0 'Epoch time'"):
        epoch_time.parse_epoch_times("no epochs here")


def test_ratios_against_the_baseline_of_the_same_dimension():
    rows = [{"dim": "3d", "trainer": "nnUNetTrainerDGBaseline", "median_epoch_s": 2.0, "peak_mem_gib": 4.0},
            {"dim": "3d", "trainer": "nnUNetTrainerRandConv", "median_epoch_s": 2.2, "peak_mem_gib": 5.0},
            {"dim": "2d", "trainer": "nnUNetTrainerDGBaseline", "median_epoch_s": 1.0, "peak_mem_gib": None},
            {"dim": "2d", "trainer": "nnUNetTrainerGIN", "median_epoch_s": 3.0, "peak_mem_gib": None}]
    epoch_time.ratios(rows)
    assert rows[1]["time_ratio"] == pytest.approx(1.1) and rows[1]["mem_ratio"] == pytest.approx(1.25)
    assert rows[3]["time_ratio"] == pytest.approx(3.0) and rows[3]["mem_ratio"] is None
    assert epoch_time.count_recompiles("x Recompiling function forward\ny Recompiling function f") == 2


@pytest.mark.slow  # the default suite runs epoch_time.py end to end inside gpu_check's tiny setting
def test_tiny_cpu_run_prints_the_ratio_table(tmp_path, capsys, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "work"
    rc = epoch_time.main(["--device", "cpu", "--dims", "2", "--size2d", "32", "--cases", "2", "--epochs", "2",
                          "--iterations", "1", "--val-iterations", "1", "--processes", "1",
                          "--trainers", "nnUNetTrainerDGBaseline,nnUNetTrainerRandConv", "--out", str(out),
                          "--json", str(tmp_path / "t.json")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "× baseline" in printed and "CPU (" in printed
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["trainer"] for r in rows] == ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv"]
    assert rows[0]["time_ratio"] == 1.0 and rows[1]["time_ratio"] > 0 and rows[1]["epochs_measured"] == 1
    assert all(r["peak_mem_gib"] is None for r in rows)  # no GPU
    log = next((out / "results").rglob("nnUNetTrainerRandConv__*/fold_all/training_log_*.txt")).read_text()
    assert "batch augmentations applied to 1 training batches" in log
