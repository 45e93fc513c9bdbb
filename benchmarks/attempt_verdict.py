"""Decide an attempt by the rule of docs/trainer_attempts.md: a change ``C`` against its trainer ``T`` unchanged.

Reads one ``comparison.json`` per direction, as written by ``nnunet-rc benchmark`` with both ``C`` and ``T``
among its trainers (same profile and folds), and applies the rule written there before any attempt ran:

1. the column ``C`` aims at (``--aim in-domain`` or ``ood``) is higher than with ``T``, paired per-case
   Wilcoxon p < 0.05 (:func:`nnunet_rc.evaluation.stats.paired_test`, on the per-case values the
   benchmark averaged over folds);
2. that column's fold mean is higher in every fold;
3. the other column is not lower by more than 0.01 and not lower with p < 0.05.

``C`` is kept only if all three hold in every direction given. The in-domain column is the comparison's one
``in_domain`` column; the out-of-domain column is every target's cases pooled (paired test) and the
benchmark's ``OOD mean`` (fold means) -- with one target, that target. Prints a table; ``--json`` writes it.

    python benchmarks/attempt_verdict.py --change nnUNetTrainerRandConvReach --against nnUNetTrainerRandConv \\
        --aim in-domain benchmark_out/retinal/comparison.json benchmark_out/retinal_chase_source/comparison.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

from nnunet_rc.evaluation.stats import paired_test

P_MAX = 0.05
TOLERANCE = 0.01


def _column(comparison: dict, trainer: str, kind: str, source: str) -> tuple:
    """``(per-case values, fold means)`` of ``trainer`` for ``kind`` = ``in-domain`` or ``ood``."""
    rows, per_case = comparison["rows"], comparison["per_case"]
    if trainer not in rows:
        raise SystemExit(f"{source}: no trainer {trainer} (it has {sorted(rows)}); run the benchmark with both")
    if kind == "in-domain":
        if len(comparison.get("in_domain") or []) != 1:
            raise SystemExit(f"{source}: expected one in-domain column, found {comparison.get('in_domain')}")
        col = comparison["in_domain"][0]
        return dict(per_case[trainer][col]), list(rows[trainer][col]["folds"])
    targets = [c for c in comparison["columns"] if c not in comparison.get("in_domain", []) and c != "OOD mean"]
    if not targets:
        raise SystemExit(f"{source}: no out-of-domain target column")
    cases = {f"{t}/{case}": v for t in targets for case, v in per_case[trainer][t].items()}
    return cases, list(rows[trainer]["OOD mean"]["folds"])


def judge(comparison: dict, change: str, against: str, aim: str, source: str = "comparison") -> dict:
    """The rule's three conditions for one direction; ``{"direction", "in-domain", "ood", "kept", "why"}``."""
    out = {"direction": source, "why": []}
    for kind in ("in-domain", "ood"):
        c_cases, c_folds = _column(comparison, change, kind, source)
        t_cases, t_folds = _column(comparison, against, kind, source)
        test = paired_test(c_cases, t_cases)
        higher = sum(a > b for a, b in zip(c_folds, t_folds))
        out[kind] = {"delta": test["mean_diff"], "p": test["p"], "n": test["n"], "folds_higher": higher,
                     "folds": len(c_folds)}
        d, p = test["mean_diff"], test["p"]
        if kind == aim:
            if d is None or d <= 0 or p is None or p >= P_MAX:
                out["why"].append(f"{kind} not higher at p < {P_MAX}")
            if higher < len(c_folds):
                out["why"].append(f"{kind} higher in {higher} of {len(c_folds)} folds")
        else:
            if d is not None and d < -TOLERANCE:
                out["why"].append(f"{kind} lower by {-d:.3f}")
            elif d is not None and d < 0 and p is not None and p < P_MAX:
                out["why"].append(f"{kind} lower at p = {p:.2g}")
    out["kept"] = not out["why"]
    return out


def _cell(r: dict) -> str:
    p = "n/a" if r["p"] is None else f"{r['p']:.2g}"
    return f"{r['delta']:+.4f} (p = {p}, higher in {r['folds_higher']}/{r['folds']} folds)"


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("comparisons", nargs="+", help="comparison.json of each direction")
    ap.add_argument("--change", required=True, help="the changed trainer (C)")
    ap.add_argument("--against", required=True, help="the trainer unchanged (T)")
    ap.add_argument("--aim", required=True, choices=["in-domain", "ood"], help="the column the change aims at")
    ap.add_argument("--json", help="write the verdict here")
    a = ap.parse_args(argv)
    results = []
    for f in a.comparisons:
        if not Path(f).is_file():
            raise SystemExit(f"{f}: no such comparison.json (run nnunet-rc benchmark first)")
        results.append(judge(json.loads(Path(f).read_text()), a.change, a.against, a.aim, source=f))
    kept = all(r["kept"] for r in results)
    print(f"{a.change} against {a.against} (aim: {a.aim}; Δ = change − unchanged, paired per-case Wilcoxon)")
    for r in results:
        print(f"  {r['direction']}\n    in-domain: {_cell(r['in-domain'])}\n    out of domain: {_cell(r['ood'])}\n"
              f"    {'holds' if r['kept'] else 'fails: ' + '; '.join(r['why'])}")
    print(f"verdict: {'KEPT' if kept else 'not kept'} ({len(results)} direction(s))")
    if len(results) < 2:
        print("  note: the rule decides on both directions (DRIVE -> CHASE_DB1 and CHASE_DB1 -> DRIVE)")
    if a.json:
        Path(a.json).write_text(json.dumps({"change": a.change, "against": a.against, "aim": a.aim, "kept": kept,
                                            "directions": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
