"""Moving-object keypoints of a stereo video, found before any camera is known.

The two eyes of a frame are exposed at the same time, so their matches see a rigid scene even
where objects move: pooled over all frames they give the rig's relative pose (up to scale,
fixed by the known baseline) and a metric 3D point for every stereo-matched keypoint. Between
two frames of one eye the camera motion is then a PnP problem, solved robustly: the static
background (the majority) agrees on one pose and points on moving objects do not, even objects
that follow the camera (a person walking ahead has almost no image motion, which an epipolar
test alone accepts, but its stereo depth contradicts the camera's motion). Matches without a
stereo point are scored by their Sampson distance to that pose's epipolar geometry.

Votes are pooled over feature tracks (connected components of all matches): a track is moving
when at least ``dynamic_vote_fraction`` of its votes say so. Pure numpy / OpenCV; no COLMAP
object crosses this module's boundary (keypoints and matches come in as arrays).

Conventions: keypoints ``xy`` in continuous pixel coordinates of a centred pinhole crop of focal
``focal_px`` (principal point ``principal_xy``); eyes 0 = left, 1 = right; camera frames x right,
y down, z forward; ``right_from_left`` ``[R | t]`` maps left-eye to right-eye coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stereo4d.io import InputError

__all__ = ["MotionSettings", "PairMatches", "RigMotion", "segment_motion"]


@dataclass(frozen=True)
class MotionSettings:
    """Settings of the motion segmentation.

    Attributes:
      stereo_ransac_px: RANSAC threshold of the rig's essential matrix (pixels).
      pnp_ransac_px: PnP RANSAC threshold between frames (pixels).
      moving_residual_px: a match is a "moving" vote above this reprojection / Sampson error.
      dynamic_vote_fraction: a track is moving when this share of its votes are "moving".
      min_depth_m, max_depth_m: stereo points kept between these depths (metres).
      min_pnp_points: fewest stereo points a frame pair needs for its PnP.
      min_stereo_matches: fewest stereo matches per frame (median) for a stereo video.
      min_stereo_shift_px: below this median left/right shift the halves are the same image.
      pnp_iterations: RANSAC hypotheses of each PnP; pnp_sample_size: points per hypothesis.
      grid_cells: the consensus counts occupied cells of a grid_cells x grid_cells grid over
        normalised image coordinates [-grid_half_extent, grid_half_extent]^2.
      random_seed: RANSAC sampling seed (results are deterministic).
      max_refine_matches: stereo matches (a random subset) in the rig pose refinement.
    """

    stereo_ransac_px: float = 1.0
    pnp_ransac_px: float = 1.5
    moving_residual_px: float = 2.0
    dynamic_vote_fraction: float = 0.3
    min_depth_m: float = 0.2
    max_depth_m: float = 200.0
    min_pnp_points: int = 12
    min_stereo_matches: int = 30
    min_stereo_shift_px: float = 0.3
    pnp_iterations: int = 64
    pnp_sample_size: int = 6
    grid_cells: int = 12
    grid_half_extent: float = 1.0
    random_seed: int = 0
    max_refine_matches: int = 50000


@dataclass(frozen=True)
class PairMatches:
    """Verified matches between two images.

    Attributes:
      image1, image2: image indices (into the keypoint list).
      matches: [M, 2] int keypoint indices in image1 and image2.
    """

    image1: int
    image2: int
    matches: np.ndarray


@dataclass(frozen=True)
class RigMotion:
    """Result of ``segment_motion``.

    Attributes:
      moving: per image, [N_i] bool keypoints on moving objects.
      right_from_left: [3, 4] initial rig pose, translation scaled to the baseline (metres).
      frame_motion_m: [F] camera displacement (metres) of each frame pair (t, t+1) of the left
        eye from its PnP, NaN where unknown.
      stereo_matches: [T] stereo inlier matches per frame.
    """

    moving: list[np.ndarray]
    right_from_left: np.ndarray
    frame_motion_m: np.ndarray
    stereo_matches: np.ndarray


def _sampson_px(p1: np.ndarray, p2: np.ndarray, essential: np.ndarray, focal_px: float):
    """Sampson distance (pixels) of normalised correspondences [M, 2] under ``essential``."""
    h1 = np.concatenate([p1, np.ones((len(p1), 1))], axis=1)
    h2 = np.concatenate([p2, np.ones((len(p2), 1))], axis=1)
    e1 = h1 @ essential.T
    e2 = h2 @ essential
    num = np.sum(h2 * e1, axis=1) ** 2
    den = e1[:, 0] ** 2 + e1[:, 1] ** 2 + e2[:, 0] ** 2 + e2[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-300)) * focal_px


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _refine_relative_pose(p1, p2, rot, t, focal_px, settings):
    """Relative pose (R, unit t) minimising the robust Sampson error of all stereo inliers
    (the RANSAC model comes from a minimal sample only)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    pick = np.random.default_rng(settings.random_seed).permutation(len(p1))
    pick = pick[:settings.max_refine_matches]
    a, b = p1[pick], p2[pick]

    def unit(angles):
        return np.array([np.cos(angles[1]) * np.cos(angles[0]), np.sin(angles[1]),
                         np.cos(angles[1]) * np.sin(angles[0])])

    def residuals(x):
        essential = _skew(unit(x[3:])) @ Rotation.from_rotvec(x[:3]).as_matrix()
        h1 = np.concatenate([a, np.ones((len(a), 1))], axis=1)
        h2 = np.concatenate([b, np.ones((len(b), 1))], axis=1)
        e1, e2 = h1 @ essential.T, h2 @ essential
        den = np.sqrt(e1[:, 0] ** 2 + e1[:, 1] ** 2 + e2[:, 0] ** 2 + e2[:, 1] ** 2)
        return np.sum(h2 * e1, axis=1) / np.maximum(den, 1e-300) * focal_px

    t = t / np.linalg.norm(t)
    x0 = np.concatenate([Rotation.from_matrix(rot).as_rotvec(),
                         [np.arctan2(t[2], t[0]), np.arcsin(np.clip(t[1], -1, 1))]])
    sol = least_squares(residuals, x0, loss="huber", f_scale=settings.stereo_ransac_px / 2)
    return Rotation.from_rotvec(sol.x[:3]).as_matrix(), unit(sol.x[3:])


