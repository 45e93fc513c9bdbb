"""What breaks GPU training for every user, pinned on CPU: ``torch.compile`` of the network and autocast.

nnU-Net compiles the network by default on CUDA (``torch.compile(self.network)``; never on CPU, so
``nnUNetv2_train -device cpu`` cannot show a compile failure) and trains under fp16 autocast. Here, on
CPU with the PyTorch the project installs:

- every trainer that changes the network (its ``modify_network`` differs from the baseline's), 2D and
  3D, is compiled with ``fullgraph=True`` (a graph break is an error), and its forward + backward must
  equal eager mode: outputs within ``OUT_ATOL``, every gradient within ``GRAD_RTOL`` × the largest
  gradient of the network (inductor re-orders fp32 reductions; a wrong graph differs by O(1));
- ``nnUNetTrainerRandConvCL`` (its training batch is twice nnU-Net's) trains with a compiled network,
  validates (half the batch) and trains again, compiling at most twice (one recompilation);
- every trainer's training step runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``: the loss is
  finite, the network ran in bf16, and every batch augmentation ran in fp32 with autocast off. The network is
  the plans' U-Net (and the trainer's ``modify_network``) at ``BF16_WIDTH`` features per stage, and the batch
  twice the product of its strides per axis (the bottleneck keeps 2 voxels per axis, for instance norm): on a
  CPU without native bf16 (AVX2 only, as on the 2-core CI machine) PyTorch runs bf16 convolutions through a
  slow reference path, and one full-size 3D step took minutes there; the dtypes checked depend on neither
  width nor patch size.

RAS4DG's 2D compile check runs in the default suite; the rest of the compile matrix is ``slow``.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import make_trainer, synthetic_batch
from nnunet_rc import trainers

OUT_ATOL = 1e-4
GRAD_RTOL = 5e-3
BF16_WIDTH = 8


NETWORK_TRAINERS = [n for n in trainers.__all__ if getattr(trainers, n).changes_network()]
IN_DEFAULT_SUITE = {("nnUNetTrainerRAS4DG", 2)}


def test_the_network_changing_trainers_are_found():
    assert {"nnUNetTrainerRSD", "nnUNetTrainerRAS4DG", "nnUNetTrainerRandConv_RSD"} <= set(NETWORK_TRAINERS)
    assert "nnUNetTrainerRandConv" not in NETWORK_TRAINERS


def _build_network(trainer_name: str, dataset: dict):
    """The network ``nnUNetv2_train`` builds for ``trainer_name`` from the fixture dataset's plans."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset["name"]
    plans = PlansManager(json.loads((pre / "nnUNetPlans.json").read_text()))
    config = plans.get_configuration(dataset["config"])
    n_in = len(json.loads((pre / "dataset.json").read_text())["channel_names"])
    torch.manual_seed(0)
    net = getattr(trainers, trainer_name).build_network_architecture(plans, config, n_in, 3, True)
    return net, n_in, list(config.patch_size)


def _fwd_bwd(net, x):
    out = net(x)
    loss = sum(o.float().square().mean() for o in out)
    loss.backward()
    return [o.detach() for o in out]


