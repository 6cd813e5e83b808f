"""Linear blend skinning in both directions, and nearest-face skinning weights for any 3D point.

Forward LBS (MANO, via smplx's kinematics): a rest-pose (shaped, unposed) point v with skinning
weights w moves to ``x = (sum_j w_j A_j) v + trans``, with A_j the (4, 4) transform of joint j.
Inverse LBS (HandNeRF, Guo eq. 4) takes a posed point x, looks up weights at the *nearest face of
the posed mesh* (barycentric blend of that face's vertex weights), and undoes the blended transform.
Mapping to a canonical pose instead of the rest pose applies the canonical pose's blend afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from smplx.lbs import batch_rigid_transform, batch_rodrigues


def joint_transforms(pose: torch.Tensor, rest_joints: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Per-joint rest->posed transforms.

    Args:
        pose: (B, 48) absolute axis-angle (global orient first).
        rest_joints: (B, 16, 3) joints of the shaped rest mesh.
        parents: (16,) kinematic parents (-1 for the root).
    Returns:
        (B, 16, 4, 4) transforms A_j (translation excluded).
    """
    B = pose.shape[0]
    rots = batch_rodrigues(pose.reshape(-1, 3)).reshape(B, -1, 3, 3)
    _, A = batch_rigid_transform(rots, rest_joints, parents.long(), dtype=pose.dtype)
    return A


def blend(weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(N, J) weights x (J, 4, 4) transforms -> (N, 4, 4) blended transforms."""
    return torch.einsum("nj,jab->nab", weights, A)


def inverse3x3(M: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) inverses by the adjugate formula (vectorised; faster than a batched LU for 3x3)."""
    a, b, c = M[:, 0, 0], M[:, 0, 1], M[:, 0, 2]
    d, e, f = M[:, 1, 0], M[:, 1, 1], M[:, 1, 2]
    g, h, i = M[:, 2, 0], M[:, 2, 1], M[:, 2, 2]
    A, B, C = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * A + b * B + c * C
    adj = torch.stack([A, c * h - b * i, b * f - c * e,
                       B, a * i - c * g, c * d - a * f,
                       C, b * g - a * h, a * e - b * d], dim=-1).reshape(-1, 3, 3)
    return adj / det[:, None, None]


def apply(T: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) transforms applied to (N, 3) points."""
    return torch.einsum("nab,nb->na", T[:, :3, :3], x) + T[:, :3, 3]


def inverse_lbs(x: torch.Tensor, weights: torch.Tensor, A_pose: torch.Tensor, trans: torch.Tensor,
                A_target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Map posed points back to the rest pose, or on to a target (canonical) pose.

    Args:
        x: (N, 3) posed points (world, including ``trans``).
        weights: (N, J) skinning weights at the points.
        A_pose: (J, 4, 4) joint transforms of the observed pose.
        trans: (3,) translation of the observed pose.
        A_target: (J, 4, 4) transforms of the canonical pose, or None for the rest pose.
    Returns:
        x_can (N, 3) and the (N, 3, 3) linear part of the posed->canonical map (for directions and
        covariances).
    """
    T = blend(weights, A_pose)
    Rinv = inverse3x3(T[:, :3, :3])  # blended transforms are affine: invert the 3x3 part only
    v = torch.einsum("nab,nb->na", Rinv, x - trans - T[:, :3, 3])
    if A_target is None:
        return v, Rinv
    Tc = blend(weights, A_target)
    return apply(Tc, v), Tc[:, :3, :3] @ Rinv


# ---------------------------------------------------------------------------------------------------------
# Nearest-face weights


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on triangles (a, b, c) to points p, all (N, 3); returns (q (N, 3), bary (N, 3)).

    Ericson, Real-Time Collision Detection §5.1.5, vectorised over the N pairs.
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    n = len(p)
    bary = np.zeros((n, 3))
    done = np.zeros(n, bool)

    def setb(mask, u, v, w):
        m = mask & ~done
        bary[m, 0], bary[m, 1], bary[m, 2] = u[m] if np.ndim(u) else u, v[m] if np.ndim(v) else v, \
            w[m] if np.ndim(w) else w
        done[m] = True

    with np.errstate(divide="ignore", invalid="ignore"):
        setb((d1 <= 0) & (d2 <= 0), 1.0, 0.0, 0.0)  # vertex a
        setb((d3 >= 0) & (d4 <= d3), 0.0, 1.0, 0.0)  # vertex b
        t = d1 / (d1 - d3)
        setb((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t, t, 0.0)  # edge ab
        setb((d6 >= 0) & (d5 <= d6), 0.0, 0.0, 1.0)  # vertex c
        t = d2 / (d2 - d6)
        setb((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t, 0.0, t)  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        setb((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), 0.0, 1 - t, t)  # edge bc
        denom = 1.0 / (va + vb + vc)
        v, w = vb * denom, vc * denom
        setb(np.ones(n, bool), 1 - v - w, v, w)  # inside the face
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return q, bary


def _vertex_faces(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """(V, D) faces incident to each vertex, padded with -1."""
    order = np.argsort(faces.reshape(-1), kind="stable")
    vid = faces.reshape(-1)[order]
    fid = order // 3
    counts = np.bincount(vid, minlength=n_verts)
    D = int(counts.max())
    out = -np.ones((n_verts, D), np.int64)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(len(vid)) - start[vid]
    out[vid, col] = fid
    return out


def nearest_face_weights(points: np.ndarray, verts: np.ndarray, faces: np.ndarray, vert_weights: np.ndarray,
                         k: int = 3, chunk: int = 4096, max_dist: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Skinning weights of the nearest mesh face (barycentric blend) and the distance to it.

    Candidate faces are those around the ``k`` nearest vertices (exact for points near the surface,
    where it matters; approximate far from it, where the deformation is not used). Points farther than
    ``max_dist`` from every vertex get the nearest vertex's weights and distance (no face search).

    Args:
        points: (N, 3) query points.
        verts: (V, 3) posed mesh vertices; faces (F, 3); vert_weights (V, J).
    Returns:
        weights (N, J) and unsigned distance (N,) to the nearest face.
    """
    points = np.asarray(points, np.float64)
    verts = np.asarray(verts, np.float64)
    vf = _vertex_faces(faces, len(verts))
    tree = cKDTree(verts)
    d0, i0 = tree.query(points, k=1)
    W = vert_weights[i0].astype(np.float32)
    dist = d0.astype(np.float32)
    near = np.arange(len(points)) if max_dist is None else np.nonzero(d0 <= max_dist)[0]
    for s in range(0, len(near), chunk):
        idx = near[s:s + chunk]
        p = points[idx]
        _, nn = tree.query(p, k=k)
        cand = vf[nn.reshape(len(p), -1)].reshape(len(p), -1)  # (n, k*D)
        valid = cand >= 0
        cand = np.where(valid, cand, 0)
        tri = faces[cand]  # (n, C, 3)
        P = np.repeat(p, cand.shape[1], axis=0)
        a, b, c = (verts[tri[..., i].reshape(-1)] for i in range(3))
        q, bary = closest_point_on_triangles(P, a, b, c)
        d2 = ((q - P) ** 2).sum(1).reshape(len(p), -1)
        d2[~valid] = np.inf
        best = d2.argmin(1)
        rows = np.arange(len(p))
        bt = bary.reshape(len(p), -1, 3)[rows, best]
        ft = tri[rows, best]
        W[idx] = np.einsum("ni,nij->nj", bt, vert_weights[ft]).astype(np.float32)
        dist[idx] = np.sqrt(d2[rows, best])
    return W, dist
