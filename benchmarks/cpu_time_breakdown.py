"""Where a CPU training's time goes: nnU-Net's CPU augmentation, the training step, validation, prediction.

For one preprocessed dataset, plans and configuration, on the CPU, in this one process (so the parts
are timed apart; in ``nnUNetv2_train`` the augmentation workers share the cores with the training step,
so on a 2-core machine the two roughly add up):

- ``data``: seconds per training batch from nnU-Net's own training dataloader (its CPU augmentation,
  ``nnUNet_n_proc_DA=0``: no background workers);
- ``train_step``: seconds per ``trainer.train_step`` (the plugin's batch augmentation, forward, deep-
  supervision loss, backward, optimizer step) for each trainer, on the same batches;
- ``val_data`` / ``val_step``: the same for a validation batch;
- ``predict``: seconds per case of nnU-Net's sliding-window prediction (the final validation and every
  ``nnUNetv2_predict`` case), with and without test-time mirroring, on ``--cases`` validation cases;
- the estimated epoch time ``iterations × (data + train_step) + val_iterations × (val_data + val_step)``.

    python benchmarks/cpu_time_breakdown.py -d 110 -c 2d -p nnUNetPlans_cpu --iterations 50 \\
        --trainers nnUNetTrainerDGBaseline,nnUNetTrainerRandConv,nnUNetTrainerRAS4DG
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(dataset: str, configuration: str, plans: str, trainers: List[str], batches: int, cases: int,
            fold: int = 0) -> dict:
    os.environ["nnUNet_n_proc_DA"] = "0"  # nnU-Net's augmentation in this process, timed alone
    import torch

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunet_rc import trainers as family

    pre = Path(os.environ["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(dataset)
    plans_dict = json.loads((pre / f"{plans}.json").read_text())
    plans_dict["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    out = {"dataset": pre.name, "configuration": configuration, "plans": plans, "threads": torch.get_num_threads(),
           "trainers": {}}
    first = None
    for name in trainers:
        torch.manual_seed(0)
        trainer = getattr(family, name)(copy.deepcopy(plans_dict), configuration, fold, dataset_json,
                                        device=torch.device("cpu"))
        trainer.initialize()
        if first is None:  # the batches: nnU-Net's own loaders and CPU augmentation, timed once
            first = trainer
            dl_tr, dl_val = trainer.get_dataloaders()
            next(dl_tr), next(dl_val)  # warm-up (opens the files)
            train_batches, val_batches, t_data, t_val = [], [], [], []
            for _ in range(batches):
                t = time.perf_counter()
                train_batches.append(next(dl_tr))
                t_data.append(time.perf_counter() - t)
                t = time.perf_counter()
                val_batches.append(next(dl_val))
                t_val.append(time.perf_counter() - t)
            cm = trainer.configuration_manager
            out.update(patch_size=list(cm.patch_size), batch_size=cm.batch_size,
                       n_stages=len(cm.network_arch_init_kwargs.get("features_per_stage", [])),
                       features_per_stage=cm.network_arch_init_kwargs.get("features_per_stage"),
                       data_s=statistics.median(t_data), val_data_s=statistics.median(t_val))
        trainer.network.train()
        trainer.train_step(train_batches[0])  # warm-up
        step = statistics.median([_seconds(lambda b=b: trainer.train_step(b)) for b in train_batches])
        trainer.network.eval()
        with torch.no_grad():
            val = statistics.median([_seconds(lambda b=b: trainer.validation_step(b)) for b in val_batches])
        out["trainers"][name] = {"train_step_s": step, "val_step_s": val,
                                 "parameters": sum(p.numel() for p in trainer.network.parameters())}
    # prediction of whole cases, as in the final validation and nnUNetv2_predict
    trainer = first
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    dataset_val = trainer.get_tr_and_val_datasets()[1]
    volumes = [torch.from_numpy(dataset_val.load_case(k)[0][:]).float() for k in list(dataset_val.identifiers)[:cases]]
    out["predict_case_shapes"] = [list(v.shape[1:]) for v in volumes]
    for mirror in (True, False):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                        trainer.dataset_json, type(trainer).__name__,
                                        trainer.inference_allowed_mirroring_axes)
        times = [_seconds(lambda v=v: predictor.predict_sliding_window_return_logits(v)) for v in volumes]
        out[f"predict_{'tta' if mirror else 'no_tta'}_s"] = statistics.median(times)
    return out


def estimate(out: dict, iterations: int, val_iterations: int) -> None:
    for name, t in out["trainers"].items():
        t["epoch_estimate_s"] = iterations * (out["data_s"] + t["train_step_s"]) + val_iterations * (
            out["val_data_s"] + t["val_step_s"])


def format_table(out: dict, iterations: int, val_iterations: int) -> str:
    lines = [f"{out['dataset']} {out['plans']} {out['configuration']}: patch {out['patch_size']}, batch "
             f"{out['batch_size']}, {out['n_stages']} stages {out['features_per_stage']}, {out['threads']} torch threads",
             f"nnU-Net CPU augmentation: {out['data_s']:.3f} s per training batch, {out['val_data_s']:.3f} s per "
             f"validation batch; sliding-window prediction per case: {out['predict_tta_s']:.2f} s with mirroring, "
             f"{out['predict_no_tta_s']:.2f} s without (cases {out['predict_case_shapes']})",
             f"{'trainer':<34} {'train_step s':>12} {'val_step s':>10} {'params':>10} "
             f"{'epoch estimate s':>17} ({iterations} + {val_iterations} val iterations)"]
    for name, t in out["trainers"].items():
        lines.append(f"{name:<34} {t['train_step_s']:>12.3f} {t['val_step_s']:>10.3f} {t['parameters']:>10,} "
                     f"{t['epoch_estimate_s']:>17.1f}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-d", "--dataset", required=True)
    ap.add_argument("-c", "--configuration", default="2d")
    ap.add_argument("-p", "--plans", default="nnUNetPlans")
    ap.add_argument("--trainers", default="nnUNetTrainerDGBaseline")
    ap.add_argument("--batches", type=int, default=8, help="training and validation batches timed")
    ap.add_argument("--cases", type=int, default=2, help="validation cases predicted")
    ap.add_argument("--iterations", type=int, default=250, help="for the epoch estimate")
    ap.add_argument("--val-iterations", type=int, default=50, help="for the epoch estimate")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    for var in ("nnUNet_preprocessed", "nnUNet_raw", "nnUNet_results"):
        if not os.environ.get(var):
            ap.error(f"{var} is not set")
    out = measure(args.dataset, args.configuration, args.plans, [t for t in args.trainers.split(",") if t],
                  args.batches, args.cases)
    estimate(out, args.iterations, args.val_iterations)
    out.update(iterations=args.iterations, val_iterations=args.val_iterations)
    print(format_table(out, args.iterations, args.val_iterations))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