def _check_compiled_equals_eager(trainer_name: str, dataset: dict):
    net, n_in, patch = _build_network(trainer_name, dataset)
    eager = copy.deepcopy(net)
    x = torch.randn(2, n_in, *patch, generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    compiled_out = _fwd_bwd(torch.compile(net, fullgraph=True), x)  # fullgraph: a graph break raises
    eager_out = _fwd_bwd(eager, x)
    assert len(compiled_out) == len(eager_out)
    for c, e in zip(compiled_out, eager_out):
        assert c.shape == e.shape and torch.isfinite(c).all()
        torch.testing.assert_close(c, e, atol=OUT_ATOL, rtol=0)
    g_max = max(p.grad.abs().max().item() for p in eager.parameters())
    for (name, pc), pe in zip(net.named_parameters(), eager.parameters()):
        assert pc.grad is not None, f"{trainer_name}: no gradient for {name} in the compiled network"
        err = (pc.grad - pe.grad).abs().max().item()
        assert err <= GRAD_RTOL * g_max, f"{trainer_name} {name}: gradient differs by {err:.2e} (max grad {g_max:.2e})"


def _compile_params():
    for dim, fixture in ((2, "preprocessed_2d"), (3, "preprocessed_3d")):
        for name in NETWORK_TRAINERS:
            marks = () if (name, dim) in IN_DEFAULT_SUITE else (pytest.mark.slow,)
            yield pytest.param(name, fixture, marks=marks, id=f"{name}-{dim}d")


@pytest.mark.parametrize("trainer_name, fixture", list(_compile_params()))
def test_compiled_network_has_no_graph_break_and_equals_eager(trainer_name, fixture, request):
    _check_compiled_equals_eager(trainer_name, request.getfixturevalue(fixture))


@pytest.mark.slow
def test_randconv_cl_trains_with_a_compiled_network_and_recompiles_at_most_once(preprocessed_2d):
    from torch._dynamo.testing import CompileCounterWithBackend

    trainer = make_trainer(trainers.nnUNetTrainerRandConvCL, preprocessed_2d)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    trainer.network = torch.compile(trainer.network, backend=counter)  # as nnU-Net's initialize() on CUDA
    losses = [float(trainer.train_step(synthetic_batch(trainer, seed=s))["loss"]) for s in range(2)]
    assert counter.frame_count == 1, "the doubled batch compiled more than once"
    trainer.network.eval()
    val = trainer.validation_step(synthetic_batch(trainer, seed=5))
    trainer.network.train()
    losses.append(float(trainer.train_step(synthetic_batch(trainer, seed=7))["loss"]))
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert torch.isfinite(torch.as_tensor(val["loss"])).all()
    assert counter.frame_count <= 2, f"compiled {counter.frame_count} times: more than one recompilation"


class _DtypeSpy(torch.nn.Module):
    """Wraps a batch augmentation and records the dtypes it saw and whether autocast was on."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = []

    def forward(self, x, generator=None):
        y = self.inner(x, generator=generator)
        self.seen.append((x.dtype, y.dtype, torch.is_autocast_enabled("cpu")))
        return y


@pytest.mark.parametrize("trainer_name", trainers.__all__)
@pytest.mark.parametrize("fixture", ["preprocessed_2d", "preprocessed_3d"])
def test_training_step_under_bf16_autocast(trainer_name, fixture, request):
    dataset = request.getfixturevalue(fixture)

    def small(plans):
        config = plans["configurations"][dataset["config"]]
        arch = config["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [min(int(f), BF16_WIDTH) for f in arch["features_per_stage"]]
        config["patch_size"] = [2 * math.prod(int(s[axis]) for s in arch["strides"])  # instance norm: > 1 voxel
                                for axis in range(len(config["patch_size"]))]

    trainer = make_trainer(getattr(trainers, trainer_name), dataset, edit_plans=small)
    assert max(trainer.network.encoder.output_channels) == BF16_WIDTH
    spies = [_DtypeSpy(a) for a in trainer.batch_augmentations]
    trainer.batch_augmentations = spies
    seen_net = []
    hook = trainer.network.register_forward_hook(lambda m, i, o: seen_net.append((o[0] if isinstance(o, (list, tuple))
                                                                                  else o).dtype))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = trainer.train_step(synthetic_batch(trainer))
    finally:
        hook.remove()
    assert torch.isfinite(torch.as_tensor(out["loss"])).all(), out["loss"]
    assert seen_net == [torch.bfloat16], seen_net
    for spy in spies:
        assert spy.seen, f"{spy.inner!r} did not run"
        assert all(s == (torch.float32, torch.float32, False) for s in spy.seen), spy.seen
