"""Vectorised numpy ray caster for :class:`~mds_core.tools.synth.scene.Scene`.

Rays go through pixel centres (integer ``u, v``): ``r = K^-1 [u, v, 1]``, kept with
``z = 1`` so the ray parameter of a hit *is* its depth along the optical axis. The nearest
hit among the ground plane ``Z = 0`` and all oriented boxes (slab test in the box frame)
wins; boxes are culled against the view frustum (with near-plane clipping) and restricted
to their screen rectangle. Boxes with large rectangles are cast one at a time, front to
back, with an early depth test; all small ones together as (pixel, box) pairs resolved
with a z-buffer minimum.
"""

from __future__ import annotations

import numpy as np

from mds_core.tools.synth import textures
from mds_core.tools.synth.frame import MOTION_MOVING, MOTION_PARKED, MOTION_STATIC, SynthFrame
from mds_core.tools.synth.scene import (
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
        self.rays_soa = np.ascontiguousarray(self.rays.reshape(-1, 3).T)  # (3, H*W)
        self.rays_x, self.rays_y = self.rays[..., 0].copy(), self.rays[..., 1].copy()
        self.rays_x_flat, self.rays_y_flat = self.rays_x.reshape(-1), self.rays_y.reshape(-1)
        self.ray_norm32 = np.linalg.norm(self.rays_soa, axis=0).astype(np.float32)
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
        self.object_id = np.concatenate([np.zeros(self.n_static, dtype=np.int32),
                                         np.array([o.object_id for o in self.objects], dtype=np.int32)])
        motion = [MOTION_MOVING if o.moving else MOTION_PARKED for o in self.objects]
        # Lookup tables indexed by the hit code (-1 sky -> last entry, 0 ground, k + 1 box k).
        self.motion_lut = np.concatenate([[MOTION_STATIC], np.full(self.n_static, MOTION_STATIC), motion,
                                          [MOTION_STATIC]]).astype(np.uint8)
        self.instance_lut = np.concatenate([[0], self.object_id, [0]]).astype(np.int32)
        self.corner_local = _CORNER_SIGNS[None] * self.half[:, None, :]  # (N, 8, 3)

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

    def _box_tables(self, rot: np.ndarray, cen: np.ndarray, r_wc: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Per box: camera->box rotation ``A`` (9), slab bounds relative to the camera (6).

        For a camera ray ``r`` (z = 1) the box-frame direction is ``A r`` and the ray enters
        slab ``i`` between ``t = lo_i / (A r)_i`` and ``hi_i / (A r)_i``.
        """
        a = np.einsum("nji,jk->nik", rot, r_wc)  # R_box^T R_wc
        o_l = np.einsum("nji,nj->ni", rot, origin - cen)  # R_box^T (o - c)
        return np.concatenate([a.reshape(-1, 9), -self.half - o_l, self.half - o_l, o_l], axis=1)

    def cast(self, r_wc: np.ndarray, origin: np.ndarray, rot: np.ndarray, cen: np.ndarray) -> dict[str, np.ndarray]:
        """Nearest hit per pixel (flattened, row-major).

        Returns a dict with ``depth`` (ray parameter = optical-axis depth, ``max_depth``
        where nothing is hit), ``hit`` (int32: -1 nothing, 0 ground, ``k + 1`` box ``k``),
        ``local`` (3, H*W) box-frame hit points, ``axis`` (int8, the hit face's normal axis),
        ``sign`` (int8, +-1, its direction) and ``dirs`` (3, H*W) world ray directions.
        """
        h, w = self.height, self.width
        n = h * w
        dirs = r_wc @ self.rays_soa
        depth = np.full(n, self.config.max_depth, dtype=np.float64)
        hit = np.full(n, -1, dtype=np.int32)
        dz = dirs[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(dz < -1e-12, -origin[2] / dz, np.inf)
        ground = t_ground < depth
        depth[ground] = t_ground[ground]
        hit[ground] = 0
        local = np.zeros((3, n), dtype=np.float64)
        axis = np.zeros(n, dtype=np.int8)
        sign = np.ones(n, dtype=np.int8)
        out = {"depth": depth, "hit": hit, "local": local, "axis": axis, "sign": sign, "dirs": dirs}
        if len(rot) == 0:
            return out

        keep, u0, u1, v0, v1, zmin = self._screen_rects(rot, cen, r_wc, origin)
        boxes = np.flatnonzero(keep)
        if boxes.size == 0:
            return out
        table = self._box_tables(rot, cen, r_wc, origin)
        area = (u1 - u0) * (v1 - v0)
        big = boxes[area[boxes] > max(64, n // 24)]
        big = big[np.argsort(zmin[big], kind="stable")]
        small = boxes[area[boxes] <= max(64, n // 24)]

        # Large screen rectangles (near boxes): one at a time, front to back, in 2D views.
        depth2, hit2 = depth.reshape(h, w), hit.reshape(h, w)
        local2, axis2, sign2 = local.reshape(3, h, w), axis.reshape(h, w), sign.reshape(h, w)
        for k in big:
            a0, a1, b0, b1 = v0[k], v1[k], u0[k], u1[k]
            dview = depth2[a0:a1, b0:b1]
            if zmin[k] >= dview.max():
                continue  # entirely behind what is already there
            res = self._slab(table[k], self.rays_x[a0:a1, b0:b1], self.rays_y[a0:a1, b0:b1], dview)
            if res is None:
                continue
            mask, t_hit, ax, sg, loc = res
            dview[mask] = t_hit
            hit2[a0:a1, b0:b1][mask] = k + 1
            local2[:, a0:a1, b0:b1][:, mask] = loc
            axis2[a0:a1, b0:b1][mask] = ax
            sign2[a0:a1, b0:b1][mask] = sg

        # Small rectangles: all (pixel, box) pairs at once, resolved with a z-buffer minimum.
        if small.size:
            ar = area[small]
            pair_box = np.repeat(small, ar)
            offset = np.arange(pair_box.size) - np.repeat(np.cumsum(ar) - ar, ar)
            width = (u1 - u0)[pair_box]
            pix = (v0[pair_box] + offset // width) * w + u0[pair_box] + offset % width
            front = depth[pix] > zmin[pair_box]  # early depth test against what is drawn
            pix, pair_box = pix[front], pair_box[front]
            if pix.size:
                params = table[pair_box]
                res = self._slab(params.T, self.rays_x_flat[pix], self.rays_y_flat[pix], depth[pix])
                if res is not None:
                    mask, t_hit, ax, sg, loc = res
                    pix, pair_box = pix[mask], pair_box[mask]
                    np.minimum.at(depth, pix, t_hit)
                    win = t_hit == depth[pix]
                    pw = pix[win]
                    hit[pw] = pair_box[win] + 1
                    local[:, pw] = loc[:, win]
                    axis[pw] = ax[win]
                    sign[pw] = sg[win]
        return out

    @staticmethod
    def _slab(params: np.ndarray, rx: np.ndarray, ry: np.ndarray, current: np.ndarray):
        """Ray-box slab test for camera rays ``(rx, ry, 1)`` against one box or per-ray boxes.

        ``params`` is a row of :meth:`_box_tables` (or its transpose for per-ray boxes).
        Returns ``(mask, t, axis, sign, local)`` for rays whose entry point lies in front of
        the camera and nearer than ``current``, or ``None`` when there is none.
        """
        t_near = t_far = None
        dirs, lows = [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(3):
                d = params[3 * i] * rx + params[3 * i + 1] * ry + params[3 * i + 2]
                inv = 1.0 / d
                ta = params[9 + i] * inv
                tb = params[12 + i] * inv
                lo = np.minimum(ta, tb)
                hi = np.maximum(ta, tb)
                t_near = lo if t_near is None else np.maximum(t_near, lo)
                t_far = hi if t_far is None else np.minimum(t_far, hi)
                dirs.append(d)
                lows.append(lo)
            mask = (t_near <= t_far) & (t_near > NEAR) & (t_near < current)
        if not mask.any():
            return None
        t_hit = t_near[mask]
        ax = np.where(lows[0][mask] == t_hit, 0, np.where(lows[1][mask] == t_hit, 1, 2)).astype(np.int8)
        d_sel = [d[mask] for d in dirs]
        o_l = [params[15 + i] if np.ndim(params[15 + i]) == 0 else params[15 + i][mask] for i in range(3)]
        loc = np.stack([o_l[i] + t_hit * d_sel[i] for i in range(3)])
        d_ax = np.where(ax == 0, d_sel[0], np.where(ax == 1, d_sel[1], d_sel[2]))
        sg = np.where(d_ax > 0, -1, 1).astype(np.int8)
        return mask, t_hit, ax, sg, loc

    # ------------------------------------------------------------------ shading
    def _shade(self, geo: dict[str, np.ndarray], origin: np.ndarray, rot: np.ndarray, s_camera: float) -> np.ndarray:
        depth, hit, dirs = geo["depth"], geo["hit"], geo["dirs"]
        n = hit.shape[0]
        color = np.empty((n, 3), dtype=np.float32)
        light = np.ones(n, dtype=np.float32)
        pa = np.float32(self.pixel_angle)

        sky = np.flatnonzero(hit < 0)
        if sky.size:
            color[sky] = textures.sky_color(np.take(dirs, sky, axis=1).T, float(pa))

        ground = np.flatnonzero(hit == 0)
        if ground.size:
            dx, dy, dz = np.take(dirs[0], ground), np.take(dirs[1], ground), np.take(dirs[2], ground)
            t = depth[ground]
            px = origin[0] + t * dx
            py = origin[1] + t * dy
            road = self.scene.road
            c_cam = road.position(np.array(s_camera))
            th = float(road.heading(np.array(s_camera)))
            s_init = s_camera + (px - c_cam[0]) * np.cos(th) + (py - c_cam[1]) * np.sin(th)
            s, d, ct, st = road.project_with_tangent(np.stack([px, py], axis=1), s_init)
            rn = self.ray_norm32[ground]
            t32 = t.astype(np.float32)
            cos_inc = np.maximum(np.abs(dz.astype(np.float32)) / rn, np.float32(0.02))
            f_lat = t32 * rn * pa
            f_lon = f_lat / cos_inc
            # Footprint along s and along d: the view direction's ground projection vs the road.
            gx, gy = dx.astype(np.float32), dy.astype(np.float32)
            gnorm = np.maximum(np.sqrt(gx * gx + gy * gy), np.float32(1e-12))
            along = np.minimum(np.abs(gx * ct.astype(np.float32) + gy * st.astype(np.float32)) / gnorm, 1.0)
            across = np.sqrt(1.0 - along * along)
            f_s = np.sqrt((f_lon * along) ** 2 + (f_lat * across) ** 2)
            f_d = np.sqrt((f_lon * across) ** 2 + (f_lat * along) ** 2)
            f_iso = np.sqrt(f_lat * f_lon)
            color[ground] = textures.ground_color(px, py, s, d, f_iso, f_s, f_d)
            light[ground] = AMBIENT + DIFFUSE * LIGHT[2]

        boxes = np.flatnonzero(hit > 0)
        if boxes.size:
            k = hit[boxes] - 1
            ax = geo["axis"][boxes]
            sg = geo["sign"][boxes]
            face = k * 6 + 2 * ax + (sg > 0)  # faces ordered -x, +x, -y, +y, -z, +z per box
            normals = np.concatenate([rot, -rot], axis=2)[:, :, [3, 0, 4, 1, 5, 2]]  # (N, 3, 6)
            normals = normals.transpose(0, 2, 1).reshape(-1, 3)  # (N * 6, 3)
            face_light = (AMBIENT + DIFFUSE * np.maximum(normals @ LIGHT, 0.0)).astype(np.float32)
            light[boxes] = face_light[face]
            cos_inc = np.abs(
                np.take(normals[:, 0], face) * np.take(dirs[0], boxes)
                + np.take(normals[:, 1], face) * np.take(dirs[1], boxes)
                + np.take(normals[:, 2], face) * np.take(dirs[2], boxes)
            )
            rn = self.ray_norm32[boxes]
            cos_inc = np.maximum(cos_inc.astype(np.float32) / rn, np.float32(0.05))
            foot = depth[boxes].astype(np.float32) * rn * pa / np.sqrt(cos_inc)
            local = geo["local"]
            mat = self.material[k]
            for material in (MATERIAL_BUILDING, MATERIAL_POLE, MATERIAL_CAR):
                m = np.flatnonzero(mat == material)
                if m.size == 0:
                    continue
                idx = boxes[m]
                km, axm, fm = k[m], ax[m], foot[m]
                lx, ly, lz = np.take(local[0], idx), np.take(local[1], idx), np.take(local[2], idx)
                half = np.take(self.half, km, axis=0)
                base = np.take(self.color, km, axis=0)
                seed = np.take(self.seed, km)
                if material == MATERIAL_CAR:
                    local_m = np.stack([lx, ly, lz], axis=1)
                    color[idx] = textures.car_color(local_m, axm, sg[m], half, base, seed, fm)
                    continue
                u = np.where(axm == 0, ly, lx)
                z = np.where(axm == 2, ly, lz + half[:, 2])
                face_seed = seed * 4 + axm
                if material == MATERIAL_BUILDING:
                    periods = np.take(self.periods, km, axis=0)
                    color[idx] = textures.facade_color(u, z, base, face_seed, periods, axm != 2, fm)
                else:
                    color[idx] = textures.pole_color(u, z, base, face_seed, fm)
        color *= light[:, None]
        return color

    # ------------------------------------------------------------------ frames
    def render(self, index: int) -> SynthFrame:
        """Render frame ``index`` (time ``index / fps``) with its ground truth."""
        cfg = self.config
        t = index / cfg.fps
        cam = self.scene.camera_pose(t)
        r_wc, origin = cam[:3, :3], cam[:3, 3]
        rot, cen, poses = self._box_poses(t)
        geo = self.cast(r_wc, origin, rot, cen)
        depth, hit = geo["depth"], geo["hit"]
        s_camera = float(self.scene.camera_station(t))
        color = self._shade(geo, origin, rot, s_camera)
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
