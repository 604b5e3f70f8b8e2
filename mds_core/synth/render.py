"""Vectorised numpy ray caster for :class:`~mds_core.synth.scene.Scene`.

Rays go through pixel centres (integer ``u, v``): ``r = K^-1 [u, v, 1]``, kept with
``z = 1`` so the ray parameter of a hit *is* its depth along the optical axis. The nearest
hit among the ground plane ``Z = 0`` and all oriented boxes (slab test in the box frame)
wins; boxes are culled against the view frustum (with near-plane clipping), restricted to
their screen rectangle and processed front to back with an early depth test.
"""

from __future__ import annotations

import numpy as np

from mds_core.synth import textures
from mds_core.synth.frame import MOTION_MOVING, MOTION_PARKED, MOTION_STATIC, SynthFrame
from mds_core.synth.scene import (
    MATERIAL_BUILDING,
    MATERIAL_CAR,
    MATERIAL_POLE,
    Scene,
)

NEAR = 0.05
LIGHT = np.array([-0.35, 0.45, 0.82]) / np.linalg.norm([-0.35, 0.45, 0.82])
AMBIENT = 0.55
DIFFUSE = 0.55

_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)]
)
_EDGES = np.array(
    [(i, j) for i in range(8) for j in range(i + 1, 8) if np.sum(_CORNER_SIGNS[i] != _CORNER_SIGNS[j]) == 1]
)


