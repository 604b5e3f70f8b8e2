"""Network shapes for K in {1, 2, 5, 10} and ResNet18/50, and local pretrained weights."""

import pytest
import torch
import torchvision

from mds_core.config import ModelConfig
from mds_core.method.model import MonoDepthSeg
from mds_core.method.networks import PretrainedWeightsError, ResnetEncoder, adapt_first_conv, disparity_to_depth

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

H, W = 64, 96


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_output_shapes(encoder, k):
    hypotheses = [2.0, 0.0, -0.5, 1.5, 3.0, -1.0, 2.5, -1.5, 4.0] if k == 10 else None  # more than the standard list
    config = ModelConfig(height=H, width=W, depth_encoder=encoder, pose_mask_encoder=encoder, num_components=k,
                         motion_hypotheses=hypotheses)
    model = MonoDepthSeg(config).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, H, W), [-1, 1])
    assert [d.shape for d in out.disparities] == [(2, 1, H >> s, W >> s) for s in range(4)]
    assert out.depth.shape == (2, 1, H, W)
    assert 0.1 - 1e-4 <= out.depth.min() and out.depth.max() <= 100 + 1e-2
    assert len(out.sources) == 2
    for source in out.sources:
        assert source.motion.masks.shape == (2, k, H, W)
        assert torch.allclose(source.motion.masks.sum(dim=1), torch.ones(2, H, W), atol=1e-5)
        assert source.motion.transforms.shape == (2, k, 4, 4)


def test_deeplab_backbone_runs_at_output_stride_16():
    config = ModelConfig(height=H, width=W, depth_encoder="resnet18", pose_mask_encoder="deeplabv3_resnet50",
                         num_components=3)
    model = MonoDepthSeg(config).eval()
    assert model.pose_mask_net.encoder.reductions[-1] == 16
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, H, W), [-1])
    assert out.sources[0].motion.masks.shape == (1, 3, H, W)


def test_disparity_to_depth_range():
    assert torch.allclose(disparity_to_depth(torch.tensor(0.0), 0.1, 100.0), torch.tensor(100.0))
    assert torch.allclose(disparity_to_depth(torch.tensor(1.0), 0.1, 100.0), torch.tensor(0.1))


def test_pose_outputs_are_scaled_by_one_hundredth():
    config = ModelConfig(height=H, width=W, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2)
    model = MonoDepthSeg(config)
    last = model.pose_mask_net.pose_decoder.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 1.0)
    out = model.pose_mask_net(torch.rand(1, 3, H, W), torch.rand(1, 3, H, W), torch.rand(1, 1, H, W))
    assert torch.allclose(out.axis_angle, torch.full((1, 2, 3), 0.01))
    assert torch.allclose(out.translation, torch.full((1, 2, 3), 0.01))


def test_imagenet_weights_load_and_conv1_is_widened(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    encoder = ResnetEncoder("resnet18", in_channels=7)
    encoder.load_pretrained(path)
    w = reference.conv1.weight
    assert torch.allclose(encoder.conv1.weight[:, :3], w / 2)
    assert torch.allclose(encoder.conv1.weight[:, 3:6], w / 2)
    assert torch.allclose(encoder.conv1.weight[:, 6:], w.mean(dim=1, keepdim=True) / 2)
    assert torch.equal(encoder.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    rgb = ResnetEncoder("resnet18", in_channels=3)
    rgb.load_pretrained(path)
    assert torch.equal(rgb.conv1.weight, w)


def test_deeplab_weights_fill_the_pose_mask_backbone(tmp_path):
    deeplab = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    path = tmp_path / "deeplab.pth"
    torch.save(deeplab.state_dict(), path)
    config = ModelConfig(height=H, width=W, depth_encoder="resnet18", pose_mask_encoder="deeplabv3_resnet50")
    model = MonoDepthSeg(config)
    model.pose_mask_net.encoder.load_pretrained(path)
    assert torch.equal(model.pose_mask_net.encoder.layer4[0].conv2.weight, deeplab.backbone.layer4[0].conv2.weight)


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        ResnetEncoder("resnet18").load_pretrained(tmp_path / "nope.pth")
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not fit a resnet50"):
        ResnetEncoder("resnet50").load_pretrained(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        ResnetEncoder("resnet18").load_pretrained(garbage)


def test_adapt_first_conv_rejects_impossible_channel_counts():
    with pytest.raises(PretrainedWeightsError):
        adapt_first_conv(torch.zeros(64, 3, 7, 7), 5)


def test_decoder_elu_matches_torch_elu_and_its_gradient():
    import torch.nn.functional as F

    from mds_core.method.networks.layers import ELU

    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(1000, generator=generator) * 4, torch.tensor([0.0, -1e-9, -3e-8, -100.0, 100.0])])
    x = x.requires_grad_()
    reference = x.detach().clone().requires_grad_()
    out, expected = ELU()(x), F.elu(reference)
    assert (out - expected).abs().max() <= 6e-8
    grad = torch.randn(x.shape, generator=generator)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(x.grad, reference.grad, atol=1e-6)
    x64 = torch.randn(20, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradcheck(ELU(), (x64,), fast_mode=True)
    with torch.no_grad():  # inference: the same values without the autograd function
        assert (ELU()(x) - expected).abs().max() <= 6e-8
