"""RandConv, ProgressiveRandConv, GIN, the consistency loss, and the random-convolution trainers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_rc.augment import AUGMENTATIONS, GIN, ProgressiveRandConv, ProgressiveRandConvDeform, RandConv
from nnunet_rc.augment.randconv import grouped_random_conv
from nnunet_rc.losses import consistency_loss

CLASSES = [RandConv, ProgressiveRandConv, ProgressiveRandConvDeform, GIN]
SHAPES = [(3, 2, 24, 20), (2, 3, 12, 10, 8)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blobs(seed, s=64):
    """A grey image with four discs and its disc mask (the 'label')."""
    g = gen(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    img, lab = torch.zeros(s, s), torch.zeros(s, s, dtype=torch.bool)
    for i in range(4):
        c = torch.rand(2, generator=g) * 1.4 - 0.7
        r = torch.rand(1, generator=g) * 0.25 + 0.1
        m = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) < r ** 2
        img[m] += 1 + i
        lab |= m
    return img + 0.05 * torch.randn(s, s, generator=g), lab


def edges(x):
    gx = x[..., 1:, :-1] - x[..., :-1, :-1]
    gy = x[..., :-1, 1:] - x[..., :-1, :-1]
    return (gx ** 2 + gy ** 2).sqrt()


def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_registered():
    for cls in CLASSES:
        assert AUGMENTATIONS[cls.__name__] is cls


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mix_channels", [True, False])
def test_shape_dtype_stats_finite(cls, shape, mix_channels):
    x = torch.randn(*shape) * 3 + 1
    y = cls(p=1.0, mix_channels=mix_channels)(x, generator=gen())
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    dims = tuple(range(2, x.ndim))
    torch.testing.assert_close(y.mean(dims), x.mean(dims), atol=5e-3, rtol=1e-3)  # tanh may saturate
    torch.testing.assert_close(y.std(dims), x.std(dims), atol=5e-3, rtol=1e-3)
    assert not torch.allclose(y, x)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("value", [0.0, 2.5])
def test_constant_input_stays_finite(cls, value):
    for shape in SHAPES:
        x = torch.full(shape, value)
        y = cls(p=1.0)(x, generator=gen())
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, x)  # constant in, same constant out (mean kept, std 0)


@pytest.mark.parametrize("cls", CLASSES)
def test_low_precision_and_autocast_keep_dtype(cls):
    x = torch.randn(2, 2, 16, 16)
    for dtype in (torch.float16, torch.bfloat16):
        y = cls(p=1.0)(x.to(dtype), generator=gen())
        assert y.dtype == dtype and torch.isfinite(y.float()).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = cls(p=1.0)(x, generator=gen())
    assert y.dtype == torch.float32


@pytest.mark.parametrize("cls", CLASSES)
def test_per_sample_parameters_unless_same_on_batch(cls):
    x = torch.randn(1, 2, 20, 20).repeat(4, 1, 1, 1)
    y = cls(p=1.0)(x, generator=gen())
    for i in range(1, 4):
        assert not torch.allclose(y[0], y[i], atol=1e-4)
    y = cls(p=1.0, same_on_batch=True)(x, generator=gen())
    for i in range(1, 4):
        torch.testing.assert_close(y[0], y[i])


@pytest.mark.parametrize("cls", CLASSES)
def test_seed_reproducibility(cls):
    x = torch.randn(3, 2, 16, 16, 16)
    a, b = cls(p=1.0)(x, generator=gen(7)), cls(p=1.0)(x, generator=gen(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = cls(p=1.0)(x, generator=gen(8))
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("cls", CLASSES)
def test_probability(cls):
    x = torch.randn(8, 1, 16, 16)
    assert cls(p=0.0)(x, generator=gen()) is x
    kwargs = {"kernel_sizes": (3,)} if cls is RandConv else {}  # 1x1 RC on one channel is ±identity
    y = cls(p=1.0, **kwargs)(x, generator=gen())
    for i in range(8):
        assert not torch.allclose(y[i], x[i], atol=1e-3)
    with pytest.raises(ValueError):
        cls(p=1.5)


def test_probability_half_mixes_samples():
    x = torch.randn(64, 1, 8, 8)
    y = RandConv(p=0.5, kernel_sizes=(3,))(x, generator=gen(1))
    same = sum(torch.equal(y[i], x[i]) for i in range(64))
    assert 10 < same < 54


@pytest.mark.parametrize("cls", CLASSES)
def test_structure_preserved(cls):
    x, lab = blobs(0)
    unrelated, _ = blobs(1)
    n = 16
    y = cls(p=1.0)(x[None, None].repeat(n, 2, 1, 1), generator=gen())[:, 0]
    own = np.mean([corr(edges(y[i]), edges(x)) for i in range(n)])
    other = np.mean([corr(edges(y[i]), edges(unrelated)) for i in range(n)])
    assert own > other + 0.2, (own, other)
    # the label region stays separable: |mean_in - mean_out| in units of the within-region std
    sep = [float((y[i][lab].mean() - y[i][~lab].mean()).abs() / ((y[i][lab].var() + y[i][~lab].var()) / 2).sqrt())
           for i in range(n)]
    assert np.mean(sep) > 1.0, sep


def test_progressive_strength_grows_with_depth():
    x, _ = blobs(0)
    x = x[None, None]
    aug = ProgressiveRandConv(p=1.0)
    dissim = {1: [], 3: [], 10: []}
    for seed in range(12):
        params = aug.get_parameters(x, gen(seed))
        for depth in dissim:
            params["depth"] = torch.tensor([depth])
            dissim[depth].append(1 - abs(corr(aug.apply(x, params), x)))
    means = [np.mean(dissim[d]) for d in (1, 3, 10)]
    assert means[0] < means[1] < means[2], means


def test_progressive_repeats_the_same_block():
    x = torch.randn(2, 2, 12, 12)
    aug = ProgressiveRandConv(p=1.0)
    params = aug.get_parameters(x, gen())
    params["depth"] = torch.tensor([3, 1])
    out = aug.apply(x, params)
    once = aug.block(x, params)
    thrice = aug.block(aug.block(once, params), params)
    torch.testing.assert_close(out[0], thrice[0])
    torch.testing.assert_close(out[1], once[1])


def test_randconv_is_the_stated_linear_map():
    """1x1 kernels, depth 1: a per-pixel channel mixing ``y = W x`` with each sample's own W."""
    x = torch.randn(3, 2, 8, 8)
    aug = RandConv(p=1.0, kernel_sizes=(1,), depths=(1,))
    params = aug.get_parameters(x, gen())
    w = params["weight"][:, 0, :, :, 0, 0] if params["weight"].shape[-1] == 1 else None
    assert w is not None and w.shape == (3, 2, 2)
    torch.testing.assert_close(aug.apply(x, params), torch.einsum("boc,bcxy->boxy", w, x))
    # sigma = 1/sqrt(C k^d): here 1/sqrt(2)
    big = aug.get_parameters(torch.zeros(4000, 2, 4, 4), gen())["weight"]
    assert abs(float(big.std()) - 2 ** -0.5) < 0.02


