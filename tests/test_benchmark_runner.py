"""``nnunet-rc benchmark``: config handling, comparison table, failing commands, and a real resumable run."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import run_cli, write_fingerprint
from nnunet_rc.evaluation.benchmark import (PROFILES, BenchmarkError, _run, apply_overrides, compare,
                                            comparison_table, load_config, resolve, run_benchmark,
                                            write_comparison)
from nnunet_rc.evaluation.stats import case_values, fold_mean, paired_test


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
    assert rows[0] == ["trainer"] + [f"{c}{x}" for c in ("src (in-domain)", "t1", "t2", "OOD mean")
                                     for x in ("", " std", " delta", " p", " n_pairs")]
    assert [r[0] for r in rows[1:]] == ["nnUNetTrainerA", "nnUNetTrainerB"]
    assert float(rows[1][6]) == pytest.approx(0.6)
    assert comp["baseline"] == "nnUNetTrainerA"  # the first trainer when the family baseline is absent
    assert comp["rows"]["nnUNetTrainerB"]["t1"]["delta"] == pytest.approx(0.0)
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
    assert rows[0] == ["trainer", "self", "self std", "self delta", "self p", "self n_pairs", "converged",
                       "converged max change"]
    assert rows[1][6] == "n/a"  # one epoch: too few to tell a plateau
    conv = json.loads((out / "comparison.json").read_text())["convergence"]["nnUNetTrainerDGBaseline"]["0"]
    assert conv["epochs"] == 1 and conv["converged"] is None
    assert "converged" in first.stdout and "EMA pseudo-Dice" in first.stdout
    assert [r[0] for r in rows[1:]] == ["nnUNetTrainerDGBaseline"]
    assert 0.0 <= float(rows[1][1]) <= 1.0
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "logs" / "train_nnUNetTrainerDGBaseline_fold0.log").is_file()
    assert len(list((out / "predictions" / "nnUNetTrainerDGBaseline" / "fold_0" / "self").glob("*.png"))) == 5
    assert "nnUNetTrainerDGBaseline" in first.stdout and "self" in first.stdout
    second = run_cli(["nnunet-rc", "benchmark", "--config", cfg_file])
    assert "trained 0 (skipped 1" in second.stdout and "predicted 0 (skipped 1" in second.stdout
    assert list(csv.reader(open(out / "comparison.csv"))) == rows
    # a fold trained again after its predictions were made is predicted again
    fold = tmp_path / "results" / preprocessed_2d["name"] / "nnUNetTrainerDGBaseline__nnUNetPlans__2d" / "fold_0"
    later = (fold / "checkpoint_final.pth").stat().st_mtime + 60
    os.utime(fold / "checkpoint_final.pth", (later, later))
    third = run_benchmark(cfg, progress=False)
    assert third["actions"]["trained"] == []
    assert third["actions"]["predicted"] == ["nnUNetTrainerDGBaseline/fold_0/self"]
    # a finished fold of another schedule (e.g. an earlier version of a profile) is never reused silently
    with pytest.raises(BenchmarkError, match="holds a finished training of 1 epochs, but this schedule trains 2"):
        run_benchmark({**cfg, "schedule": {**cfg["schedule"], "epochs": 2}}, progress=False)


# ---- statistics, profiles, overrides, shipped protocols ----------------------------------------------------

def test_paired_wilcoxon_matches_scipy_and_handles_small_or_tied_samples():
    from scipy.stats import wilcoxon

    base = {f"c{i}": 0.5 + 0.01 * i for i in range(10)}
    better = {c: v + 0.02 + 0.003 * (i % 3) for i, (c, v) in enumerate(base.items())}
    res = paired_test(better, base)
    diff = [better[c] - base[c] for c in sorted(base)]
    assert res["n"] == 10 and res["mean_diff"] == pytest.approx(sum(diff) / 10)
    assert res["p"] == pytest.approx(wilcoxon(diff).pvalue) and res["p"] < 0.01
    assert paired_test(base, base)["p"] is None                     # every difference zero
    small = {c: base[c] for c in list(base)[:5]}
    assert paired_test({c: v + 0.1 for c, v in small.items()}, small)["p"] is None  # n < 6
    nan = dict(better, c0=float("nan"))
    assert paired_test(nan, base)["n"] == 9                          # non-finite cases are dropped


def test_fold_mean_and_case_values():
    per_case = [{"case": "a", "Dice_mean": 0.5, "HD95_vessel": 2.0}, {"case": "b", "Dice_mean": None,
                                                                       "HD95_vessel": float("nan")}]
    assert case_values(per_case, "Dice")["a"] == 0.5 and case_values(per_case, "Dice")["b"] != 0.5
    assert case_values(per_case, "HD95")["a"] == 2.0
    assert fold_mean([{"a": 0.4, "b": 0.1}, {"a": 0.6}]) == {"a": pytest.approx(0.5), "b": pytest.approx(0.1)}


def test_comparison_reports_delta_and_p_against_the_baseline(tmp_path):
    cases = [f"c{i}" for i in range(8)]

    def res(dice_by_case):
        pc = [{"case": c, "Dice_mean": d} for c, d in dice_by_case.items()]
        return {"foreground_mean": {"Dice": sum(dice_by_case.values()) / len(pc)}, "groups": {}, "per_case": pc}

    base = {c: 0.4 + 0.02 * i for i, c in enumerate(cases)}
    rc = {c: v + 0.1 + 0.01 * (i % 2) for i, (c, v) in enumerate(base.items())}
    plan = {"metric": "Dice", "folds": ["0", "1"], "trainers": ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv"],
            "baseline": "nnUNetTrainerDGBaseline", "profile_note": "cpu profile: SMOKE-SCALE comparison",
            "targets": [{"name": "t1", "in_domain": False}]}
    results = {"nnUNetTrainerDGBaseline": {"t1": {"0": res(base), "1": res(base)}},
               "nnUNetTrainerRandConv": {"t1": {"0": res(rc), "1": res(rc)}}}
    comp = compare(plan, results)
    cell = comp["rows"]["nnUNetTrainerRandConv"]["t1"]
    assert cell["delta"] == pytest.approx(0.105) and cell["test"]["n"] == 8 and cell["test"]["p"] < 0.05
    table = comparison_table(comp)
    assert "SMOKE-SCALE" in table and "(+0.1050, p=" in table and "Wilcoxon" in table
    write_comparison(comp, tmp_path)
    assert (tmp_path / "comparison_t1.png").stat().st_size > 1000
    assert "SMOKE-SCALE" in (tmp_path / "comparison.csv").read_text().splitlines()[0]


def test_profiles_and_command_line_overrides():
    cfg = {"source": {"dataset": 110, "configuration": "2d"}, "trainers": ["nnUNetTrainerDGBaseline", "B"],
           "grid_trainers": ["G1", "B"], "targets": [{"name": "x"}, {"name": "y"}], "folds": [0, 1, 2]}
    smoke = apply_overrides(cfg, profile="smoke")
    assert smoke["device"] == "cpu" and smoke["source"]["plans"] == "nnUNetPlans_smoke"
    assert smoke["coarse_plan"]["spacing_factor"] == 3.0 and "base_features" not in smoke["coarse_plan"]
    assert smoke["schedule"] == PROFILES["smoke"]["schedule"] and "SMOKE-SCALE" in smoke["profile_note"]
    cpu = apply_overrides(cfg, profile="cpu")  # the 2d settings of the converged CPU profile
    settings = PROFILES["cpu"]["by_configuration"]["2d"]
    assert cpu["device"] == "cpu" and cpu["source"]["plans"] == "nnUNetPlans_cpu"
    assert cpu["env"] == {"nnUNet_def_n_proc": "1", "NNUNET_RC_PLOT_EVERY": "10"} == smoke["env"]
    assert cpu["train_env"] == {"nnUNet_n_proc_DA": "0"} == smoke["train_env"]  # the planner fails at 0
    assert cpu["coarse_plan"] == settings["coarse_plan"] and cpu["schedule"] == settings["schedule"]
    assert "SMOKE" not in cpu["profile_note"] and f"{settings['schedule']['epochs']} epochs" in cpu["profile_note"]
    with pytest.raises(BenchmarkError, match="no settings for configuration '3d_lowres'"):
        apply_overrides({**cfg, "source": {"dataset": 110, "configuration": "3d_lowres"}}, profile="cpu")
    assert apply_overrides(cfg, profile="full")["schedule"] == {}
    short = apply_overrides(cfg, profile="gpu-short")
    assert short["schedule"]["epochs"] * short["schedule"]["iterations"] <= 30 * 250
    assert "source" in cfg and "plans" not in cfg["source"]  # the input is not modified
    o = apply_overrides(cfg, trainers=["nnUNetTrainerDGBaseline", "nnUNetTrainerRASS"], targets=["y"], folds=2)
    assert o["trainers"] == ["nnUNetTrainerDGBaseline", "nnUNetTrainerRASS"] and [t["name"] for t in o["targets"]] == ["y"]
    assert o["folds"] == [0, 1]
    assert apply_overrides(cfg, grid=True)["trainers"] == ["nnUNetTrainerDGBaseline", "B", "G1"]
    with pytest.raises(BenchmarkError, match="unknown profile"):
        apply_overrides(cfg, profile="fast")
    with pytest.raises(BenchmarkError, match="not in the config"):
        apply_overrides(cfg, targets=["z"])


def test_a_profile_named_in_the_config_file_is_applied(tmp_path):
    """``"profile": ...`` inside a config takes effect without ``--profile`` (checked before any command runs)."""

    cfg = {"source": {"dataset": 110, "configuration": "2d"}, "trainers": ["nnUNetTrainerDGBaseline"],
           "targets": [], "profile": "fast", "output": str(tmp_path / "out")}
    with pytest.raises(BenchmarkError, match="unknown profile 'fast'"):
        run_benchmark(cfg, progress=False)


def test_paths_from_env_vars_and_dataset_relative_masks(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _fake_dataset(raw)
    target = _fake_dataset(raw, 951, "Site")
    (target / "masksTs").mkdir()
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    plan = resolve({"source": {"dataset": 950, "configuration": "2d"}, "trainers": ["T"], "_base": str(tmp_path),
                    "targets": [{"name": "site", "dataset": 951, "mask": "masksTs"},
                                {"name": "env", "images": "$nnUNet_raw/Dataset951_Site/imagesTs",
                                 "labels": "${nnUNet_raw}/Dataset951_Site/labelsTs"}]})
    assert plan["targets"][0]["mask"] == str(target / "masksTs")
    assert plan["targets"][1]["images"] == str(target / "imagesTs")
    assert plan["folds"] == ["0", "1", "2"]  # three folds by default


CONFIGS = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"


def _resolve_on_fake_datasets(cfg: dict, tmp_path, monkeypatch) -> dict:
    """``resolve(cfg)`` against empty raw datasets with the ids ``cfg`` names (masks and groups folders made)."""
    raw = tmp_path / "raw"
    ids = {cfg["source"]["dataset"]} | {t["dataset"] for t in cfg["targets"] if "dataset" in t}
    if cfg["source"].get("test", {}).get("dataset") is not None:
        ids.add(cfg["source"]["test"]["dataset"])
    for i in ids:
        folder = _fake_dataset(raw, int(i), f"D{i}")
        for sub in ("masksTs", "masksTr"):
            (folder / sub).mkdir()
        (folder / "groups.csv").write_text("case,group\n")
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return resolve(cfg)


@pytest.mark.parametrize("name", ["retinal.json", "retinal_chase_source.json", "fetal_feta.json",
                                  "fetal_atlas_groups.json", "ms.json", "synthetic_brain_3d.json"])
def test_shipped_protocols_resolve_on_datasets_with_the_readme_ids(name, tmp_path, monkeypatch):
    """Every protocol in benchmarks/configs resolves against datasets with the README's ids (the user edits
    nothing but ids); every trainer it names exists."""
    from nnunet_rc import trainers

    cfg = load_config(CONFIGS / name)
    plan = _resolve_on_fake_datasets(cfg, tmp_path, monkeypatch)
    assert plan["baseline"] == "nnUNetTrainerDGBaseline"
    for t in list(cfg["trainers"]) + list(cfg.get("grid_trainers", [])):
        assert t in trainers.__all__, t
    if name == "synthetic_brain_3d.json":  # the check that chose the cpu profile's 3D settings: 3 trainers, 1 fold
        assert plan["folds"] == ["0"] and cfg["source"]["configuration"] == "3d_fullres"
        assert cfg["trainers"] == ["nnUNetTrainerDGBaseline", "nnUNetTrainerRandConv", "nnUNetTrainerRAS4DG"]
    else:
        assert len(plan["folds"]) == 3
        for core in ("nnUNetTrainerRandConv", "nnUNetTrainerProRandConv", "nnUNetTrainerGIN",
                     "nnUNetTrainerRASS", "nnUNetTrainerRAS4DG"):
            assert core in cfg["trainers"]
    assert any(t["in_domain"] for t in plan["targets"]) == bool(cfg["source"].get("test"))
    assert sum(not t["in_domain"] for t in plan["targets"]) >= 1


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("attempt_*.json")))
def test_attempt_configs_compare_a_change_with_its_trainer_in_both_directions(name, tmp_path, monkeypatch):
    """An attempt's configs (docs/trainer_attempts.md) resolve with the README's ids, the unchanged trainer is the
    table's reference, and each has the one in-domain column and the target ``attempt_verdict.py`` reads."""
    from nnunet_rc import trainers

    cfg = load_config(CONFIGS / name)
    plan = _resolve_on_fake_datasets(cfg, tmp_path, monkeypatch)
    assert len(cfg["trainers"]) == 2 and plan["baseline"] == cfg["trainers"][0]
    assert all(t in trainers.__all__ for t in cfg["trainers"])
    # one trainer a variant of the other (a kept attempt: the new default against the old setting, now the variant)
    unchanged, change = (getattr(trainers, t) for t in cfg["trainers"])
    assert unchanged is not change and (issubclass(change, unchanged) or issubclass(unchanged, change))
    assert plan["folds"] == ["0", "1", "2"]
    assert [t["name"] for t in plan["targets"] if t["in_domain"]] == [f"{cfg['source']['test']['name']} (in-domain)"]
    assert {t["name"] for t in plan["targets"] if not t["in_domain"]} in ({"CHASE_DB1"}, {"DRIVE"})
    pair = (name.replace("_retinal.json", "_chase_source.json") if name.endswith("_retinal.json")
            else name.replace("_chase_source.json", "_retinal.json"))
    assert pair != name and (CONFIGS / pair).is_file(), f"{name}: no config for the other direction"


