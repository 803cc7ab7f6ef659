"""Depth head, SiLog loss, schedule, parameter groups and the evaluation protocol of the depth task."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from vpd_lightning.backbone import DiffusionBackbone
from vpd_lightning.heads import VPDDepthHead
from vpd_lightning.losses import SiLogLoss
from vpd_lightning.tasks import DepthEstimationTask
from vpd_lightning.tasks.schedules import vpd_depth_factor, vpd_depth_schedule


@pytest.fixture(scope="module")
def task(tiny_sd_dir):
    torch.manual_seed(0)
    backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="none")
    head = functools.partial(VPDDepthHead, fusion_channels=32, head_channels=16)
    return DepthEstimationTask(
        backbone,
        head,
        class_embeddings=torch.randn(27, 32),
        optimizer=functools.partial(torch.optim.AdamW, lr=5e-4, weight_decay=0.1),
        scheduler=functools.partial(vpd_depth_schedule, min_lr=3e-5),
    )


def test_head_shapes_sd15_channels_480_padded_to_512():
    """VPD: 480x480 crop padded to 512 -> fused 16x16 map cropped to 15x15 -> 480x480 depth."""
    head = VPDDepthHead([320, 640, 1280, 1280])
    feats = [
        torch.randn(1, 320, 64, 64),
        torch.randn(1, 640, 32, 32),
        torch.randn(1, 1280, 16, 16),
        torch.randn(1, 1280, 8, 8),
    ]
    assert head.out_layer[0].in_channels == 320 + 640 + 1280 + 1280
    assert head.out_layer[0].out_channels == 1536
    with torch.no_grad():
        out = head(feats, (480, 480))
    assert out.shape == (1, 1, 480, 480)
    assert (out > 0).all() and (out < 10).all()  # sigmoid x max_depth
    assert [m.kernel_size for m in head.decoder.deconv_layers if isinstance(m, torch.nn.ConvTranspose2d)] == [
        (2, 2)
    ] * 3


def test_head_odd_sizes_native():
    head = VPDDepthHead([16, 8, 16, 16], fusion_channels=16, head_channels=8)
    feats = [torch.randn(2, 16, 13, 9), torch.randn(2, 8, 7, 5), torch.randn(2, 16, 4, 3), torch.randn(2, 16, 2, 2)]
    assert head(feats, (104, 72)).shape == (2, 1, 104, 72)
    with pytest.raises(ValueError, match="GroupNorm"):
        VPDDepthHead([8, 8, 16, 16])


def test_silog_hand_computed():
    pred = torch.tensor([1.0, 2.0, 4.0, 5.0])
    gt = torch.tensor([2.0, 2.0, 2.0, 0.0])  # last pixel invalid
    d = [math.log(2), 0.0, math.log(0.5)]
    mean_sq = sum(x * x for x in d) / 3
    mean = sum(d) / 3
    expected = math.sqrt(mean_sq - 0.5 * mean**2)
    assert SiLogLoss(0.5)(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    assert SiLogLoss()(torch.ones(3), torch.zeros(3)).item() == 0.0


def test_depth_schedule_values():
    # rise from min to max over half_steps (power 0.9), fall back by 2*half, flat after
    assert vpd_depth_factor(0, 5e-4, 3e-5, 100) == pytest.approx(3e-5 / 5e-4)
    assert vpd_depth_factor(50, 5e-4, 3e-5, 100) == pytest.approx(((5e-4 - 3e-5) * 0.5**0.9 + 3e-5) / 5e-4)
    assert vpd_depth_factor(100, 5e-4, 3e-5, 100) == pytest.approx(1.0)
    assert vpd_depth_factor(150, 5e-4, 3e-5, 100) == pytest.approx(((3e-5 - 5e-4) * 0.5**0.9 + 5e-4) / 5e-4)
    assert vpd_depth_factor(250, 5e-4, 3e-5, 100) == pytest.approx(3e-5 / 5e-4)
    # through torch: group lrs are max_lr x lr_scale, stepped every iteration, step counted from 1
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW([{"params": params[:1], "lr": 5e-4}, {"params": params[1:], "lr": 5e-6}], lr=5e-4)
    sched = vpd_depth_schedule(opt, total_steps=250, max_epochs=25, steps_per_epoch=10)  # half = 12 epochs
    lrs = []
    for _ in range(121):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0][0] == pytest.approx((5e-4 - 3e-5) * (1 / 120) ** 0.9 + 3e-5)
    assert lrs[119][0] == pytest.approx(5e-4)  # step 120 = 12 epochs x 10
    assert lrs[119][1] == pytest.approx(5e-6)  # the UNet group peaks at max_lr x 0.01


def test_parameter_groups(task):
    groups = task.parameter_groups()
    by_id = {id(p): g for g in groups for p in g["params"]}
    names = dict(task.named_parameters())
    for name, p in names.items():
        if not p.requires_grad:
            assert id(p) not in by_id, f"frozen {name} must not be optimised"
            continue
        g = by_id[id(p)]
        assert g["lr"] == pytest.approx(5e-4 * (0.01 if name.startswith("backbone.unet.") else 1.0)), name
        no_decay = p.ndim == 1 or name.endswith(".bias")
        assert g["weight_decay"] == (0.0 if no_decay else 0.1), name
    assert not any(n.startswith("backbone.vae.") for n, p in names.items() if id(p) in by_id)
    assert id(task.text_adapter.gamma) in by_id and by_id[id(task.text_adapter.gamma)]["weight_decay"] == 0.0
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in names.values() if p.requires_grad
    )


def test_forward_pads_and_crops(task):
    image = torch.rand(2, 3, 56, 72)  # padded to 64 x 128 inside, output back at 56 x 72
    pred = task(image, torch.tensor([0, 6]))
    assert pred.shape == (2, 1, 56, 72)
    loss = task.criterion(pred, torch.rand(2, 1, 56, 72) + 0.5)
    loss.backward()
    assert task.backbone.unet.conv_in.weight.grad is not None
    assert task.text_adapter.gamma.grad is not None


def test_eval_protocol_windows_and_flips(task, monkeypatch):
    """With a pixel-wise 'model', sliding windows + flips must give back exactly the pixel-wise map."""
    calls = []

    def fake_forward(image, class_ids):
        calls.append(tuple(image.shape))
        return image[:, :1] * 10 + class_ids.view(-1, 1, 1, 1)

    monkeypatch.setattr(task, "forward", fake_forward)
    image = torch.rand(1, 3, 48, 80)
    out = task.predict_depth(image, torch.tensor([2]))
    assert calls == [(4, 3, 48, 48)]  # 2 windows (x=0, x=32) x (original + flip) in one batch
    assert torch.allclose(out, image[:, :1] * 10 + 2)


def test_eval_protocol_averages_overlaps(task, monkeypatch):
    def fake_forward(image, class_ids):  # a constant per window: 1 for the first, 3 for the second
        out = torch.ones(image.shape[0], 1, *image.shape[-2:])
        out[1::2] *= 3  # batch order: [win0, win1, flip(win0), flip(win1)]
        return out

    monkeypatch.setattr(task, "forward", fake_forward)
    out = task.predict_depth(torch.rand(1, 3, 48, 80), torch.tensor([0]))
    assert torch.all(out[..., :32] == 1) and torch.all(out[..., 48:] == 3) and torch.all(out[..., 32:48] == 2)


def _vpd_predict_depth(model, image, class_ids):
    """VPD's test.py shift-window + flip protocol as this project implemented it before wide images were
    handled (the reference for shapes VPD supports, such as NYUv2's 480x640)."""
    b, _, h, w = image.shape
    interval = (w - h) // (model.hparams.shift_size - 1)
    starts = [i * interval for i in range(model.hparams.shift_size)]
    crops = torch.cat([image[..., s : s + h] for s in starts])
    ids = class_ids.repeat(len(starts))
    pred = model(torch.cat([crops, crops.flip(-1)]), torch.cat([ids, ids]))
    n = crops.shape[0]
    pred = (pred[:n] + pred[n:].flip(-1)) / 2
    canvas, count = image.new_zeros(b, 1, h, w), image.new_zeros(1, 1, 1, w)
    for i, s in enumerate(starts):
        canvas[..., s : s + h] += pred[i * b : (i + 1) * b]
        count[..., s : s + h] += 1
    return canvas / count


def test_eval_protocol_480x640_is_vpds(task, monkeypatch):
    """NYUv2's 480x640: VPD's two windows at x=0 and x=160; and on the tiny model (at 48x64, the same shape
    tenfold smaller) exactly the outputs of the implementation before wide images were handled."""
    task.eval()
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([1, 5])
    with torch.no_grad():
        assert torch.equal(task.predict_depth(x, ids), _vpd_predict_depth(task, x, ids))
    starts = []

    def fake_forward(image, class_ids):
        starts.append(tuple(image.shape))
        return image[:, :1]

    monkeypatch.setattr(task, "forward", fake_forward)
    image = torch.rand(1, 3, 480, 640)
    out = task.predict_depth(image, torch.tensor([0]))
    assert starts == [(4, 3, 480, 480)] and torch.allclose(out, image[:, :1])


@pytest.mark.parametrize(
    ("h", "w", "shift_size", "starts"),
    [
        (480, 640, 2, [0, 160]),  # NYUv2, as VPD
        (48, 200, 2, [0, 38, 76, 114, 152]),  # more than two windows wide: 5 windows, every column covered
        (48, 97, 2, [0, 24, 49]),  # one column wider than two windows
        (48, 96, 2, [0, 48]),
        (48, 81, 3, [0, 16, 33]),  # the last window ends at the right edge (VPD's 2 x 16 = 32 would not)
    ],
)
def test_shift_window_starts(h, w, shift_size, starts):
    from vpd_lightning.tasks.depth import shift_window_starts

    got = shift_window_starts(h, w, shift_size)
    assert got == starts
    covered = torch.zeros(w, dtype=torch.bool)
    for s in got:
        covered[s : s + h] = True
    assert covered.all()


def test_wide_image_has_no_nan_columns(task, monkeypatch):
    """A 48x200 image (more than two windows wide) is predicted in every column."""
    task.eval()
    with torch.no_grad():
        out = task.predict_depth(torch.rand(1, 3, 48, 200), torch.tensor([3]))
    assert out.shape == (1, 1, 48, 200) and torch.isfinite(out).all()
    monkeypatch.setattr(task, "forward", lambda image, class_ids: image[:, :1] * 10)
    image = torch.rand(1, 3, 48, 200)
    assert torch.allclose(task.predict_depth(image, torch.tensor([0])), image[:, :1] * 10)


def test_bad_class_embeddings(tiny_sd_dir):
    backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="none")
    with pytest.raises(ValueError, match=r"class_embeddings must be \[num_classes, 32\]"):
        DepthEstimationTask(backbone, VPDDepthHead, torch.randn(27, 768), functools.partial(torch.optim.AdamW, lr=1e-3))
