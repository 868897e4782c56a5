"""Camera poses of a stereo rig from its two perspective eye videos, with COLMAP (pycolmap).

With ``colmap_database`` (the database's images, pairs and matches) the only module that
touches COLMAP objects (database, rig, reconstruction): frames go in as arrays, poses come out
as arrays. Steps:

1. SIFT features on every crop (both eyes, every frame), one PINHOLE camera per eye with the
   crops' known intrinsics (held fixed).
2. The eyes as a COLMAP rig (left = reference sensor; one frame = the two eyes' images at one
   time), matching of a list of pairs (each frame's stereo pair and temporal pairs within
   ``overlap_frames``), geometric verification.
3. Moving objects removed: ``rig_motion.segment_motion`` flags keypoints on moving objects from
   the matches, and every match touching one is deleted from the database's verified matches.
4. Global mapping (GLOMAP in COLMAP) with the rig's sensor pose refined: global positioning on
   a subset of the feature tracks, one adjustment round, every track re-triangulated; then a
   final robust bundle adjustment of poses, points and the rig. Metric scale from the rig: the
   reconstruction is scaled so that the eyes are ``baseline_m`` apart.
5. The rig's precision (``rig_covariance``): standard deviations of the eyes' relative rotation
   and of the baseline's direction from the final adjustment's covariance (in ``stats``).

Conventions: keypoints and intrinsics in continuous pixel coordinates (COLMAP's too: the first
pixel's centre is (0.5, 0.5)); ``cam_from_world`` ``[R | t]`` with ``x_cam = R x_world + t``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stereo4d.backends.colmap_database import (
    EYE_FOLDERS,
    check_features,
    match_pairs,
    read_matches,
    remove_moving_matches,
    set_rig_pose,
    write_images,
)
from stereo4d.backends.rig_covariance import RigObservations, rig_precision
from stereo4d.backends.rig_motion import MotionSettings, segment_motion
from stereo4d.io import InputError
from stereo4d.timing import Timer

__all__ = ["ColmapSettings", "RigPoses", "estimate_rig_poses"]

@dataclass(frozen=True)
class ColmapSettings:
    """Settings of the COLMAP engine.

    Attributes:
      max_features: SIFT features per image.
      sift_first_octave: SIFT's first octave (-1, COLMAP's default, doubles the image first:
        four times the pixels to scan, for the finest features of small images; 0 is enough for
        the 640 px crops and cuts the extraction time by about 3x).
      overlap_frames: temporal matching window (frames ahead) within each eye.
      cross_overlap_frames: the same between the left and the right eye (3 = COLMAP's sequential
        matching of a rig). Windows of 2 and 1 were as accurate on 48-frame tuning clips and
        matched about 14 CPU s faster, but broke a 200-frame held-out clip (seed 2: ATE 18 cm,
        RPE 0.18 deg/frame against 0.24 cm and 0.005 with 3 and 3), so both stay 3.
      verify_max_error_px: RANSAC threshold of the two-view verification (pixels).
      ba_loss_scale_px: Huber scale of the final bundle adjustment (pixels).
      min_registered_fraction: fewer registered frames than this is an error.
      num_threads: COLMAP threads (-1: all cores).
      remove_moving: delete matches on moving objects before mapping.
      min_path_m: the stereo PnP's camera path must be at least this long (metres): a static
        camera has no path to estimate (checked before mapping).
      fixed_rig_in_mapper: the mapper keeps the rig at its stereo estimate (otherwise it starts
        from it and refines it, as the final bundle adjustment always does; refining was more
        accurate on the development clip).
      rig_from_stereo: return the stereo estimate pooled over every frame's stereo matches
        (``rig_motion``) as ``right_from_left`` (hence ``rectified2rig``) instead of the bundle
        adjustment's rig. Off: better on the tuning clip (seed 3: relative rotation 0.0002 vs
        0.002 degrees), its relative rotation was worse on the held-out seed 2 (0.006 vs 0.002)
        and on the demo clip (0.014 vs 0.001, where the stereo stage's EPE rose from 0.13 to
        0.17 px); the relative rotation is what rectification depends on.
      mapper_ba_iterations: bundle adjustment rounds inside the global mapper (COLMAP: 3); the
        final robust bundle adjustment follows anyway.
      mapper_tracks_per_view: global positioning (GLOMAP's; it starts from random positions)
        uses a subset of the feature tracks, about this many per image (0: all). On tuning
        seed 3 (48 frames) all 7779 tracks cost 74 Ceres iterations, about two thirds of the
        mapping's 45 CPU s; 1000 per view: mapping 23-25 CPU s on seeds 3 and 1, with ATE,
        RPE and the relative rotation as with all tracks (seed 1: 0.034 vs 0.050 cm, 0.0036
        vs 0.0036 deg/frame, 0.0020 vs 0.0016 deg). 200 per view was faster still but its
        points are too few for the final adjustment (seed 3: ATE 1.1 cm, scale 2.5 %).
      mapper_retriangulation: let the global mapper re-triangulate every track after its
        adjustment (and adjust again). Off: with 200 tracks per view it restored the points,
        but the re-triangulated tracks left a 0.010 degree relative-rotation error on seed 1
        (standard deviation 0.0016), 0.0075 with 2 px triangulation thresholds.
      retriangulation_max_error_px: with ``mapper_retriangulation``, COLMAP's merge / complete
        reprojection thresholds of the re-triangulation (0: COLMAP's 15 px).
      mapper_skip_fixed_rotation_ba: skip the mapper's first adjustment stage (rotations held);
        the joint stage follows (6 CPU s less, same accuracy on the tuning clip).
      mapper_ba_max_iterations, final_ba_max_iterations: iteration caps of the mapper's and the
        final bundle adjustments (COLMAP's defaults: 200 and 100; on the tuning clip the final
        one's result did not change from 10 iterations on: 50 moved the baseline direction by
        0.0002 degrees).
      rig_precision: compute the rig's standard deviations (``rig_covariance``; about 1 CPU s).
      random_seed: COLMAP's random seed (runs are repeatable up to thread scheduling).
      log_level: COLMAP's log threshold (0 info, 1 warnings, 2 errors).
      motion: settings of the moving-object segmentation.
    """

    max_features: int = 2048
    sift_first_octave: int = 0
    overlap_frames: int = 3
    verify_max_error_px: float = 2.0
    ba_loss_scale_px: float = 1.0
    min_registered_fraction: float = 0.9
    num_threads: int = -1
    remove_moving: bool = True
    min_path_m: float = 0.03
    fixed_rig_in_mapper: bool = False
    rig_from_stereo: bool = False
    mapper_ba_iterations: int = 1
    mapper_retriangulation: bool = False
    mapper_ba_max_iterations: int = 25
    final_ba_max_iterations: int = 10
    mapper_skip_fixed_rotation_ba: bool = True
    cross_overlap_frames: int = 3
    rig_precision: bool = True
    mapper_tracks_per_view: int = 1000
    retriangulation_max_error_px: float = 0.0
    random_seed: int = 0
    log_level: int = 2
    motion: MotionSettings = field(default_factory=MotionSettings)


@dataclass(frozen=True)
class RigPoses:
    """Metric poses of the rig.

    Attributes:
      left_cam_from_world: [T, 3, 4] raw left eye's world-to-camera (metres); frames COLMAP
        could not register are interpolated from their neighbours.
      right_from_left: [3, 4] raw right eye from raw left eye; |t| = the baseline (metres).
      registered: [T] bool frames registered by COLMAP.
      moving_fraction: share of matched keypoints flagged as moving.
      frame_motion_m: [T-1] camera displacement between consecutive frames from the motion
        segmentation's stereo PnP (metres, NaN where unknown).
      stats: counts and timings.
    """

    left_cam_from_world: np.ndarray
    right_from_left: np.ndarray
    registered: np.ndarray
    moving_fraction: float
    frame_motion_m: np.ndarray
    stats: dict


class _StepClock:
    """Wall-clock (``Timer``) and CPU seconds (this process, every thread: COLMAP's too) per
    named step: on a shared machine the CPU seconds are what a step costs."""

    def __init__(self):
        self.wall = Timer()
        self.cpu_s: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        cpu0 = time.process_time()
        with self.wall(name):
            try:
                yield
            finally:
                self.cpu_s[name] = self.cpu_s.get(name, 0.0) + time.process_time() - cpu0


def _rig_observations(rec) -> RigObservations:
    """The solved reconstruction's frames, rig, points and observations as arrays."""
    frames = sorted((f for f in rec.frames.values() if f.has_pose), key=lambda f: f.frame_id)
    frame_index = {f.frame_id: i for i, f in enumerate(frames)}
    rig = next(iter(rec.rigs.values()))
    point_ids = np.array(list(rec.points3D.keys()), np.int64)
    point_index = dict(zip(point_ids.tolist(), range(len(point_ids))))
    per_image = []
    for image in rec.images.values():
        if not image.has_pose:
            continue
        obs = image.get_observation_points2D()
        per_image.append((np.array([o.xy for o in obs]).reshape(-1, 2),
                          np.array([point_index[o.point3D_id] for o in obs], np.int64),
                          np.full(len(obs), frame_index[image.frame_id]),
                          np.full(len(obs), 0 if image.is_ref_in_frame() else 1)))
    xy, points, frame, eye = (np.concatenate(c) for c in zip(*per_image))
    camera = next(iter(rec.cameras.values()))  # PINHOLE: fx, fy, cx, cy (both eyes the same)
    return RigObservations(
        rig_from_world=np.stack([f.rig_from_world.matrix() for f in frames]),
        right_from_left=rig.sensor_from_rig(next(iter(rig.non_ref_sensors))).matrix(),
        points_xyz=np.stack([rec.points3D[int(p)].xyz for p in point_ids]),
        point_index=points, frame_index=frame, eye=eye, xy_px=xy,
        focal_px=float(camera.params[0]), principal_xy=np.asarray(camera.params[2:4], float))


def _interpolate_missing(cam_from_world: np.ndarray, registered: np.ndarray) -> np.ndarray:
    """Fills unregistered frames [T, 3, 4]: rotations slerped, camera centres linear."""
    from scipy.spatial.transform import Rotation, Slerp

    out = cam_from_world.copy()
    times = np.nonzero(registered)[0]
    missing = np.nonzero(~registered)[0]
    if not len(missing):
        return out
    rots = Rotation.from_matrix(cam_from_world[times, :, :3])
    centres = -np.einsum("tji,tj->ti", cam_from_world[times, :, :3], cam_from_world[times, :, 3])
    query = np.clip(missing, times[0], times[-1])
    rot = Slerp(times, rots)(query).as_matrix()
    centre = np.stack([np.interp(query, times, centres[:, k]) for k in range(3)], axis=-1)
    out[missing, :, :3] = rot
    out[missing, :, 3] = -np.einsum("tij,tj->ti", rot, centre)
    return out


def estimate_rig_poses(eyes: np.ndarray, focal_px: float, baseline_m: float,
                       settings: ColmapSettings = ColmapSettings(),
                       workdir: str | Path | None = None, reuse_matches: bool = False) -> RigPoses:
    """Metric rig poses from perspective crops of both eyes.

    Args:
      eyes: [2, T, H, W, 3] uint8 RGB crops (left, right) of a centred pinhole of ``focal_px``.
      baseline_m: distance between the eyes (metres).
      workdir: keep COLMAP's files there (default: a temporary folder, removed).
      reuse_matches: with ``workdir``, start from its features and matches of an earlier run
        of the same frames (for experiments with the later steps).

    Raises:
      InputError: too few matches, stereo problems, too few frames registered.
    """
    import pycolmap

    pycolmap.logging.minloglevel = settings.log_level
    num_frames, height, width = eyes.shape[1:4]
    timer = _StepClock()
    with tempfile.TemporaryDirectory(prefix="stereo4d-colmap-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        image_dir, database = root / "images", root / "database.db"
        matched = root / "matches.db"  # the database after matching, before any removal
        database.unlink(missing_ok=True)
        verification = pycolmap.TwoViewGeometryOptions()
        verification.ransac.max_error = settings.verify_max_error_px
        if workdir and reuse_matches and matched.is_file():
            shutil.copy(matched, database)
        else:
            with timer("write_images"):
                write_images(image_dir, eyes)
            reader = pycolmap.ImageReaderOptions(
                camera_model="PINHOLE",
                camera_params=f"{focal_px},{focal_px},{width / 2},{height / 2}")
            extraction = pycolmap.FeatureExtractionOptions(num_threads=settings.num_threads)
            extraction.sift.max_num_features = settings.max_features
            extraction.sift.first_octave = settings.sift_first_octave
            with timer("features"):
                pycolmap.extract_features(database, image_dir,
                                          camera_mode=pycolmap.CameraMode.PER_FOLDER,
                                          reader_options=reader, extraction_options=extraction,
                                          device=pycolmap.Device.cpu)
            rig = pycolmap.RigConfig(cameras=[
                pycolmap.RigConfigCamera(ref_sensor=True, image_prefix=f"{EYE_FOLDERS[0]}/"),
                pycolmap.RigConfigCamera(image_prefix=f"{EYE_FOLDERS[1]}/"),
            ])
            with pycolmap.Database.open(str(database)) as db:
                pycolmap.apply_rig_config([rig], db)
            with timer("matching"):
                match_pairs(pycolmap, database, root / "pairs.txt", num_frames,
                            settings.overlap_frames, settings.cross_overlap_frames,
                            settings.num_threads, verification)
            if workdir:
                shutil.copy(database, matched)
        with timer("motion_segmentation"):
            keypoints, eye_frame, pairs, raw = read_matches(pycolmap, database, num_frames)
            check_features(keypoints, eye_frame)
            motion = segment_motion(keypoints, eye_frame, pairs, focal_px,
                                    (width / 2, height / 2), baseline_m, settings.motion)
            path_m = float(np.nansum(motion.frame_motion_m))
            if path_m < settings.min_path_m:
                raise InputError(
                    f"the camera barely moves: {path_m * 100:.1f} cm over {num_frames} frames "
                    f"(need {settings.min_path_m * 100:.0f} cm): a static camera has no path "
                    "to estimate")
            set_rig_pose(pycolmap, database, motion.right_from_left)
            removed = 0
            if settings.remove_moving:
                removed = remove_moving_matches(pycolmap, database, raw, pairs, motion.moving,
                                                verification.min_num_inliers)
        options = pycolmap.GlobalPipelineOptions(num_threads=settings.num_threads,
                                                 random_seed=settings.random_seed)
        options.mapper.bundle_adjustment.refine_focal_length = False
        options.mapper.bundle_adjustment.refine_extra_params = False
        options.mapper.ba_num_iterations = settings.mapper_ba_iterations
        options.mapper.skip_retriangulation = not settings.mapper_retriangulation
        options.mapper.ba_skip_fixed_rotation_stage = settings.mapper_skip_fixed_rotation_ba
        if settings.retriangulation_max_error_px:
            options.mapper.retriangulation.merge_max_reproj_error = (
                settings.retriangulation_max_error_px)
            options.mapper.retriangulation.complete_max_reproj_error = (
                settings.retriangulation_max_error_px)
        if settings.mapper_tracks_per_view:
            options.mapper.track_required_tracks_per_view = settings.mapper_tracks_per_view
        options.mapper.bundle_adjustment.ceres.solver_options.max_num_iterations = (
            settings.mapper_ba_max_iterations)
        if settings.fixed_rig_in_mapper:
            options.mapper.refine_sensor_from_rig = False
            options.mapper.rotation_averaging.refine_sensor_from_rig = False
            options.mapper.global_positioning.refine_sensor_from_rig = False
            options.mapper.bundle_adjustment.refine_sensor_from_rig = False
        (root / "sparse").mkdir(exist_ok=True)
        with timer("mapping"):
            models = pycolmap.global_mapping(database, image_dir, root / "sparse", options)
        if not models:
            raise InputError("COLMAP could not reconstruct the camera path (no model): too "
                             "little texture or parallax")
        rec = max(models.values(), key=lambda r: r.num_reg_images())
        ba = pycolmap.BundleAdjustmentOptions(refine_focal_length=False, refine_extra_params=False,
                                              refine_sensor_from_rig=True, print_summary=False)
        ba.ceres.loss_function_type = pycolmap.LossFunctionType.HUBER
        ba.ceres.loss_function_scale = settings.ba_loss_scale_px
        ba.ceres.solver_options.max_num_iterations = settings.final_ba_max_iterations
        with timer("bundle_adjustment"):
            pycolmap.bundle_adjustment(rec, ba)
        poses = _poses_from_reconstruction(rec, num_frames, baseline_m, settings, motion, removed,
                                           sum(len(k) for k in keypoints))
        if settings.rig_precision:
            with timer("rig_precision"):
                precision = rig_precision(_rig_observations(rec))
            poses.stats.update(rig_sigma_px=precision.sigma_px,
                               rig_baseline_dir_std_deg=precision.baseline_dir_std_deg,
                               rig_relative_rot_std_deg=precision.relative_rot_std_deg)
        poses.stats["timings_s"] = timer.wall.seconds
        poses.stats["cpu_s"] = timer.cpu_s
        return poses


def _poses_from_reconstruction(rec, num_frames, baseline_m, settings, motion, removed, num_kp):
    cams = np.full((2, num_frames, 3, 4), np.nan)
    for image in rec.images.values():
        if not image.has_pose:
            continue
        folder, stem = image.name.split("/")
        cams[EYE_FOLDERS.index(folder), int(stem.split(".")[0])] = image.cam_from_world().matrix()
    registered = np.isfinite(cams[0, :, 0, 0]) & np.isfinite(cams[1, :, 0, 0])
    if registered.sum() < max(2, settings.min_registered_fraction * num_frames):
        missing = np.nonzero(~registered)[0]
        raise InputError(f"COLMAP registered only {registered.sum()} of {num_frames} frames "
                         f"(unregistered: {', '.join(map(str, missing[:10]))}"
                         f"{' ...' if len(missing) > 10 else ''}): too little texture or parallax")
    # Rig pose: right_from_left = right_from_world @ world_from_left (identical in every frame).
    t0 = int(np.nonzero(registered)[0][0])
    left4, right4 = np.eye(4), np.eye(4)
    left4[:3], right4[:3] = cams[0, t0], cams[1, t0]
    right_from_left = (right4 @ np.linalg.inv(left4))[:3]
    scale = baseline_m / np.linalg.norm(right_from_left[:, 3])
    right_from_left[:, 3] *= scale
    if settings.rig_from_stereo:
        right_from_left = motion.right_from_left * [1, 1, 1, baseline_m / np.linalg.norm(
            motion.right_from_left[:, 3])]
    left = cams[0].copy()
    left[:, :, 3] *= scale
    left = _interpolate_missing(left, registered)
    matched = sum(int(m.sum()) for m in motion.moving)
    return RigPoses(
        left_cam_from_world=left,
        right_from_left=right_from_left,
        registered=registered,
        moving_fraction=matched / max(num_kp, 1),
        frame_motion_m=motion.frame_motion_m,
        stats={"registered_frames": int(registered.sum()), "points3d": rec.num_points3D(),
               "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
               "moving_matches_removed": removed, "scale_applied": float(scale),
               "stereo_matches_median": float(np.median(motion.stereo_matches)),
               "stereo_right_from_left": motion.right_from_left.tolist()},
    )
