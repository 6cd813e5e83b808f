"""Grasp-success evaluation of reconstructed objects (Choi et al. ICRA'24, Table IV), weight-free.

The paper plans grasps with Contact-GraspNet on the reconstructed object, drops grasps that collide with
the hand mesh, and counts a grasp as successful when it "envelops a part of the ground-truth object mesh
without colliding with it". No network weights exist here, so the planner is a Dex-Net/GPD-style antipodal
sampler on the reconstructed mesh; the success test is geometric (docs/formulas.md#grasp-protocol,
docs/grasp-eval.md):

1. planner (on the prediction): surface point c1 with outward normal n1, closing direction d drawn uniformly
   in the friction cone around −n1 (half-angle atan μ), ray-cast to the exit point c2 (normal n2); keep pairs
   with ‖c2 − c1‖ ≤ max_width whose d is also inside the cone at c2; try ``n_approach`` approach directions
   ⊥ d; drop poses where the opened gripper collides with the reconstruction or with an ``avoid`` mesh
   (the hand); score = friction-cone margin atan μ − max(∠1, ∠2) in radians.
2. success (against GT): the opened gripper does not collide with the GT object (nor the GT hand, if given),
   at least ``min_points`` of ``n_points`` GT surface samples lie in the closing region, and (by default) the
   two closing rays cast from the pad centres towards each other both hit the GT object within the opening.

Collision = FCL surface intersection (trimesh CollisionManager) OR a gripper box inside a watertight mesh OR
sampled mesh surface points inside a gripper box: FCL mesh-mesh tests alone miss full containment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import trimesh
from trimesh.collision import CollisionManager

from handcli.eval import gripper as gr
from handcli.eval.geometry import is_empty_mesh

SCHEMA = "handcli.grasps/1"
RAY_EPS = 1e-6  # m; rays start this far inside the surface so they do not hit their own triangle


@dataclass
class Grasp:
    """One parallel-jaw grasp.

    pose: (4, 4) gripper-to-world transform (Contact-GraspNet frame, gripper.py).
    width: distance between the two planned contacts, metres.
    score: friction-cone margin in radians (larger = more robust to normal / direction errors).
    contacts: (2, 3) planned contact points on the mesh the grasp was planned on.
    """

    pose: np.ndarray
    width: float
    score: float
    contacts: np.ndarray = field(default_factory=lambda: np.full((2, 3), np.nan))

    def to_dict(self) -> dict:
        return {
            "pose": np.asarray(self.pose, dtype=float).tolist(),
            "width": float(self.width),
            "score": float(self.score),
            "contacts": (
                np.asarray(self.contacts, dtype=float).tolist() if np.isfinite(self.contacts).all() else None
            ),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Grasp:
        pose = np.asarray(d["pose"], dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise ValueError("grasp pose must be a finite 4x4 matrix")
        contacts = d.get("contacts")
        contacts = np.full((2, 3), np.nan) if contacts is None else np.asarray(contacts, dtype=np.float64)
        return cls(pose=pose, width=float(d["width"]), score=float(d.get("score", 0.0)), contacts=contacts)


# ---------------------------------------------------------------------------------------------- helpers


def _outward_sign(mesh: trimesh.Trimesh) -> float:
    """+1 when face normals point outwards, −1 for a closed mesh wound inside out (negative volume)."""
    if mesh.is_watertight and mesh.is_winding_consistent and mesh.volume < 0:
        return -1.0
    return 1.0


def _perpendicular_basis(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) unit vectors -> two (N, 3) unit vectors u, w with (u, w, v) orthonormal."""
    helper = np.where(np.abs(v[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    u = np.cross(v, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u, np.cross(v, u)


def sample_cone(axis: np.ndarray, half_angle: float, rng: np.random.Generator) -> np.ndarray:
    """Directions uniform on the spherical cap of ``half_angle`` radians around each (N, 3) unit axis."""
    n = len(axis)
    cos_t = rng.uniform(np.cos(half_angle), 1.0, size=n)
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    phi = rng.uniform(0.0, 2 * np.pi, size=n)
    u, w = _perpendicular_basis(axis)
    return cos_t[:, None] * axis + sin_t[:, None] * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * w)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(np.sum(u * v, axis=-1), -1.0, 1.0))


def count_in_boxes(
    points: np.ndarray, poses: np.ndarray, boxes: Sequence[tuple[np.ndarray, np.ndarray]], chunk: int = 32
) -> np.ndarray:
    """Count world ``points`` (P, 3) inside gripper-frame boxes [(lo, hi), ...] at poses (K, 4, 4) -> (K, B)."""
    out = np.zeros((len(poses), len(boxes)), dtype=np.int64)
    for s in range(0, len(poses), chunk):  # chunks over poses bound the (chunk, P, 3) temporary
        T = poses[s : s + chunk]
        local = (points[None] - T[:, None, :3, 3]) @ T[:, :3, :3]  # (k, P, 3) gripper-frame coordinates
        for j, (lo, hi) in enumerate(boxes):
            out[s : s + chunk, j] = gr.points_in_box(local, lo, hi).sum(axis=1)
    return out


def clean_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Merged vertices and no zero-area faces, so marching-cubes output reads as watertight (a copy)."""
    m = mesh.copy()
    m.merge_vertices()
    m.update_faces(m.nondegenerate_faces())
    m.remove_unreferenced_vertices()
    return m


class MeshCollider:
    """Collision tests of the opened gripper at many poses against a fixed set of meshes."""

    def __init__(self, meshes: Iterable[trimesh.Trimesh | None], n_points: int = 2000, seed: int = 0):
        self.meshes = [clean_mesh(m) for m in meshes if not is_empty_mesh(m)]
        self.manager = CollisionManager()
        for i, m in enumerate(self.meshes):
            self.manager.add_object(f"mesh{i}", m)
        self.closed = [m for m in self.meshes if m.is_watertight]
        if self.meshes:
            both = trimesh.util.concatenate(self.meshes) if len(self.meshes) > 1 else self.meshes[0]
            pts, _ = trimesh.sample.sample_surface(both, n_points, seed=seed)
            self.points = np.asarray(pts)
        else:
            self.points = np.zeros((0, 3))

    def collides(self, poses: np.ndarray, width: float = gr.MAX_OPENING) -> np.ndarray:
        """(K, 4, 4) gripper poses -> (K,) bool: gripper opened to ``width`` touches any mesh."""
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
        out = np.zeros(len(poses), dtype=bool)
        if not self.meshes or len(poses) == 0:
            return out
        gripper = CollisionManager()
        gripper.add_object("gripper", gr.gripper_mesh(width))
        for k, T in enumerate(poses):  # FCL checks one pose at a time
            gripper.set_transform("gripper", T)
            out[k] = self.manager.in_collision_other(gripper)
        boxes = list(gr.gripper_boxes(width).values())
        # the surfaces do not cross at the remaining poses; test containment either way
        free = np.flatnonzero(~out)
        out[free] = count_in_boxes(self.points, poses[free], boxes).any(axis=1)  # mesh inside a gripper box
        free = np.flatnonzero(~out)
        if self.closed and len(free):
            # a gripper box inside a closed mesh without crossing it has its centre inside
            centres = np.array([(lo + hi) / 2 for lo, hi in boxes])  # (B, 3)
            world = (centres @ poses[free, :3, :3].transpose(0, 2, 1) + poses[free, None, :3, 3]).reshape(
                -1, 3
            )
            for m in self.closed:
                out[free] |= m.contains(world).reshape(len(free), len(boxes)).any(axis=1)
        return out


# --------------------------------------------------------------------------------------------- planner


def propose_antipodal_grasps(
    mesh: trimesh.Trimesh | None,
    n_samples: int = 1000,
    friction_coef: float = 0.5,
    max_width: float = gr.MAX_OPENING,
    n_approach: int = 8,
    seed: int = 0,
    avoid: Sequence[trimesh.Trimesh | None] = (),
    max_checked: int = 200,
    opening: float = gr.MAX_OPENING,
) -> list[Grasp]:
    """Antipodal grasps on ``mesh`` that the opened gripper can reach without collisions, best first.

    Args:
        mesh: the (reconstructed) object mesh, metres; None or empty gives no grasps.
        n_samples: surface points c1 sampled (one closing direction each; all rays cast in one call).
        friction_coef: μ; the friction cone half-angle is atan μ.
        max_width: largest contact distance ‖c2 − c1‖ accepted, metres.
        n_approach: approach directions tried per contact pair, evenly spaced around the closing axis.
        seed: seeds surface sampling, cone directions and approach offsets.
        avoid: further meshes the gripper must not touch (the hand mesh).
        max_checked: only the best ``max_checked`` candidates by score are collision-checked.
        opening: gripper opening used for the collision checks (default: fully open, 8 cm).
    Returns grasps sorted by decreasing score (at most ``max_checked``).
    """
    if n_samples < 1 or n_approach < 1 or friction_coef <= 0 or max_width <= 0:
        raise ValueError("n_samples, n_approach, friction_coef and max_width must be positive")
    if is_empty_mesh(mesh):
        return []
    mesh = clean_mesh(mesh)
    rng = np.random.default_rng(seed)
    alpha = float(np.arctan(friction_coef))
    sign = _outward_sign(mesh)
    c1, face1 = trimesh.sample.sample_surface(mesh, int(n_samples), seed=rng)
    c1 = np.asarray(c1)
    n1 = sign * mesh.face_normals[face1]
    d = sample_cone(-n1, alpha, rng)

    loc, ray_idx, tri = mesh.ray.intersects_location(c1 + RAY_EPS * d, d, multiple_hits=False)
    if len(ray_idx) == 0:
        return []
    d, c1, n1 = d[ray_idx], c1[ray_idx], n1[ray_idx]
    c2, n2 = np.asarray(loc), sign * mesh.face_normals[tri]
    width = np.linalg.norm(c2 - c1, axis=1)
    ang1, ang2 = _angle(d, -n1), _angle(d, n2)  # at c2 the finger pushes along −d, into −n2's cone
    keep = (width <= max_width) & (width > 1e-4) & (ang2 <= alpha)
    if not keep.any():
        return []
    d, c1, c2, width = d[keep], c1[keep], c2[keep], width[keep]
    margin = alpha - np.maximum(ang1[keep], ang2[keep])

    # approach directions around each closing axis, with a random phase per pair
    u, w = _perpendicular_basis(d)
    phi = rng.uniform(0, 2 * np.pi, size=(len(d), 1)) + 2 * np.pi * np.arange(n_approach) / n_approach
    approach = np.cos(phi)[..., None] * u[:, None] + np.sin(phi)[..., None] * w[:, None]  # (P, A, 3)
    A = n_approach
    centres = np.repeat((c1 + c2) / 2, A, axis=0)
    poses = gr.grasp_poses(centres, np.repeat(d, A, axis=0), approach.reshape(-1, 3))
    score = np.repeat(margin, A)
    contacts = np.repeat(np.stack([c1, c2], axis=1), A, axis=0)
    widths = np.repeat(width, A)

    order = np.argsort(-score, kind="stable")[:max_checked]
    collider = MeshCollider([mesh, *avoid], seed=seed)
    ok = ~collider.collides(poses[order], opening)
    return [
        Grasp(pose=poses[k], width=float(widths[k]), score=float(score[k]), contacts=contacts[k])
        for k in order[ok]
    ]


# ---------------------------------------------------------------------------------------------- success


class GraspEvaluator:
    """Success test of grasps against a GT object (and GT hand); GT samples and BVHs are built once.

    Args:
        gt_object: GT object mesh, metres, same frame as the grasps.
        gt_hand: GT hand mesh or None; touching it counts as a failure (a hand-over must not hit the hand).
        n_points: GT surface samples for the envelopment count.
        min_points: samples required inside the closing region (10 of 10000 = 0.1 % by default).
        opening: gripper opening for collision and envelopment (default: fully open, as Contact-GraspNet).
        check_rays: also require both closing rays from the pad centres to hit the GT object within the opening.
        friction_coef: μ for the reported (not required) force-closure test on the GT contacts.
    """

    def __init__(
        self,
        gt_object: trimesh.Trimesh,
        gt_hand: trimesh.Trimesh | None = None,
        n_points: int = 10000,
        min_points: int = 10,
        opening: float = gr.MAX_OPENING,
        check_rays: bool = True,
        friction_coef: float = 0.5,
        seed: int = 0,
    ):
        if is_empty_mesh(gt_object):
            raise ValueError("the GT object mesh is empty")
        self.gt_object = clean_mesh(gt_object)
        self.opening = float(opening)
        self.min_points = int(min_points)
        self.check_rays = check_rays
        self.alpha = float(np.arctan(friction_coef))
        self.sign = _outward_sign(self.gt_object)
        pts, _ = trimesh.sample.sample_surface(self.gt_object, int(n_points), seed=seed)
        self.points = np.asarray(pts)
        self.object_collider = MeshCollider([self.gt_object], seed=seed)
        self.hand_collider = MeshCollider([gt_hand], seed=seed) if not is_empty_mesh(gt_hand) else None

    def evaluate(self, grasps: Sequence[Grasp]) -> list[dict]:
        """Per grasp: success, collides, collides_hand, enveloped_points, rays_hit, force_closure, ..."""
        if len(grasps) == 0:
            return []
        poses = np.stack([np.asarray(g.pose, dtype=np.float64) for g in grasps])  # (K, 4, 4)
        K = len(poses)
        collides = self.object_collider.collides(poses, self.opening)
        collides_hand = (
            self.hand_collider.collides(poses, self.opening) if self.hand_collider else np.zeros(K, bool)
        )
        enveloped = count_in_boxes(self.points, poses, [gr.closing_region_bounds(self.opening)])[:, 0]

        # closing rays: from the left pad (+x) along −x and from the right pad (−x) along +x
        pads = gr.pad_centres(self.opening)  # (2, 3)
        origins = np.einsum("kij,bj->kbi", poses[:, :3, :3], pads) + poses[:, None, :3, 3]  # (K, 2, 3)
        b = poses[:, :3, 0]
        dirs = np.stack([-b, b], axis=1)  # (K, 2, 3)
        loc, ray_idx, tri = self.gt_object.ray.intersects_location(
            origins.reshape(-1, 3), dirs.reshape(-1, 3), multiple_hits=False
        )
        dist = np.full(2 * K, np.inf)
        normal = np.zeros((2 * K, 3))
        if len(ray_idx):
            dist[ray_idx] = np.linalg.norm(np.asarray(loc) - origins.reshape(-1, 3)[ray_idx], axis=1)
            normal[ray_idx] = self.sign * self.gt_object.face_normals[tri]
        hit = (dist <= self.opening).reshape(K, 2)
        # force closure at the GT contacts: each finger's push (its ray direction) inside −n's friction cone
        fc_ang = _angle(dirs.reshape(-1, 3), -normal).reshape(K, 2)
        force_closure = hit.all(axis=1) & (fc_ang <= self.alpha).all(axis=1)

        success = ~collides & ~collides_hand & (enveloped >= self.min_points)
        if self.check_rays:
            success &= hit.all(axis=1)
        return [
            {
                "success": bool(success[k]),
                "collides": bool(collides[k]),
                "collides_hand": bool(collides_hand[k]),
                "enveloped_points": int(enveloped[k]),
                "rays_hit": [bool(hit[k, 0]), bool(hit[k, 1])],
                "force_closure": bool(force_closure[k]),
            }
            for k in range(K)
        ]


def evaluate_grasp(grasp: Grasp, gt_object: trimesh.Trimesh, **options) -> dict:
    """Success test of one grasp; ``options``: those of :class:`GraspEvaluator`. Returns its result dict."""
    return GraspEvaluator(gt_object, **options).evaluate([grasp])[0]


def grasp_success_ratio(
    pred_object: trimesh.Trimesh | None,
    pred_hand: trimesh.Trimesh | None,
    gt_object: trimesh.Trimesh,
    gt_hand: trimesh.Trimesh | None = None,
    top_k: int = 50,
    seed: int = 0,
    n_samples: int = 1000,
    n_approach: int = 8,
    friction_coef: float = 0.5,
    max_checked: int = 200,
    n_points: int = 10000,
    min_points: int = 10,
    check_rays: bool = True,
    on_stage: Callable[[], None] | None = None,
) -> dict:
    """Plan on the prediction (avoiding ``pred_hand``), evaluate the ``top_k`` best against GT.

    Passing the GT mesh as ``pred_object`` gives the "GT mesh" row of Choi's Table IV; passing the GT MANO
    mesh as ``pred_hand`` reproduces the paper's hand filter (the hand mesh is an input there).
    Returns num_proposals, num_evaluated, num_success, success_ratio (0.0 when nothing was evaluated: a
    reconstruction without a feasible grasp scores zero) and per-grasp dicts (pose, width, score + result).
    ``on_stage()`` is called when planning starts and when evaluation starts (a progress bar's hook).
    """
    if on_stage is not None:
        on_stage()
    proposals = propose_antipodal_grasps(
        pred_object,
        n_samples=n_samples,
        friction_coef=friction_coef,
        n_approach=n_approach,
        seed=seed,
        avoid=[pred_hand] if pred_hand is not None else [],
        max_checked=max_checked,
    )
    chosen = proposals[:top_k]
    if on_stage is not None:
        on_stage()
    results = GraspEvaluator(
        gt_object,
        gt_hand,
        n_points,
        min_points,
        check_rays=check_rays,
        friction_coef=friction_coef,
        seed=seed,
    ).evaluate(chosen)
    n_success = sum(r["success"] for r in results)
    return {
        "num_proposals": len(proposals),
        "num_evaluated": len(chosen),
        "num_success": int(n_success),
        "success_ratio": float(n_success / len(chosen)) if chosen else 0.0,
        "grasps": [{**g.to_dict(), **r} for g, r in zip(chosen, results)],
    }


# ---------------------------------------------------------------------------------------------- outputs


def grasps_document(grasps: Sequence[Grasp | dict], meta: dict | None = None) -> dict:
    """JSON-ready document: schema, gripper description, grasps (dicts), plus ``meta`` (config, inputs)."""
    items = [g.to_dict() if isinstance(g, Grasp) else g for g in grasps]
    return {
        "schema": SCHEMA,
        "gripper": {
            "model": "franka_panda_boxes",
            "frame": "contact_graspnet: approach +z, closing x, pad centres (±q, 0, 0.1034)",
            "max_opening": gr.MAX_OPENING,
            "pad_depth": gr.PAD_DEPTH,
        },
        **(meta or {}),
        "grasps": items,
    }


def write_grasps(
    grasps: Sequence[Grasp | dict],
    path: str | Path,
    mesh: trimesh.Trimesh | None = None,
    scene_path: str | Path | None = None,
    n_show: int = 10,
    meta: dict | None = None,
    force: bool = False,
) -> list[Path]:
    """Write grasps as JSON (atomically) and optionally a viewable scene (.glb/.gltf/.obj, or .ply merged).

    The scene holds ``mesh`` (grey) and the best ``n_show`` grippers (green when a result says success,
    red when it says failure, blue when unevaluated). Returns the written paths.
    """
    from handcli.outputs import atomic_path

    written = []
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(grasps_document(grasps, meta), indent=1))
    written.append(Path(path))
    if scene_path is not None:
        scene_path = Path(scene_path)
        scene = grasp_scene(mesh, grasps[:n_show])
        file_type = scene_path.suffix.lstrip(".").lower()
        with atomic_path(scene_path, force=force) as tmp:
            if file_type == "ply":
                merged = trimesh.util.concatenate(list(scene.geometry.values()))  # already placed
                tmp.write_bytes(merged.export(file_type="ply"))
            else:
                data = scene.export(file_type=file_type)
                tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        written.append(scene_path)
    return written


def read_grasps(path: str | Path) -> list[Grasp]:
    """Grasps from a file written by :func:`write_grasps`."""
    from handcli.errors import InputError

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read grasp file: {exc}", path=path) from exc
    if doc.get("schema") != SCHEMA:
        raise InputError(f"expected schema {SCHEMA}", path=path, field="schema")
    try:
        return [Grasp.from_dict(g) for g in doc["grasps"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed grasp: {exc}", path=path, field="grasps") from exc


def _grasp_color(g: Grasp | dict) -> list[int]:
    ok = g.get("success") if isinstance(g, dict) else None
    return [40, 180, 60, 255] if ok is True else [200, 40, 40, 255] if ok is False else [40, 90, 220, 255]


def _pose_of(g: Grasp | dict) -> np.ndarray:
    return np.asarray(g.pose if isinstance(g, Grasp) else g["pose"], dtype=np.float64)


def grasp_scene(mesh: trimesh.Trimesh | None, grasps: Sequence[Grasp | dict]) -> trimesh.Scene:
    """A trimesh Scene of ``mesh`` and the gripper of each grasp (fully opened), in world coordinates."""
    scene = trimesh.Scene()
    if not is_empty_mesh(mesh):
        m = mesh.copy()
        m.visual.face_colors = [170, 170, 170, 255]
        scene.add_geometry(m, geom_name="object")
    for i, g in enumerate(grasps):
        gm = gr.gripper_mesh()
        gm.apply_transform(_pose_of(g))
        gm.visual.face_colors = _grasp_color(g)
        scene.add_geometry(gm, geom_name=f"grasp{i:03d}")
    return scene


def _box_edges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(12, 2, 3) edges of an axis-aligned box."""
    from handcli.camera import box_corners

    c = box_corners(lo, hi)
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
    return c[np.array(pairs)]


def render_grasps_png(
    mesh: trimesh.Trimesh | None,
    grasps: Sequence[Grasp | dict],
    path: str | Path,
    n_show: int = 5,
    size: int = 400,
    n_points: int = 40000,
    force: bool = False,
) -> Path:
    """Orthographic PNG of ``mesh`` with the best ``n_show`` grippers, two views side by side.

    Left: seen along +z (the input camera's axis, OpenCV frame); right: seen along +x. The mesh is drawn as
    z-buffered, Lambert-shaded surface samples; grippers as box wireframes (colours as in :func:`grasp_scene`).
    """
    from handcli.outputs import atomic_path

    grasps = list(grasps)[:n_show]
    if not is_empty_mesh(mesh):
        pts, face = trimesh.sample.sample_surface(mesh, n_points, seed=0)
        pts, nrm = np.asarray(pts), mesh.face_normals[face] * _outward_sign(mesh)
    else:
        pts, nrm = np.zeros((0, 3)), np.zeros((0, 3))
    edges = [
        (
            np.einsum("ij,epj->epi", _pose_of(g)[:3, :3], _box_edges(lo, hi)) + _pose_of(g)[:3, 3],
            _grasp_color(g),
        )
        for g in grasps
        for lo, hi in gr.gripper_boxes().values()
    ]
    every = np.concatenate([pts] + [e.reshape(-1, 3) for e, _ in edges], axis=0)
    if len(every) == 0:
        every = np.zeros((1, 3))
    # view rotations (rows = screen x, screen y, depth); both keep OpenCV's y-down
    views = [np.eye(3), np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])]
    panels = []
    for R in views:
        cam = every @ R.T
        lo, hi = cam[:, :2].min(0), cam[:, :2].max(0)
        scale = 0.9 * size / max(float((hi - lo).max()), 1e-6)
        offset = size / 2 - scale * (lo + hi) / 2

        def to_px(p: np.ndarray) -> np.ndarray:
            return np.round((p @ R.T)[..., :2] * scale + offset).astype(np.int32)

        img = np.full((size, size, 3), 255, np.uint8)
        if len(pts):
            px = to_px(pts)
            depth = (pts @ R.T)[:, 2]
            facing = -(nrm @ R.T)[:, 2]
            shade = np.clip(facing, 0.0, 1.0) * 0.75 + 0.25  # light from the viewer
            # back faces dropped: they would show through the gaps between front samples
            inside = np.all((px >= 0) & (px < size), axis=1) & (facing > -0.05)
            px, depth, shade = px[inside], depth[inside], shade[inside]
            order = np.argsort(-depth)  # far first, so near samples are written last and win
            for dy in (0, 1):  # 2x2 splats fill the gaps between samples
                for dx in (0, 1):
                    q = np.clip(px[order] + [dx, dy], 0, size - 1)
                    img[q[:, 1], q[:, 0]] = (shade[order, None] * [200, 200, 200]).astype(np.uint8)
        for e, color in edges:
            lines = to_px(e)  # (12, 2, 2)
            cv2.polylines(img, list(lines), False, tuple(int(c) for c in color[2::-1]), 1, cv2.LINE_AA)
        panels.append(img)
    ok, data = cv2.imencode(".png", np.concatenate(panels, axis=1))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data.tobytes())
    return Path(path)