def _rig_pose(norm, stereo, focal_px, baseline_m, settings):
    """Essential matrix pooled over every frame's stereo matches -> [R | t], inlier masks."""
    p1 = np.concatenate([norm[s.image1][s.matches[:, 0]] for s in stereo])
    p2 = np.concatenate([norm[s.image2][s.matches[:, 1]] for s in stereo])
    shift_px = np.median(np.linalg.norm(p1 - p2, axis=1)) * focal_px
    if shift_px < settings.min_stereo_shift_px:
        raise InputError(
            f"the left and right halves are the same image (median shift {shift_px:.2f} px "
            f"< {settings.min_stereo_shift_px} px): a mono video, not side-by-side stereo")
    essential, mask = cv2.findEssentialMat(p1, p2, np.eye(3), method=cv2.RANSAC, prob=0.9999,
                                           threshold=settings.stereo_ransac_px / focal_px)
    if essential is None or essential.shape != (3, 3):
        raise InputError("no consistent stereo geometry between the left and right halves")
    inlier = mask.ravel() > 0
    # recoverPose's own mask would also drop points beyond 50 baselines (its distance limit):
    # the background. Its pose is right; the inliers are the essential matrix's.
    _, rot, t, _ = cv2.recoverPose(essential, p1[inlier], p2[inlier], np.eye(3))
    rot, t = _refine_relative_pose(p1[inlier], p2[inlier], rot, t.ravel(), focal_px, settings)
    pose = np.concatenate([rot, t.reshape(3, 1) * baseline_m], axis=1)
    splits = np.cumsum([len(s.matches) for s in stereo])[:-1]
    return pose, np.split(inlier, splits)


