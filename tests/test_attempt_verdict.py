"""benchmarks/attempt_verdict.py: the attempts rule of docs/trainer_attempts.md on hand-made comparisons."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark


def _module():
    return load_benchmark("attempt_verdict")


def _comparison(in_shift, ood_shift, fold_shift=(0.02, 0.02, 0.02), targets=("B",)):
    """T and C with 10 cases per column; C = T + shift (+ small case noise), fold means T + fold_shift."""
    rng = np.random.default_rng(0)
    ind = "A (in-domain)"
    cols = [ind, *targets, "OOD mean"]
    per_case, rows = {}, {}
    base = {c: {f"c{i}": 0.6 + 0.01 * i for i in range(10)} for c in (ind, *targets)}
    for tr, on in (("T", False), ("C", True)):
        per_case[tr] = {c: {k: v + ((in_shift if c == ind else ood_shift) + rng.normal(0, 0.002) if on else 0.0)
                            for k, v in base[c].items()} for c in base}
        rows[tr] = {c: {"folds": [0.6 + (fold_shift[f] if on and c == ind else 0.0) for f in range(3)]}
                    for c in cols}
        for f in range(3):  # the OOD fold means follow the OOD shift's sign
            rows[tr]["OOD mean"]["folds"][f] += ood_shift if on else 0.0
    return {"columns": cols, "in_domain": [ind], "rows": rows, "per_case": per_case, "folds": ["0", "1", "2"]}


def test_kept_only_when_aim_rises_in_every_fold_at_no_cost():
    judge = _module().judge
    ok = judge(_comparison(0.02, 0.0), "C", "T", "in-domain")
    assert ok["kept"], ok["why"]
    assert ok["in-domain"]["delta"] == pytest.approx(0.02, abs=0.002) and ok["in-domain"]["p"] < 0.05
    assert ok["in-domain"]["folds_higher"] == 3

    one_fold_down = judge(_comparison(0.02, 0.0, fold_shift=(0.02, -0.01, 0.02)), "C", "T", "in-domain")
    assert not one_fold_down["kept"] and "in-domain higher in 2 of 3 folds" in one_fold_down["why"]

    costly = judge(_comparison(0.02, -0.02), "C", "T", "in-domain")
    assert not costly["kept"] and any(w.startswith("ood lower by 0.0") for w in costly["why"])

    small_but_real = judge(_comparison(0.02, -0.005), "C", "T", "in-domain")  # within 0.01, yet every case lower
    assert not small_but_real["kept"] and any(w.startswith("ood lower at p") for w in small_but_real["why"])

    no_gain = judge(_comparison(-0.005, 0.0), "C", "T", "in-domain")
    assert not no_gain["kept"] and "in-domain not higher at p < 0.05" in no_gain["why"]


def test_ood_aim_pools_every_target(tmp_path, capsys):
    mod = _module()
    comp = _comparison(0.0, 0.03, fold_shift=(0, 0, 0), targets=("B", "D"))
    r = mod.judge(comp, "C", "T", "ood")
    assert r["ood"]["n"] == 20 and r["kept"]
    files = []
    for name in ("fwd", "rev"):
        (tmp_path / name).mkdir()
        files.append(tmp_path / name / "comparison.json")
        files[-1].write_text(json.dumps(comp if name == "fwd" else _comparison(0.0, -0.03, fold_shift=(0, 0, 0))))
    out = tmp_path / "verdict.json"
    assert mod.main([*map(str, files), "--change", "C", "--against", "T", "--aim", "ood", "--json", str(out)]) == 0
    verdict = json.loads(out.read_text())
    assert verdict["kept"] is False  # holds forward, fails in reverse: not kept
    assert [d["kept"] for d in verdict["directions"]] == [True, False]
    assert "not kept" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no trainer X"):
        mod.judge(comp, "X", "T", "ood", source="fwd")