class Renderer:
    """Renders frames of one scene at the config's resolution."""

    def __init__(self, scene: Scene):
        cfg = scene.config
        self.scene = scene
        self.config = cfg
        self.width = cfg.width
        self.height = cfg.height
        self.K = cfg.intrinsics()
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        v, u = np.meshgrid(np.arange(self.height, dtype=np.float64), np.arange(self.width, dtype=np.float64), indexing="ij")
        self.rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)  # (H, W, 3)
        self.rays_flat = self.rays.reshape(-1, 3)
        self.ray_norm = np.linalg.norm(self.rays_flat, axis=1)
        self.pixel_angle = 1.0 / np.sqrt(fx * fy)
        self.objects = list(scene.objects)
        st = scene.static
        n_obj = len(self.objects)
        self.n_static = len(st.centres)
        # Per-box attributes: static structures first, then the objects.
        self.half = np.concatenate([st.half_sizes, np.array([0.5 * o.size for o in self.objects]).reshape(n_obj, 3)])
        self.material = np.concatenate([st.materials, np.full(n_obj, MATERIAL_CAR, dtype=np.int32)])
        self.color = np.concatenate([st.colors, np.array([o.color for o in self.objects]).reshape(n_obj, 3)]).astype(np.float32)
        self.seed = np.concatenate([st.seeds, np.array([o.texture_seed for o in self.objects], dtype=np.int64)])
        self.periods = np.concatenate([st.window_periods, np.ones((n_obj, 2))])
        self.object_id = np.concatenate([np.zeros(self.n_static, dtype=np.int32), np.array([o.object_id for o in self.objects], dtype=np.int32)])
        motion = [MOTION_MOVING if o.moving else MOTION_PARKED for o in self.objects]
        # Lookup tables indexed by the hit code (-1 sky -> last entry, 0 ground, k + 1 box k).
        self.motion_lut = np.concatenate([[MOTION_STATIC], np.full(self.n_static, MOTION_STATIC), motion, [MOTION_STATIC]]).astype(np.uint8)
        self.instance_lut = np.concatenate([[0], self.object_id, [0]]).astype(np.int32)
        self.corner_local = _CORNER_SIGNS[None] * self.half[:, None, :]  # (N, 8, 3)
        self.rng_seed = int(cfg.seed)

    # ------------------------------------------------------------------ geometry
    def _box_poses(self, t: float) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        st = self.scene.static
        poses = {o.object_id: self.scene.object_pose(o, t) for o in self.objects}
        if self.objects:
            rot = np.concatenate([st.rotations, np.stack([poses[o.object_id][:3, :3] for o in self.objects])])
            cen = np.concatenate([st.centres, np.stack([poses[o.object_id][:3, 3] for o in self.objects])])
        else:
            rot, cen = st.rotations, st.centres
        return rot, cen, poses

    def _screen_rects(self, rot: np.ndarray, cen: np.ndarray, r_wc: np.ndarray, origin: np.ndarray):
        """Conservative pixel rectangles and nearest depth of every box (after near clipping)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        corners_w = np.einsum("nij,nkj->nki", rot, self.corner_local) + cen[:, None, :]
        pts = (corners_w - origin) @ r_wc  # camera frame, (N, 8, 3)
        z = pts[..., 2]
        front = z >= NEAR
        a = pts[:, _EDGES[:, 0]]
        b = pts[:, _EDGES[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        cross = (za - NEAR) * (zb - NEAR) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(cross, (NEAR - za) / (zb - za), 0.0)
        clip_pts = a + w[..., None] * (b - a)
        all_pts = np.concatenate([pts, clip_pts], axis=1)
        valid = np.concatenate([front, cross], axis=1)
        zz = np.where(valid, all_pts[..., 2], 1.0)
        u = fx * all_pts[..., 0] / zz + cx
        v = fy * all_pts[..., 1] / zz + cy
        inf = np.inf
        umin = np.where(valid, u, inf).min(1)
        umax = np.where(valid, u, -inf).max(1)
        vmin = np.where(valid, v, inf).min(1)
        vmax = np.where(valid, v, -inf).max(1)
        zmin = np.where(valid, all_pts[..., 2], inf).min(1)
        keep = valid.any(1)
        with np.errstate(invalid="ignore"):
            u0 = np.clip(np.floor(np.where(keep, umin, 0)), 0, self.width).astype(np.int64)
            u1 = np.clip(np.floor(np.where(keep, umax, -1)) + 2, 0, self.width).astype(np.int64)
            v0 = np.clip(np.floor(np.where(keep, vmin, 0)), 0, self.height).astype(np.int64)
            v1 = np.clip(np.floor(np.where(keep, vmax, -1)) + 2, 0, self.height).astype(np.int64)
        keep &= (u1 > u0) & (v1 > v0) & (zmin < self.config.max_depth)
        return keep, u0, u1, v0, v1, zmin

    def cast(self, r_wc: np.ndarray, origin: np.ndarray, rot: np.ndarray, cen: np.ndarray):
        """Nearest hit per pixel.

        Returns ``(depth, hit, local, axis, dirs_world)``: ``depth`` (H*W,) ray parameter
        (= optical-axis depth, ``max_depth`` where none), ``hit`` (H*W,) int: -1 nothing,
        0 ground, ``k + 1`` box ``k``; box-local hit points ``local`` (H*W, 3); the face
        normal's axis and sign as ``axis`` (H*W,) int8 in {0..2} and ``sign`` (H*W,) +-1.
        """
        h, w = self.height, self.width
        dirs_w = self.rays_flat @ r_wc.T
        depth = np.full(h * w, self.config.max_depth, dtype=np.float64)
        hit = np.full(h * w, -1, dtype=np.int32)
        dz = dirs_w[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(dz < -1e-12, -origin[2] / dz, np.inf)
        ground = t_ground < depth
        depth[ground] = t_ground[ground]
        hit[ground] = 0
        local = np.zeros((h * w, 3), dtype=np.float64)
        axis = np.zeros(h * w, dtype=np.int8)
        sign = np.ones(h * w, dtype=np.int8)
        depth2, hit2 = depth.reshape(h, w), hit.reshape(h, w)
        local2, axis2, sign2 = local.reshape(h, w, 3), axis.reshape(h, w), sign.reshape(h, w)

        keep, u0, u1, v0, v1, zmin = self._screen_rects(rot, cen, r_wc, origin)
        order = np.flatnonzero(keep)
        order = order[np.argsort(zmin[order], kind="stable")]
        rays_x, rays_y = self.rays[..., 0], self.rays[..., 1]
        for k in order:
            a0, a1, b0, b1 = v0[k], v1[k], u0[k], u1[k]
            dview = depth2[a0:a1, b0:b1]
            if zmin[k] >= dview.max():
                continue  # entirely behind what is already there
            rx, ry = rays_x[a0:a1, b0:b1], rays_y[a0:a1, b0:b1]
            r_box_t = rot[k].T
            A = r_box_t @ r_wc  # camera -> box rotation
            o_l = r_box_t @ (origin - cen[k])
            half = self.half[k]
            d_l, lo, t_near, t_far = [], [], None, None
            with np.errstate(divide="ignore", invalid="ignore"):
                for i in range(3):
                    d = A[i, 0] * rx + A[i, 1] * ry + A[i, 2]
                    inv = 1.0 / d
                    ta = (-half[i] - o_l[i]) * inv
                    tb = (half[i] - o_l[i]) * inv
                    lo_i = np.minimum(ta, tb)
                    hi_i = np.maximum(ta, tb)
                    t_near = lo_i if t_near is None else np.maximum(t_near, lo_i)
                    t_far = hi_i if t_far is None else np.minimum(t_far, hi_i)
                    d_l.append(d)
                    lo.append(lo_i)
                mask = (t_near <= t_far) & (t_near > NEAR) & (t_near < dview)
            if not mask.any():
                continue
            t_hit = t_near[mask]
            dview[mask] = t_hit
            hit2[a0:a1, b0:b1][mask] = k + 1
            ax = np.where(lo[0][mask] == t_hit, 0, np.where(lo[1][mask] == t_hit, 1, 2)).astype(np.int8)
            d_sel = np.stack([d_l[0][mask], d_l[1][mask], d_l[2][mask]], axis=1)
            local2[a0:a1, b0:b1][mask] = o_l + t_hit[:, None] * d_sel
            axis2[a0:a1, b0:b1][mask] = ax
            sign2[a0:a1, b0:b1][mask] = np.where(np.take_along_axis(d_sel, ax[:, None].astype(np.int64), 1)[:, 0] > 0, -1, 1)
        return depth, hit, local, axis, sign, dirs_w

    # ------------------------------------------------------------------ shading
    def _shade(self, depth, hit, local, axis, sign, dirs_w, origin, rot, s_camera) -> np.ndarray:
        n = hit.shape[0]
        color = np.empty((n, 3), dtype=np.float32)
        light = np.ones(n, dtype=np.float32)
        pa = self.pixel_angle
        dist = depth * self.ray_norm

        sky = hit < 0
        if sky.any():
            color[sky] = textures.sky_color(dirs_w[sky], pa)

        ground = np.flatnonzero(hit == 0)
        if ground.size:
            dg = dirs_w[ground]
            p = origin[:2] + depth[ground, None] * dg[:, :2]
            road = self.scene.road
            c_cam = road.position(np.array(s_camera))
            th = float(road.heading(np.array(s_camera)))
            s_init = s_camera + (p[:, 0] - c_cam[0]) * np.cos(th) + (p[:, 1] - c_cam[1]) * np.sin(th)
            s, d = road.project(p, s_init)
            cos_inc = np.maximum(np.abs(dg[:, 2]) / self.ray_norm[ground], 0.02)
            f_lat = dist[ground] * pa
            f_lon = f_lat / cos_inc
            # Footprint along s and along d: the viewing direction's ground projection vs the road.
            g = dg[:, :2] / np.maximum(np.linalg.norm(dg[:, :2], axis=1, keepdims=True), 1e-12)
            heading = road.heading_fast(s)
            along = np.abs(g[:, 0] * np.cos(heading) + g[:, 1] * np.sin(heading))
            across = np.sqrt(np.maximum(1.0 - along**2, 0.0))
            f_s = np.hypot(f_lon * along, f_lat * across).astype(np.float32)
            f_d = np.hypot(f_lon * across, f_lat * along).astype(np.float32)
            f_iso = np.sqrt(f_lat * f_lon).astype(np.float32)
            color[ground] = textures.ground_color(p[:, 0], p[:, 1], s, d, f_iso, f_s, f_d)
            light[ground] = AMBIENT + DIFFUSE * LIGHT[2]

        boxes = np.flatnonzero(hit > 0)
        if boxes.size:
            k = hit[boxes] - 1
            ax = axis[boxes].astype(np.int64)
            sg = sign[boxes].astype(np.float64)
            normal_w = rot[k, :, ax] * sg[:, None]  # column `ax` of world_from_box
            cos_inc = np.maximum(np.abs(np.sum(normal_w * dirs_w[boxes], axis=1)) / self.ray_norm[boxes], 0.05)
            foot = (dist[boxes] * pa / np.sqrt(cos_inc)).astype(np.float32)
            light[boxes] = AMBIENT + DIFFUSE * np.maximum(normal_w @ LIGHT, 0.0)
            loc = local[boxes]
            half = self.half[k]
            mat = self.material[k]
            for material in (MATERIAL_BUILDING, MATERIAL_POLE, MATERIAL_CAR):
                m = np.flatnonzero(mat == material)
                if m.size == 0:
                    continue
                idx = boxes[m]
                km, axm, lm, fm = k[m], ax[m], loc[m], foot[m]
                if material == MATERIAL_CAR:
                    color[idx] = textures.car_color(lm, axm, half[m], self.color[km], self.seed[km], fm)
                    continue
                u = np.where(axm == 0, lm[:, 1], lm[:, 0])
                z = np.where(axm == 2, lm[:, 1], lm[:, 2] + half[m, 2])
                face_seed = self.seed[km] * 4 + axm
                if material == MATERIAL_BUILDING:
                    color[idx] = textures.facade_color(u, z, self.color[km], face_seed, self.periods[km], axm != 2, fm)
                else:
                    color[idx] = textures.pole_color(u, z, self.color[km], face_seed, fm)
        return color * light[:, None]

    # ------------------------------------------------------------------ frames
    def render(self, index: int) -> SynthFrame:
        """Render frame ``index`` (time ``index / fps``) with its ground truth."""
        cfg = self.config
        t = index / cfg.fps
        cam = self.scene.camera_pose(t)
        r_wc, origin = cam[:3, :3], cam[:3, 3]
        rot, cen, poses = self._box_poses(t)
        depth, hit, local, axis, sign, dirs_w = self.cast(r_wc, origin, rot, cen)
        s_camera = float(self.scene.camera_station(t))
        color = self._shade(depth, hit, local, axis, sign, dirs_w, origin, rot, s_camera)
        if cfg.sensor_noise > 0:
            rng = np.random.default_rng([int(cfg.seed), int(index), 1])
            color = color + rng.normal(0.0, cfg.sensor_noise, color.shape).astype(np.float32)
        image = np.clip(np.rint(color * 255.0), 0, 255).astype(np.uint8)
        h, w = self.height, self.width
        gt_depth = np.where(hit >= 0, depth, 0.0).astype(np.float32)
        return SynthFrame(
            index=index,
            timestamp_ns=cfg.timestamp_ns(index),
            image=image.reshape(h, w, 3),
            depth=gt_depth.reshape(h, w),
            motion=self.motion_lut[hit].reshape(h, w),
            instance=self.instance_lut[hit].reshape(h, w),
            camera_pose=cam,
            intrinsics=self.K.copy(),
            object_poses=poses,
            object_moving={o.object_id: o.moving for o in self.objects},
            object_sizes={o.object_id: o.size.copy() for o in self.objects},
            object_kinds={o.object_id: o.kind for o in self.objects},
        )
