"""`nnunet-rc demo`: the fast parts in-process; the whole quick run end to end under `slow`."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from nnunet_rc.demo import DEFAULT_TRAINERS, DemoConfig, DemoError, MARKER, _prepare_out, _run, _write_split, \
    format_table, run_demo


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not made by `nnunet-rc demo`"):
        run_demo(DemoConfig(out=tmp_path, schedule="quick"))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_replaces_its_own_previous_output(tmp_path):
    out = tmp_path / "demo"
    _prepare_out(out)
    (out / "old.txt").write_text("x")
    _prepare_out(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_failed_command_names_command_and_log(tmp_path):
    log = tmp_path / "logs" / "step.log"
    cmd = [sys.executable, "-c", "import sys; print('something broke'); sys.exit(3)"]
    with pytest.raises(DemoError) as e:
        _run(cmd, log, env={})
    msg = str(e.value)
    assert "exit 3" in msg and sys.executable in msg and str(log) in msg and "something broke" in msg
    assert "something broke" in log.read_text()


def test_split_keeps_a_small_validation_set(tmp_path):
    _write_split(tmp_path, 40)
    (split,) = json.loads((tmp_path / "splits_final.json").read_text())
    assert split["val"] == ["train036", "train037", "train038", "train039"]
    assert len(split["train"]) == 36 and not set(split["train"]) & set(split["val"])
    _write_split(tmp_path, 12)
    (split,) = json.loads((tmp_path / "splits_final.json").read_text())
    assert split["val"] == ["train011"] and len(split["train"]) == 11


def test_format_table():
    rows = [{"trainer": "nnUNetTrainerDGBaseline", "dice": {"source": 0.9, "a": 0.2, "b": 0.4},
             "target_mean": 0.3, "delta_target_mean": 0.0, "delta_in_domain": 0.0},
            {"trainer": "nnUNetTrainerRandConv", "dice": {"source": 0.89, "a": 0.7, "b": 0.6},
             "target_mean": 0.65, "delta_target_mean": 0.35, "delta_in_domain": -0.01}]
    lines = format_table(rows, ["source", "a", "b"], ["a", "b"]).splitlines()
    assert lines[0].split() == ["trainer", "source", "(in-domain)", "a", "b", "target", "mean", "d", "target", "vs",
                                "baseline", "d", "in-domain", "vs", "baseline"]
    assert lines[3].split() == ["nnUNetTrainerRandConv", "0.890", "0.700", "0.600", "0.650", "+0.350", "-0.010"]


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    from conftest import run_cli

    out = tmp_path / "demo"
    proc = run_cli(["nnunet-rc", "demo", "--quick", "--out", out], timeout=3000)
    assert str(out) in proc.stdout and "target mean" in proc.stdout
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trainer"] for r in rows] == list(DEFAULT_TRAINERS)
    for r in rows:
        for col in ("source", "inverted", "texture", "blur", "target_mean"):
            assert 0.0 <= float(r[col]) <= 1.0
    results = json.loads((out / "results.json").read_text())
    assert results["targets"] == ["inverted", "texture", "blur"] and results["schedule"]["name"] == "quick"
    assert (out / "examples.png").stat().st_size > 1000
    for t in DEFAULT_TRAINERS:
        assert len(list((out / "predictions" / t / "inverted").glob("*.png"))) == 10
        assert (out / "logs" / f"02_train_{t}.log").is_file()