def test_grouped_conv_equals_per_sample_conv():
    for d in (2, 3):
        x = torch.randn(3, 2, *([9] * d))
        conv = torch.nn.functional.conv2d if d == 2 else torch.nn.functional.conv3d
        for groups, cin in ((1, 2), (2, 1)):
            w = torch.randn(3, 2, cin, *([3] * d))
            b = torch.randn(3, 2)
            out = grouped_random_conv(x, w, groups, b)
            for i in range(3):
                xi = torch.nn.functional.pad(x[i:i + 1], [1] * (2 * d), mode="reflect")
                torch.testing.assert_close(out[i:i + 1], conv(xi, w[i], b[i], groups=groups), atol=1e-5, rtol=1e-5)


def test_depth_and_kernel_size_per_sample_in_one_batch():
    """A batch mixing depths/kernel sizes gives, per sample, what that sample alone would give."""
    x = torch.randn(4, 2, 16, 16)
    aug = RandConv(p=1.0)
    params = aug.get_parameters(x, gen(3))
    params["k"] = torch.tensor([1, 3, 5, 7])
    params["depth"] = torch.tensor([4, 1, 2, 3])
    from nnunet_rc.augment.randconv import _centre_mask
    params["weight"] = params["weight"] * _centre_mask(params["k"], 7, 2).view(4, 1, 1, 1, 7, 7)
    out = aug.apply(x, params)
    for i in range(4):
        single = {k: v[i:i + 1] for k, v in params.items()}
        torch.testing.assert_close(out[i:i + 1], aug.apply(x[i:i + 1], single), atol=1e-5, rtol=1e-5)