# ---- convergence: nnU-Net's EMA pseudo-Dice flat over the last 20 % of epochs -----------------------------------

def test_plateau_of_an_ema_curve():
    from nnunet_rc.evaluation.convergence import plateau

    rising = [0.5 + 0.05 * i for i in range(10)]                       # still climbing 0.05 per epoch
    flat = [0.5 + 0.4 * (1 - 0.5 ** i) for i in range(20)]             # last 4 steps move < 0.001
    assert plateau(rising) == {"converged": False, "change": pytest.approx(0.10), "no_foreground": False,
                               "epochs": 10, "window_epochs": 2}
    res = plateau(flat)
    assert res["converged"] is True and res["window_epochs"] == 4 and res["change"] < 0.01
    # the window is the last ceil(20 %) epochs plus the value before it: a jump just before it does not count
    late_jump = [0.1] * 5 + [0.8] * 5
    assert plateau(late_jump)["converged"] is True
    assert plateau(late_jump[:-1] + [0.79])["change"] == pytest.approx(0.01)
    assert plateau(late_jump[:-1] + [0.79])["converged"] is False      # "less than" 0.01
    assert plateau([0.1, 0.2, 0.3, 0.4])["converged"] is None           # < 5 epochs: not determined
    assert plateau([float("nan")] * 3 + [0.8] * 5)["epochs"] == 5       # epochs without a value are dropped
    assert plateau(rising, tol=0.2)["converged"] is True
    # flat at zero: the network never left predicting background (the first epoch's value decays away)
    stuck = [0.08 * 0.9 ** i for i in range(60)]
    res = plateau(stuck)
    assert res["change"] < 0.01 and res["no_foreground"] is True and res["converged"] is False
    assert plateau(stuck + [0.02, 0.04])["no_foreground"] is False  # taking off: no longer at zero, not flat
    with pytest.raises(ValueError, match="window"):
        plateau(rising, window=0)


