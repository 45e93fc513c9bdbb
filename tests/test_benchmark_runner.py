"""``nnunet-rc benchmark``: config handling, comparison table, failing commands, and a real resumable run."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from conftest import run_cli
from nnunet_rc.evaluation.benchmark import (BenchmarkError, _run, compare, comparison_table, load_config, resolve,
                                            write_comparison)


def _fake_dataset(raw, dataset_id=950, name="Fake"):
    folder = raw / f"Dataset{dataset_id}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "fg": 1}, "file_ending": ".png",
                                                     "channel_names": {"0": "grey"}, "numTraining": 0}))
    return folder


def test_resolve_config_defaults_env_and_errors(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    folder = _fake_dataset(raw)
    (tmp_path / "siteB" / "img").mkdir(parents=True)
    (tmp_path / "siteB" / "lab").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    cfg_path = tmp_path / "bench.toml"
    cfg_path.write_text('trainers = ["nnUNetTrainerDGBaseline"]\nfolds = [0, 1]\n'
                        '[source]\ndataset = 950\nconfiguration = "2d"\n'
                        '[source.test]\ndataset = 950\nsplit = "Ts"\n'
                        '[[targets]]\nname = "siteB"\nimages = "siteB/img"\nlabels = "siteB/lab"\n'
                        '[schedule]\nepochs = 3\niterations = 5\n')
    plan = resolve(load_config(cfg_path))
    assert [t["name"] for t in plan["targets"]] == ["Fake (in-domain)", "siteB"]
    assert plan["targets"][0]["in_domain"] and not plan["targets"][1]["in_domain"]
    assert plan["targets"][0]["images"] == str(folder / "imagesTs")
    assert plan["targets"][1]["images"] == str(tmp_path / "siteB" / "img")     # relative to the config file
    assert plan["targets"][1]["dataset_json"] == str(folder / "dataset.json")  # falls back to the source's
    assert plan["env"]["NNUNET_RC_EPOCHS"] == "3" and plan["env"]["NNUNET_RC_ITERATIONS"] == "5"
    assert "NNUNET_RC_VAL_ITERATIONS" not in plan["env"]
    assert plan["folds"] == ["0", "1"] and plan["dataset_name"] == "Dataset950_Fake"
    with pytest.raises(BenchmarkError, match="trainers"):
        resolve({"source": {"dataset": 950, "configuration": "2d"}, "_base": str(tmp_path)})
    with pytest.raises(BenchmarkError, match="does not exist"):
        resolve({"source": {"dataset": 950, "configuration": "2d"}, "trainers": ["T"], "_base": str(tmp_path),
                 "targets": [{"name": "x", "images": "nope", "labels": "nope"}]})
    with pytest.raises(BenchmarkError, match="Dataset951"):
        resolve({"source": {"dataset": 951, "configuration": "2d"}, "trainers": ["T"], "_base": str(tmp_path)})


def _res(dice):
    return {"foreground_mean": {"Dice": dice, "HD95": None}, "groups": {}}


def test_comparison_mean_std_over_folds_and_outputs(tmp_path):
    plan = {"metric": "Dice", "folds": ["0", "1"], "trainers": ["nnUNetTrainerA", "nnUNetTrainerB"],
            "targets": [{"name": "src (in-domain)", "in_domain": True}, {"name": "t1", "in_domain": False},
                        {"name": "t2", "in_domain": False}]}
    values = {"nnUNetTrainerA": {"src (in-domain)": (0.9, 0.8), "t1": (0.5, 0.7), "t2": (0.2, 0.4)},
              "nnUNetTrainerB": {"src (in-domain)": (0.9, 0.9), "t1": (0.6, 0.6), "t2": (0.0, 0.4)}}
    results = {tr: {t: {"0": _res(v[0]), "1": _res(v[1])} for t, v in tv.items()} for tr, tv in values.items()}
    comp = compare(plan, results)
    assert comp["columns"] == ["src (in-domain)", "t1", "t2", "OOD mean"]
    a = comp["rows"]["nnUNetTrainerA"]
    assert a["t1"]["mean"] == pytest.approx(0.6) and a["t1"]["std"] == pytest.approx(0.1)
    assert a["OOD mean"]["mean"] == pytest.approx(0.45)                  # folds: (0.35, 0.55)
    assert comp["rows"]["nnUNetTrainerB"]["OOD mean"]["mean"] == pytest.approx(0.4)  # 0.0 counts as a value
    assert "0.6000 ± 0.1000" in comparison_table(comp)
    write_comparison(comp, tmp_path)
    rows = list(csv.reader(open(tmp_path / "comparison.csv")))
    assert rows[0] == ["trainer", "src (in-domain)", "src (in-domain) std", "t1", "t1 std", "t2", "t2 std",
                       "OOD mean", "OOD mean std"]
    assert [r[0] for r in rows[1:]] == ["nnUNetTrainerA", "nnUNetTrainerB"]
    assert float(rows[1][3]) == pytest.approx(0.6)
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert json.loads((tmp_path / "comparison.json").read_text())["rows"]["nnUNetTrainerB"]["t2"]["folds"] == [0.0, 0.4]


def test_failing_command_names_command_and_log(tmp_path):
    log = tmp_path / "logs" / "step.log"
    with pytest.raises(BenchmarkError) as err:
        _run([sys.executable, "-c", "print('boom happened'); raise SystemExit(3)"], log, {})
    msg = str(err.value)
    assert "exit 3" in msg and str(log) in msg and "boom happened" in msg
    assert "boom happened" in log.read_text()


def test_benchmark_end_to_end_and_resume(preprocessed_2d, tmp_path):
    raw = preprocessed_2d["raw"]
    cfg = {"source": {"dataset": preprocessed_2d["id"], "configuration": preprocessed_2d["config"]},
           "trainers": ["nnUNetTrainerDGBaseline"], "folds": [0],
           "targets": [{"name": "self", "images": str(raw / "imagesTr"), "labels": str(raw / "labelsTr")}],
           "schedule": {"epochs": 1, "iterations": 2, "val_iterations": 1},
           "device": "cpu", "output": str(tmp_path / "bench"), "results": str(tmp_path / "results")}
    cfg_file = tmp_path / "bench.json"
    cfg_file.write_text(json.dumps(cfg))
    first = run_cli(["nnunet-rc", "benchmark", "--config", cfg_file])
    assert "trained 1 (skipped 0" in first.stdout and "predicted 1 (skipped 0" in first.stdout
    out = tmp_path / "bench"
    assert (tmp_path / "results" / preprocessed_2d["name"] / "nnUNetTrainerDGBaseline__nnUNetPlans__2d" / "fold_0"
            / "checkpoint_final.pth").is_file()
    rows = list(csv.reader(open(out / "comparison.csv")))
    assert rows[0] == ["trainer", "self", "self std"]
    assert [r[0] for r in rows[1:]] == ["nnUNetTrainerDGBaseline"]
    assert 0.0 <= float(rows[1][1]) <= 1.0
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "logs" / "train_nnUNetTrainerDGBaseline_fold0.log").is_file()
    assert len(list((out / "predictions" / "nnUNetTrainerDGBaseline" / "fold_0" / "self").glob("*.png"))) == 5
    assert "nnUNetTrainerDGBaseline" in first.stdout and "self" in first.stdout
    second = run_cli(["nnunet-rc", "benchmark", "--config", cfg_file])
    assert "trained 0 (skipped 1" in second.stdout and "predicted 0 (skipped 1" in second.stdout
    assert list(csv.reader(open(out / "comparison.csv"))) == rows


def test_example_config_is_valid_json_with_required_keys():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "example_benchmark.json")
    assert {"source", "trainers", "targets", "folds", "schedule"} <= set(cfg)
    assert cfg["source"]["test"] and all("name" in t for t in cfg["targets"])
