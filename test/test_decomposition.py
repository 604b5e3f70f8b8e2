"""Eq. (3): depth-ordered softmax, and the model's frame-order convention."""

import math

import torch

from mds_core.config import ModelConfig
from mds_core.method.decomposition import depth_ordered_softmax, plain_softmax
from mds_core.method.model import MonoDepthSeg


def test_depth_ordering_matches_equation_3_by_hand():
    logits = torch.tensor([0.5, 0.2, -0.1]).view(1, 3, 1, 1)
    # M_i = exp(i * M'_i) / sum_j exp(j * M'_j), i = 1..3
    e = [math.exp(1 * 0.5), math.exp(2 * 0.2), math.exp(3 * -0.1)]
    expected = torch.tensor([x / sum(e) for x in e]).view(1, 3, 1, 1)
    assert torch.allclose(depth_ordered_softmax(logits), expected, atol=1e-6)


def test_ordering_favours_later_components_for_equal_positive_logits():
    masks = depth_ordered_softmax(torch.ones(1, 4, 2, 2))
    assert torch.all(masks[:, 1:] > masks[:, :-1])
    assert torch.allclose(masks.sum(dim=1), torch.ones(1, 2, 2))
    assert torch.allclose(plain_softmax(torch.ones(1, 4, 2, 2)), torch.full((1, 4, 2, 2), 0.25))


def test_previous_source_uses_the_inverse_of_the_predicted_transform():
    config = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                         num_components=2)
    model = MonoDepthSeg(config).eval()
    images = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        out = model(images, [-1, 1])
    for source in out.sources:
        predicted = source.component_transforms
        used = source.motion.transforms
        if source.offset < 0:
            assert torch.allclose(predicted @ used, torch.eye(4).expand_as(used), atol=1e-5)
        else:
            assert torch.equal(predicted, used)


def test_k_equals_one_is_a_single_rigid_motion():
    config = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                         num_components=1)
    model = MonoDepthSeg(config).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 2, 3, 64, 64), [1])
    assert torch.equal(out.sources[0].motion.masks, torch.ones(2, 1, 64, 64))
    assert out.sources[0].motion.transforms.shape == (2, 1, 4, 4)