def test_fold_convergence_reads_nnunet_checkpoints(tmp_path):
    import torch

    from nnunet_rc.evaluation.convergence import fold_convergence, training_curve

    assert training_curve(tmp_path) == [] and fold_convergence(tmp_path)["converged"] is None
    ema = [0.2, 0.4, 0.6, 0.7, 0.75, 0.8, 0.805, 0.806, 0.806, 0.807]
    torch.save({"logging": {"ema_fg_dice": ema, "mean_fg_dice": ema}}, tmp_path / "checkpoint_latest.pth")
    assert training_curve(tmp_path) == pytest.approx(ema)
    torch.save({"logging": {"ema_fg_dice": ema[:6]}}, tmp_path / "checkpoint_final.pth")  # final wins: 0.7 -> 0.8
    assert fold_convergence(tmp_path) == {"converged": False, "change": pytest.approx(0.10), "no_foreground": False,
                                          "epochs": 6, "window_epochs": 2}


def test_converged_column_per_fold(tmp_path):
    plan = {"metric": "Dice", "folds": ["0", "1"], "trainers": ["nnUNetTrainerA"],
            "targets": [{"name": "t1", "in_domain": False}]}
    results = {"nnUNetTrainerA": {"t1": {"0": _res(0.5), "1": _res(0.6)}}}
    conv = {"nnUNetTrainerA": {"0": {"converged": True, "change": 0.004}, "1": {"converged": False, "change": 0.021}}}
    comp = compare(plan, results, conv)
    table = comparison_table(comp)
    assert "converged" in table and "yes no (max Δ 0.021)" in table
    write_comparison(comp, tmp_path)
    rows = list(csv.reader(open(tmp_path / "comparison.csv")))
    assert rows[0][-2:] == ["converged", "converged max change"] and rows[1][-2:] == ["yes;no", "0.021"]
    assert "converged" not in comparison_table(compare(plan, results))  # no curves, no column
    conv["nnUNetTrainerA"]["1"] = {"converged": False, "change": 0.001, "no_foreground": True}
    assert "yes zero (max Δ 0.004)" in comparison_table(compare(plan, results, conv))  # flat at 0 is no plateau