def _stereo_points(norm, stereo, inliers, pose, settings):
    """Metric 3D point (camera coordinates of its own image) of every stereo-matched keypoint."""
    xyz = [np.full((len(n), 3), np.nan) for n in norm]
    proj_left = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    for s, keep in zip(stereo, inliers):
        m = s.matches[keep]
        if not len(m):
            continue
        hom = cv2.triangulatePoints(proj_left, pose, norm[s.image1][m[:, 0]].T,
                                    norm[s.image2][m[:, 1]].T)
        left = (hom[:3] / hom[3]).T
        right = left @ pose[:, :3].T + pose[:, 3]
        ok = ((left[:, 2] > settings.min_depth_m) & (left[:, 2] < settings.max_depth_m)
              & (right[:, 2] > settings.min_depth_m))
        xyz[s.image1][m[ok, 0]] = left[ok]
        xyz[s.image2][m[ok, 1]] = right[ok]
    return xyz


def _balanced_pnp(pts3d, p2, image_cells, focal_px, settings, rng):
    """Robust PnP whose consensus counts occupied image cells, not points.

    A textured object close to the camera (a person walking ahead) can hold most stereo points
    while covering a small part of the image; counting the grid cells that hold inliers makes
    the scene's widespread background win. Returns (R [3, 3], t [3]) or None.
    """
    n = len(pts3d)
    sample = settings.pnp_sample_size
    hyps = []
    for _ in range(settings.pnp_iterations):
        pick = rng.choice(n, sample, replace=False)
        ok, rvec, tvec = cv2.solvePnP(pts3d[pick], p2[pick], np.eye(3), None,
                                      flags=cv2.SOLVEPNP_EPNP)
        if ok:
            hyps.append((cv2.Rodrigues(rvec)[0], tvec.ravel()))
    if not hyps:
        return None
    rots = np.stack([h[0] for h in hyps])
    trans = np.stack([h[1] for h in hyps])
    residual = _reprojection_px(pts3d, p2, rots, trans, focal_px)  # [H, N]
    inlier = residual < settings.pnp_ransac_px
    hit = np.zeros((len(hyps), settings.grid_cells ** 2), bool)
    rows, cols = np.nonzero(inlier)
    hit[rows, image_cells[cols]] = True
    best = int(np.argmax(hit.sum(axis=1) + inlier.mean(axis=1)))  # cells, then points
    keep = inlier[best]
    if keep.sum() < settings.min_pnp_points:
        return None
    rvec = cv2.Rodrigues(rots[best])[0]
    ok, rvec, tvec = cv2.solvePnP(pts3d[keep], p2[keep], np.eye(3), None, rvec=rvec,
                                  tvec=trans[best].reshape(3, 1).copy(), useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    return cv2.Rodrigues(rvec)[0], tvec.ravel()


def _reprojection_px(pts3d, p2, rots, trans, focal_px):
    """Reprojection errors [H, N] (pixels) of points [N, 3] under poses [H, 3, 3], [H, 3]."""
    cam = np.einsum("hij,nj->hni", rots, pts3d) + trans[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = cam[..., :2] / cam[..., 2:3]
        err = np.linalg.norm(proj - p2[None], axis=-1) * focal_px
    return np.where((cam[..., 2] > 0) & np.isfinite(err), err, np.inf)


def _pair_votes(pair, norm, xyz, focal_px, settings, rng):
    """(moving [M] bool or None, translation norm) of one temporal pair from PnP + Sampson."""
    m = pair.matches
    pts3d = xyz[pair.image1][m[:, 0]]
    p2 = norm[pair.image2][m[:, 1]]
    has3d = np.isfinite(pts3d[:, 0])
    if has3d.sum() < max(settings.min_pnp_points, settings.pnp_sample_size):
        return None, np.nan
    cell_xy = np.clip((p2[has3d] * settings.grid_cells / 2 / settings.grid_half_extent + 0.5
                       * settings.grid_cells).astype(np.int64), 0, settings.grid_cells - 1)
    cells = cell_xy[:, 1] * settings.grid_cells + cell_xy[:, 0]
    pose = _balanced_pnp(pts3d[has3d], p2[has3d], cells, focal_px, settings, rng)
    if pose is None:
        return None, np.nan
    rot, t = pose
    residual = np.full(len(m), np.inf)
    residual[has3d] = _reprojection_px(pts3d[has3d], p2[has3d], rot[None], t[None], focal_px)[0]
    if np.linalg.norm(t) > 0:
        essential = _skew(t / np.linalg.norm(t)) @ rot
        residual[~has3d] = _sampson_px(norm[pair.image1][m[~has3d, 0]], p2[~has3d], essential,
                                       focal_px)
    return residual > settings.moving_residual_px, float(np.linalg.norm(t))


def segment_motion(keypoints_xy: list[np.ndarray], eye_frame: np.ndarray, pairs: list[PairMatches],
                   focal_px: float, principal_xy: tuple[float, float], baseline_m: float,
                   settings: MotionSettings = MotionSettings()) -> RigMotion:
    """Keypoints on moving objects, the rig's initial pose and the per-frame camera motion.

    Args:
      keypoints_xy: per image, [N_i, 2] float pixels.
      eye_frame: [I, 2] int (eye, frame index) of each image.
      pairs: verified matches of image pairs (same-frame stereo pairs and temporal pairs).
      focal_px, principal_xy: the crops' pinhole intrinsics (pixels).
      baseline_m: distance between the eyes (metres).

    Raises:
      InputError: too few stereo matches (not a stereo video / textureless), identical halves.
    """
    eye_frame = np.asarray(eye_frame)
    num_frames = int(eye_frame[:, 1].max()) + 1
    centre = np.asarray(principal_xy, dtype=np.float64)
    norm = [(np.asarray(k, np.float64).reshape(-1, 2) - centre) / focal_px for k in keypoints_xy]
    stereo, temporal = [], []
    for p in pairs:
        (e1, t1), (e2, t2) = eye_frame[p.image1], eye_frame[p.image2]
        if t1 == t2 and e1 != e2:
            stereo.append(p if e1 == 0 else PairMatches(p.image2, p.image1, p.matches[:, ::-1]))
        elif e1 == e2 and t1 != t2:
            temporal.append(p if t1 < t2 else PairMatches(p.image2, p.image1, p.matches[:, ::-1]))
    per_frame = np.zeros(num_frames, np.int64)
    for s in stereo:
        per_frame[eye_frame[s.image1, 1]] += len(s.matches)
    median = float(np.median(per_frame))
    if median < settings.min_stereo_matches:
        worst = np.argsort(per_frame)[:5]
        raise InputError(
            f"too few stereo matches between the left and right halves: median {median:.0f} per "
            f"frame (need {settings.min_stereo_matches}; fewest at frames "
            f"{', '.join(f'{i} ({per_frame[i]})' for i in worst)}): not a side-by-side stereo "
            "video, or too little texture")
    pose, inliers = _rig_pose(norm, stereo, focal_px, baseline_m, settings)
    xyz = _stereo_points(norm, stereo, inliers, pose, settings)

    rng = np.random.default_rng(settings.random_seed)
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in norm])])
    moving_votes = np.zeros(offsets[-1])
    total_votes = np.zeros(offsets[-1])
    frame_motion = np.full(max(num_frames - 1, 0), np.nan)
    for pair in temporal:
        moving, t_norm = _pair_votes(pair, norm, xyz, focal_px, settings, rng)
        if moving is None:
            continue
        (eye, t1), (_, t2) = eye_frame[pair.image1], eye_frame[pair.image2]
        if eye == 0 and t2 == t1 + 1:
            frame_motion[t1] = t_norm
        for image, column in ((pair.image1, 0), (pair.image2, 1)):
            index = offsets[image] + pair.matches[:, column]
            np.add.at(moving_votes, index, moving)
            np.add.at(total_votes, index, 1.0)
    # Pool the votes over feature tracks (connected components of every match).
    rows = np.concatenate([offsets[p.image1] + p.matches[:, 0] for p in pairs] or [[]])
    cols = np.concatenate([offsets[p.image2] + p.matches[:, 1] for p in pairs] or [[]])
    graph = coo_matrix((np.ones(len(rows)), (rows.astype(np.int64), cols.astype(np.int64))),
                       shape=(offsets[-1], offsets[-1]))
    _, track = connected_components(graph, directed=False)
    track_moving = np.bincount(track, moving_votes)
    track_total = np.bincount(track, total_votes)
    is_moving = track_moving > settings.dynamic_vote_fraction * np.maximum(track_total, 1e-9)
    flags = is_moving[track]
    return RigMotion(
        moving=[flags[offsets[i]:offsets[i + 1]] for i in range(len(norm))],
        right_from_left=pose,
        frame_motion_m=frame_motion,
        stereo_matches=per_frame,
    )