def test_gin_norm_and_mix():
    x = torch.randn(2, 2, 16, 16)
    aug = GIN(p=1.0)
    params = aug.get_parameters(x, gen())
    params["alpha"] = torch.tensor([0.0, 1.0])
    out = aug.apply(x, params)
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1].norm(), x[1].norm())


def test_randconv_mix_variant():
    x = torch.randn(2, 1, 16, 16)
    aug = RandConv(p=1.0, mix=True)
    params = aug.get_parameters(x, gen())
    params["alpha"] = torch.tensor([0.0, 0.5])
    plain = RandConv(p=1.0).apply(x, {k: v for k, v in params.items() if k != "alpha"})
    out = aug.apply(x, params)
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1], 0.5 * plain[1] + 0.5 * x[1])


def test_progressive_randconv_mix_variant():
    """The mix gives the blocks' output the input's per-sample, per-channel mean and std, then mixes; the draws
    other than ``alpha`` are the unmixed augmentation's for the same generator."""
    x = 3.0 * torch.randn(2, 2, 16, 16) + 1.0
    aug = ProgressiveRandConv(p=1.0, mix=True)
    params = aug.get_parameters(x, gen())
    plain_params = ProgressiveRandConv(p=1.0).get_parameters(x, gen())
    assert set(params) == set(plain_params) | {"alpha"}
    for k, v in plain_params.items():
        torch.testing.assert_close(params[k], v)
    params["alpha"] = torch.tensor([0.0, 0.5])
    plain = ProgressiveRandConv(p=1.0).apply(x, plain_params)
    assert float(plain[1].std()) < 0.5 * float(x[1].std())  # tanh output: far below the input's scale
    out = aug.apply(x, params)
    torch.testing.assert_close(out[0], x[0])
    dims = (1, 2)
    scaled = (plain[1] - plain[1].mean(dims, keepdim=True)) / plain[1].std(dims, unbiased=False, keepdim=True)
    scaled = scaled * x[1].std(dims, unbiased=False, keepdim=True) + x[1].mean(dims, keepdim=True)
    torch.testing.assert_close(out[1], 0.5 * scaled + 0.5 * x[1], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        full = aug(x, generator=gen())
    assert full.shape == x.shape and torch.isfinite(full).all()


def test_per_modality_keeps_channels_separate():
    x = torch.randn(2, 3, 16, 16)
    x2 = x.clone()
    x2[:, 1] = torch.randn(2, 16, 16)  # change modality 1 only
    for cls in CLASSES:
        a = cls(p=1.0, mix_channels=False)(x, generator=gen())
        b = cls(p=1.0, mix_channels=False)(x2, generator=gen())
        torch.testing.assert_close(a[:, [0, 2]], b[:, [0, 2]])
        m = cls(p=1.0, mix_channels=True)(x2, generator=gen())
        assert not torch.allclose(cls(p=1.0, mix_channels=True)(x, generator=gen())[:, 0], m[:, 0])


def test_keep_background():
    x = torch.randn(2, 2, 16, 16)
    x[:, :, :4] = 0
    y = RandConv(p=1.0, keep_background=True)(x, generator=gen())
    assert torch.equal(y[:, :, :4], x[:, :, :4])
    assert not torch.allclose(y[:, :, 4:], x[:, :, 4:])


@pytest.mark.parametrize("cls", CLASSES)
def test_no_gradient_and_no_parameters(cls):
    aug = cls(p=1.0)
    assert list(aug.parameters()) == []
    x = torch.randn(2, 2, 12, 12, requires_grad=True)
    y = aug(x, generator=gen())
    assert y.grad_fn is None and not y.requires_grad


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", CLASSES)
def test_cuda(cls):
    x = torch.randn(2, 2, 32, 32, 32, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    y = cls(p=1.0)(x, generator=g)
    assert y.device == x.device and y.dtype == x.dtype and torch.isfinite(y).all()
    with torch.autocast("cuda", dtype=torch.float16):
        z = cls(p=1.0)(x.half(), generator=g)
    assert z.dtype == torch.float16 and torch.isfinite(z.float()).all()
    ref = cls(p=1.0)(x.cpu(), generator=torch.Generator().manual_seed(1))
    assert ref.shape == y.shape


# ---- consistency loss ---------------------------------------------------------------------------------

def test_consistency_loss_values():
    z = torch.randn(2, 3, 4, 4)
    assert float(consistency_loss(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    # two near one-hot views on different classes: JS divergence -> log 2
    a = torch.zeros(1, 2, 1, 1)
    a[0, 0] = 50
    b = torch.zeros(1, 2, 1, 1)
    b[0, 1] = 50
    assert float(consistency_loss(a, b)) == pytest.approx(np.log(2), abs=1e-4)
    # hand-computed: p = (0.5, 0.5) vs q = softmax(log 3, 0) = (0.75, 0.25), m = (0.625, 0.375)
    p = torch.zeros(1, 2, 1, 1)
    q = torch.tensor([np.log(3.0), 0.0]).view(1, 2, 1, 1).float()
    m = np.array([0.625, 0.375])
    expected = 0.5 * (sum(pi * np.log(pi / mi) for pi, mi in zip([0.5, 0.5], m))
                      + sum(qi * np.log(qi / mi) for qi, mi in zip([0.75, 0.25], m)))
    assert float(consistency_loss(p, q)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        consistency_loss(z)


# ---- trainers ---------------------------------------------------------------------------------------------

TRAINER_NAMES = ["nnUNetTrainerRandConv", "nnUNetTrainerRandConvK3", "nnUNetTrainerRandConvDepth1",
                 "nnUNetTrainerRandConvPerModality", "nnUNetTrainerRandConvNoMix", "nnUNetTrainerRandConvKeepBG",
                 "nnUNetTrainerRandConvReach", "nnUNetTrainerProRandConv", "nnUNetTrainerProRandConvDeform",
                 "nnUNetTrainerProRandConvMix", "nnUNetTrainerGIN", "nnUNetTrainerRandConvCL"]


def _cls(name):
    from nnunet_rc import trainers

    return getattr(trainers, name)


def _clone_target(t):
    return [i.clone() for i in t] if isinstance(t, list) else t.clone()


def _assert_same_target(a, b):
    if isinstance(a, list):
        assert len(a) == len(b) and all(torch.equal(i, j) for i, j in zip(a, b))
    else:
        assert torch.equal(a, b)


#: the main trainers also run on the 2-channel 3D dataset; the one-attribute variants on 2D only
MAIN_TRAINERS = ["nnUNetTrainerRandConv", "nnUNetTrainerRandConvPerModality", "nnUNetTrainerProRandConv",
                 "nnUNetTrainerProRandConvDeform", "nnUNetTrainerGIN", "nnUNetTrainerRandConvCL"]


@pytest.mark.parametrize("name, which", [(n, "preprocessed_2d") for n in TRAINER_NAMES]
                         + [(n, "preprocessed_3d") for n in MAIN_TRAINERS])
def test_trainer_train_step(name, which, request):
    from conftest import make_trainer, synthetic_batch

    dataset = request.getfixturevalue(which)
    trainer = make_trainer(_cls(name), dataset)
    assert len(trainer.batch_augmentations) == 1
    for aug in trainer.batch_augmentations:
        aug.p = 1.0
    batch = synthetic_batch(trainer)
    data, target = batch["data"].clone(), _clone_target(batch["target"])
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"]).all()
    assert trainer.num_augmented_batches == 1
    _assert_same_target(batch["target"], target)
    assert torch.equal(batch["data"], data)  # augmentation returns new tensors, the batch is not modified


def test_trainer_hyperparameters():
    assert _cls("nnUNetTrainerRandConvK3").rc_kernel_sizes == (3,)
    assert _cls("nnUNetTrainerRandConvDepth1").rc_depths == (1,)
    assert _cls("nnUNetTrainerRandConvPerModality").rc_mix_channels is False
    assert _cls("nnUNetTrainerRandConv").rc_mix is True  # attempt A6, kept
    assert _cls("nnUNetTrainerRandConvNoMix").rc_mix is False
    assert _cls("nnUNetTrainerRandConvK3").rc_mix is True  # the variants change one attribute of the default
    assert _cls("nnUNetTrainerRandConvKeepBG").rc_keep_background is True
    assert _cls("nnUNetTrainerRandConvCL").consistency_weight == 5.0
    assert _cls("nnUNetTrainerProRandConvMix").prc_mix is True  # attempt A8's variant
    assert _cls("nnUNetTrainerProRandConv").prc_mix is False and _cls("nnUNetTrainerProRandConvDeform").prc_mix is False


def test_progressive_mix_trainer_builds_the_mixed_augmentation(preprocessed_2d):
    from conftest import make_trainer

    (aug,) = make_trainer(_cls("nnUNetTrainerProRandConvMix"), preprocessed_2d).batch_augmentations
    assert isinstance(aug, ProgressiveRandConv) and aug.mix is True and aug.p == 0.5 and aug.deform_std == 0


def test_consistency_trainer_adds_the_consistency_term(preprocessed_2d):
    from conftest import make_trainer, synthetic_batch

    cls = _cls("nnUNetTrainerRandConvCL")
    losses = []
    for weight in (5.0, 0.0):
        torch.manual_seed(0)
        trainer = make_trainer(cls, preprocessed_2d)
        trainer.consistency_weight = weight
        losses.append(float(trainer.train_step(synthetic_batch(trainer))["loss"]))
    assert np.isfinite(losses).all()
    assert losses[0] > losses[1] + 1e-6, losses


def test_augmentation_not_applied_in_validation(preprocessed_2d):
    from conftest import make_trainer, synthetic_batch

    trainer = make_trainer(_cls("nnUNetTrainerRandConv"), preprocessed_2d)
    calls = []
    aug = trainer.batch_augmentations[0]
    original = aug.forward
    aug.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    trainer.on_validation_epoch_start()
    trainer.validation_step(synthetic_batch(trainer))
    assert calls == [] and trainer.num_augmented_batches == 0
    trainer.network.train()
    trainer.train_step(synthetic_batch(trainer))
    assert calls == [1]


# ---- real CLI ---------------------------------------------------------------------------------------

def _train_and_predict(dataset, config, trainer, tmp_path, plans="nnUNetPlans"):
    """``nnUNetv2_train`` (short schedule) then ``nnUNetv2_predict`` of the training images with ``-p plans``;
    every prediction must exist, match its reference's shape and hold only the dataset's labels."""
    import SimpleITK as sitk
    from PIL import Image

    from conftest import run_cli, short_schedule_env

    did = dataset["id"]
    run_cli(["nnUNetv2_train", did, config, 0, "-tr", trainer, "-p", plans, "-device", "cpu"], env=short_schedule_env())
    out = tmp_path / f"pred_{trainer}_{config}"
    run_cli(["nnUNetv2_predict", "-i", dataset["raw"] / "imagesTr", "-o", out, "-d", did, "-c", config, "-f", 0,
             "-tr", trainer, "-p", plans, "-device", "cpu", "--disable_tta", "-npp", 1, "-nps", 1])
    cases = sorted({p.name.rsplit("_", 1)[0] for p in (dataset["raw"] / "imagesTr").iterdir()})
    ending = ".png" if config == "2d" else ".nii.gz"
    for case in cases:
        f = out / f"{case}{ending}"
        assert f.is_file(), f"missing prediction {f}"
        ref = dataset["raw"] / "labelsTr" / f"{case}{ending}"
        if ending == ".png":
            pred, gt = np.asarray(Image.open(f)), np.asarray(Image.open(ref))
        else:
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
            gt = sitk.GetArrayFromImage(sitk.ReadImage(str(ref)))
        assert pred.shape == gt.shape
        assert set(np.unique(pred)) <= {0, 1, 2}


def test_cli_train_predict_randconv_3d(preprocessed_3d, tmp_path):
    _train_and_predict(preprocessed_3d, "3d_fullres", "nnUNetTrainerRandConv", tmp_path)

# the full trainer x configuration matrix through the CLI: test_cli_every_trainer.py (slow)


@pytest.mark.parametrize("shape,k", [((1, 2, 7, 6, 5), 3), ((1, 1, 8, 5, 6), 5), ((1, 3, 2, 4, 4), 1)])
def test_single_sample_3d_conv_in_two_halves_equals_conv3d(shape, k):
    """One sample, one group (the rest of a batch whose other samples finished): same values as conv3d."""
    from nnunet_rc.augment.randconv import grouped_random_conv

    x = torch.randn(shape)
    w = torch.randn(1, 4, shape[1], k, k, k)
    bias = torch.randn(1, 4)
    mode = "reflect" if min(shape[2:]) > k // 2 else "replicate"
    ref = torch.nn.functional.conv3d(torch.nn.functional.pad(x, [k // 2] * 6, mode=mode) if k > 1 else x, w[0],
                                     bias[0])
    torch.testing.assert_close(grouped_random_conv(x, w, 1, bias), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 12, 10), (2, 1, 6, 7, 8)])
def test_progressive_block_is_the_stated_formula(shape):
    """``tanh(γ' · (y − mean) / std + β')`` of ``y = W * h`` per sample and channel (population std), also
    when only some samples are still active (``rows``)."""
    x = torch.randn(shape)
    aug = ProgressiveRandConv(p=1.0)
    params = aug.get_parameters(x, gen())
    dims = tuple(range(2, x.ndim))
    y = grouped_random_conv(x, params["weight"], 1)
    view = (shape[0], shape[1]) + (1,) * len(dims)
    z = (y - y.mean(dims, keepdim=True)) / y.std(dims, unbiased=False, keepdim=True)
    ref = torch.tanh(params["gamma"].view(view) * z + params["beta"].view(view))
    torch.testing.assert_close(aug.block(x, params), ref, atol=1e-5, rtol=1e-5)
    rows = torch.tensor([shape[0] - 1])
    torch.testing.assert_close(aug.block(x[rows], params, rows), ref[rows], atol=1e-5, rtol=1e-5)


def test_kernel_sizes_within_reach_keep_one_physical_reach():
    from nnunet_rc.augment.randconv import kernel_sizes_within_reach, plan_scale

    assert plan_scale([0.072, 0.072], [23.976, 0.024, 0.024]) == pytest.approx(3.0)  # DRIVE's cpu plan (2D)
    assert plan_scale([1.0, 2.4, 1.6], [1.0, 0.8, 0.8]) == pytest.approx(3.0)        # the coarsest axis counts
    assert kernel_sizes_within_reach((1, 3, 5, 7), 1.0) == (1, 3, 5, 7)               # nnU-Net's plans: unchanged
    assert kernel_sizes_within_reach((1, 3, 5, 7), 1.5) == (1, 3, 5)                  # reach 3.0 kept, 4.5 not
    assert kernel_sizes_within_reach((1, 3, 5, 7), 3.0) == (1, 3)
    assert kernel_sizes_within_reach((3, 5), 8.0) == (1,)  # nothing within: the per-voxel kernel only
    with pytest.raises(ValueError, match="do not match"):
        plan_scale([1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="odd"):
        kernel_sizes_within_reach((2, 3), 1.0)


@pytest.mark.parametrize("factor, sizes", [(1.0, (1, 3, 5, 7)), (3.0, (1, 3))])
def test_reach_trainer_limits_kernel_sizes_by_the_plans_spacing(preprocessed_2d, factor, sizes):
    from conftest import make_trainer

    def coarser(plans):  # as the cpu profile's coarse plan at factor 3
        cfg = plans["configurations"][preprocessed_2d["config"]]
        assert cfg["spacing"] == pytest.approx(plans["original_median_spacing_after_transp"][-2:])
        cfg["spacing"] = [v * factor for v in cfg["spacing"]]

    trainer = make_trainer(_cls("nnUNetTrainerRandConvReach"), preprocessed_2d, edit_plans=coarser, initialize=False)
    (aug,) = trainer.batch_augmentations
    assert aug.kernel_sizes == sizes and aug.p == 0.5
    assert _cls("nnUNetTrainerRandConv").rc_kernel_sizes is None  # the class default is not touched