def test_narrow_network_scales_every_stage(tmp_path):
    from nnunet_rc.evaluation.benchmark import narrow_network

    plans = {"configurations": {"2d": {"patch_size": [224, 192], "architecture": {"arch_kwargs": {
        "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 512, 512], "strides": [[1, 1]] + [[2, 2]] * 5}}}}}
    f = tmp_path / "p.json"
    f.write_text(json.dumps(plans))
    assert narrow_network(f, "2d", 16) == [16, 32, 64, 128, 256, 256]
    again = json.loads(f.read_text())["configurations"]["2d"]
    assert again["architecture"]["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 128, 256, 256]
    assert again["patch_size"] == [224, 192] and again["architecture"]["arch_kwargs"]["n_stages"] == 6
    from nnunet_rc.evaluation.benchmark import check_coarse_plan

    check_coarse_plan(f, "2d", {"base_features": 16})  # matches: nothing to say
    with pytest.raises(BenchmarkError, match="first-stage width 16, the profile asks for 8"):
        check_coarse_plan(f, "2d", {"base_features": 8})


def test_cpu_profile_end_to_end_on_synthetic_vessels(nnunet_env, tmp_path):
    """The cpu profile's coarse plan (nnU-Net's planner at 3x spacing, narrowed network) on a synthetic vessel
    dataset, through the real CLI, with a 5-epoch schedule so the converged column is determined."""
    from nnunet_rc.synthetic.generate import write_benchmark

    write_benchmark(nnunet_env["nnUNet_raw"], dim=2, id_base=880, num_train=5, num_test=2, size=96,
                    targets=("blur",), overwrite=True, progress=False)
    write_fingerprint(880)  # nnU-Net's extractor at fixture size; the runner's plan step keeps it
    cfg = {"source": {"dataset": 880, "configuration": "2d", "test": {"dataset": 880, "split": "Ts"}},
           "trainers": ["nnUNetTrainerDGBaseline"], "folds": [0],
           "targets": [], "output": str(tmp_path / "out")}
    cfg = apply_overrides(cfg, profile="cpu")
    cfg["schedule"] = {"epochs": 5, "iterations": 2, "val_iterations": 1}  # the profile's own is hours long
    res = run_benchmark(cfg, progress=False)
    pre = next(Path(nnunet_env["nnUNet_preprocessed"]).glob("Dataset880_*"))
    default = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]["2d"]
    coarse = json.loads((pre / "nnUNetPlans_cpu.json").read_text())["configurations"]["2d"]
    settings = PROFILES["cpu"]["by_configuration"]["2d"]["coarse_plan"]
    assert coarse["spacing"] == pytest.approx([3 * v for v in default["spacing"]])
    width = coarse["architecture"]["arch_kwargs"]["features_per_stage"]
    assert width[0] == settings["base_features"] and width[1] == 2 * settings["base_features"]
    assert (pre / "nnUNetPlans_cpu_2d").is_dir()
    ckpt = next(Path(res["plan"]["results"]).rglob("nnUNetTrainerDGBaseline__nnUNetPlans_cpu__2d/fold_0/"
                                                   "checkpoint_final.pth"))
    assert ckpt.is_file()
    # the speed settings reached the training (and only it: nnU-Net's planner fails with nnUNet_n_proc_DA=0)
    assert res["plan"]["train_env"]["nnUNet_n_proc_DA"] == "0" and "nnUNet_n_proc_DA" not in res["plan"]["env"]
    assert "NNUNET_RC_PLOT_EVERY=10" in next(ckpt.parent.glob("training_log_*.txt")).read_text()
    assert (ckpt.parent / "progress.png").is_file()  # the last epoch is always drawn
    conv = res["comparison"]["convergence"]["nnUNetTrainerDGBaseline"]["0"]
    assert conv["epochs"] == 5 and conv["window_epochs"] == 1 and isinstance(conv["converged"], bool)
    table = comparison_table(res["comparison"])
    assert "cpu profile: sized for 2 CPU cores" in table and "converged" in table


def test_cpu_profile_plans_an_anisotropic_3d_protocol(nnunet_env, tmp_path):
    """The cpu profile's ``3d_fullres`` settings on a small anisotropic phantom (X at 2 mm, so nnU-Net
    transposes it first): the coarse plan is nnU-Net's planner at ``spacing_factor`` x the default plan's
    spacing on every axis, with the default plan's transpose (the target spacing must reach the planner in the
    images' own axis order), the network narrowed, and every training case preprocessed."""
    from nnunet_rc.evaluation.benchmark import ensure_coarse_plans
    from nnunet_rc.synthetic.generate import write_benchmark

    write_benchmark(nnunet_env["nnUNet_raw"], dim=3, id_base=885, num_train=4, num_test=1, size=(48, 44, 24),
                    spacing=(0.8, 0.8, 2.0), targets=("inverted",), overwrite=True, progress=False)
    write_fingerprint(885)  # nnU-Net's extractor at fixture size; the runner's plan step keeps it
    cfg = apply_overrides({"source": {"dataset": 885, "configuration": "3d_fullres",
                                      "test": {"dataset": 885, "split": "Ts"}},
                           "trainers": ["nnUNetTrainerDGBaseline"], "folds": [0], "targets": [],
                           "output": str(tmp_path / "out")}, profile="cpu")
    settings = PROFILES["cpu"]["by_configuration"]["3d_fullres"]
    assert cfg["schedule"] == settings["schedule"] and cfg["source"]["plans"] == settings["coarse_plan"]["name"]
    plan = resolve(cfg)
    ensure_coarse_plans(plan, tmp_path / "logs", plan["env"])
    pre = next(Path(nnunet_env["nnUNet_preprocessed"]).glob("Dataset885_*"))
    default = json.loads((pre / "nnUNetPlans.json").read_text())
    coarse = json.loads((pre / f"{settings['coarse_plan']['name']}.json").read_text())
    assert default["transpose_forward"] == [2, 0, 1]  # the 2 mm axis first: the case this test is about
    assert coarse["transpose_forward"] == default["transpose_forward"]
    factor = settings["coarse_plan"]["spacing_factor"]
    assert coarse["configurations"]["3d_fullres"]["spacing"] == pytest.approx(
        [factor * v for v in default["configurations"]["3d_fullres"]["spacing"]])
    arch = coarse["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"][0] == settings["coarse_plan"]["base_features"]
    assert len(list((pre / f"{settings['coarse_plan']['name']}_3d_fullres").glob("*.pkl"))) == 4
