"""Geometry: eqs. (4)-(7), SE(3) conventions, and the K-component warp of eq. (6)."""

import math

import numpy as np
import pytest
import torch
from synthetic import kitti_like_intrinsics, textured_image

from mds_core.method.decomposition import ComponentMotion
from mds_core.method.geometry import (
    axis_angle_to_matrix,
    backproject,
    invert_transform,
    pose_vector_to_transform,
    project,
    transform_points,
)
from mds_core.method.warping import sample_source, warp_source

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

H, W = 32, 64


def identity_motion(batch: int, k: int = 1) -> ComponentMotion:
    masks = torch.full((batch, k, H, W), 1.0 / k)
    return ComponentMotion(masks=masks, transforms=torch.eye(4).expand(batch, k, 4, 4).clone())


def rigid_motion(transform: torch.Tensor) -> ComponentMotion:
    batch = transform.shape[0]
    return ComponentMotion(masks=torch.ones(batch, 1, H, W), transforms=transform[:, None])


def test_identity_motion_reproduces_the_image():
    source = textured_image(H, W, batch=2)
    depth = torch.rand(2, 1, H, W) * 20 + 1
    result = warp_source(source, depth, kitti_like_intrinsics(W, H, 2), identity_motion(2, k=3))
    assert torch.allclose(result.image, source, atol=1e-5)


def test_backproject_then_project_returns_pixel_centres():
    depth = torch.rand(1, 1, H, W) * 50 + 0.5
    k = kitti_like_intrinsics(W, H)
    pixels = project(backproject(depth, torch.linalg.inv(k)), k)
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    assert torch.allclose(pixels[0, ..., 0], u, atol=1e-3)
    assert torch.allclose(pixels[0, ..., 1], v, atol=1e-3)


def test_translation_of_a_fronto_parallel_plane_matches_hand_computation():
    # Plane at Z = 10; the source camera sees target points shifted by t = (+1, 0, 0) metres:
    # u' = fx (X + 1) / Z + cx = u + fx / Z. Choose fx / Z = 2 pixels.
    depth = torch.full((1, 1, H, W), 10.0)
    k = torch.tensor([[[20.0, 0.0, W / 2], [0.0, 20.0, H / 2], [0.0, 0.0, 1.0]]])
    transform = torch.eye(4)[None].clone()
    transform[0, 0, 3] = 1.0
    source = textured_image(H, W, seed=3)
    result = warp_source(source, depth, k, rigid_motion(transform))
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    assert torch.allclose(result.pixels[0, ..., 0], u + 2.0, atol=1e-4)
    assert torch.allclose(result.pixels[0, ..., 1], v, atol=1e-4)
    # the warped image is the SOURCE shifted left by two columns (border columns repeat)
    assert torch.allclose(result.image[..., : W - 2], source[..., 2:], atol=1e-5)


def test_forward_translation_scales_about_the_principal_point():
    # Moving the source camera 2 m back along z: Z' = Z + 2 -> u' - cx = (u - cx) Z / (Z + 2)
    z = 8.0
    depth = torch.full((1, 1, H, W), z)
    k = kitti_like_intrinsics(W, H)
    transform = torch.eye(4)[None].clone()
    transform[0, 2, 3] = 2.0
    pixels = warp_source(textured_image(H, W), depth, k, rigid_motion(transform)).pixels
    cx, cy = k[0, 0, 2], k[0, 1, 2]
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    assert torch.allclose(pixels[0, ..., 0], cx + (u - cx) * z / (z + 2), atol=1e-4)
    assert torch.allclose(pixels[0, ..., 1], cy + (v - cy) * z / (z + 2), atol=1e-4)


def test_pure_rotation_is_the_homography_k_r_k_inverse():
    k = kitti_like_intrinsics(W, H)
    axis_angle = torch.tensor([[0.0, 0.05, 0.0]])
    transform = pose_vector_to_transform(axis_angle, torch.zeros(1, 3))
    depth = torch.rand(1, 1, H, W) * 30 + 1  # depth must not matter
    pixels = warp_source(textured_image(H, W), depth, k, rigid_motion(transform)).pixels
    homography = (k[0] @ transform[0, :3, :3] @ torch.linalg.inv(k[0])).numpy()
    u, v = 10, 7
    p = homography @ np.array([u, v, 1.0])
    assert np.allclose(pixels[0, v, u].numpy(), p[:2] / p[2], atol=1e-3)


def test_rodrigues_matches_a_known_rotation_and_zero_is_identity():
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(r, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))


def test_inverted_pose_vector_is_the_exact_inverse():
    axis_angle = torch.tensor([[0.1, -0.2, 0.05]])
    translation = torch.tensor([[0.3, 0.1, -1.2]])
    t = pose_vector_to_transform(axis_angle, translation)
    t_inv = pose_vector_to_transform(axis_angle, translation, invert=True)
    assert torch.allclose(t @ t_inv, torch.eye(4), atol=1e-6)
    assert torch.allclose(invert_transform(t), t_inv, atol=1e-6)
    # T = Trans(t) R: the translation column is t itself
    assert torch.allclose(t[0, :3, 3], translation[0])


def test_one_hot_masks_equal_the_per_component_rigid_warps():
    torch.manual_seed(0)
    k = kitti_like_intrinsics(W, H)
    depth = torch.rand(1, 1, H, W) * 20 + 2
    source = textured_image(H, W, seed=5)
    transforms = pose_vector_to_transform(torch.randn(1, 3, 3) * 0.05, torch.randn(1, 3, 3) * 0.5)
    labels = torch.randint(0, 3, (1, H, W))
    masks = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    combined = warp_source(source, depth, k, ComponentMotion(masks, transforms)).image
    for i in range(3):
        single = warp_source(source, depth, k, rigid_motion(transforms[:, i])).image
        region = (labels == i)[:, None].expand_as(single)
        assert torch.allclose(combined[region], single[region], atol=1e-5)


def test_soft_masks_weight_the_whole_transformed_point():
    # eq. (6): x' = sum_i M_i (R_i x + t_i) -- translation weighted too
    points = torch.randn(1, 3, H, W)
    transforms = pose_vector_to_transform(torch.randn(1, 2, 3) * 0.1, torch.randn(1, 2, 3))
    masks = torch.softmax(torch.randn(1, 2, H, W), dim=1)
    moved = ComponentMotion(masks, transforms).transform_points(points)
    expected = sum(masks[:, i:i + 1] * transform_points(transforms[:, i], points) for i in range(2))
    assert torch.allclose(moved, expected, atol=1e-5)


def test_sampling_uses_align_corners_true():
    source = textured_image(H, W)
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    pixels = torch.stack([u, v], dim=-1)[None]
    assert torch.allclose(sample_source(source, pixels), source, atol=1e-6)


def test_geometry_does_not_bake_in_the_batch_size():
    k = kitti_like_intrinsics(W, H, 1)
    for batch in (1, 3):
        depth = torch.ones(batch, 1, H, W)
        out = warp_source(textured_image(H, W, batch), depth, k.expand(batch, 3, 3), identity_motion(batch))
        assert out.image.shape == (batch, 3, H, W)


def test_inverse_camera_matrix_in_closed_form_equals_the_general_inverse():
    from mds_core.method.geometry.camera import inverse_camera_matrix

    K = np.array([[721.5, 0.7, 609.6], [0.0, 707.1, 172.9], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(inverse_camera_matrix(K), np.linalg.inv(K), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(inverse_camera_matrix(K.astype(np.float32)) @ K, np.eye(3), atol=1e-6)
