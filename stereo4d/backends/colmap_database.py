"""COLMAP's database for the rig: crops written as images, pairs matched, matches read back and
edited (moving objects removed, the rig's initial pose stored).

Images are ``left/<frame>.png`` and ``right/<frame>.png`` (frame = 6-digit index), one COLMAP
camera per folder; keypoints in COLMAP's continuous pixel coordinates.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stereo4d.backends.rig_motion import PairMatches
from stereo4d.io import InputError

__all__ = ["EYE_FOLDERS", "MIN_FEATURES_PER_IMAGE", "check_features", "match_pairs",
           "pair_names", "read_matches", "remove_moving_matches", "set_rig_pose", "write_images"]

#: zlib level of the PNGs COLMAP reads (lossless at any level; 1 writes 96 crops of 640 px in
#: about two thirds of the CPU time of OpenCV's default 3).
PNG_COMPRESSION = 1
#: Image folders of the two eyes (COLMAP rig image prefixes); frames share file names.
EYE_FOLDERS = ("left", "right")


def write_images(root: Path, eyes: np.ndarray) -> list[str]:
    """Writes ``eyes`` [2, T, H, W, 3] uint8 RGB as PNGs under ``root``; returns their names."""
    names = []
    for e, folder in enumerate(EYE_FOLDERS):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for t, image in enumerate(eyes[e]):
            name = f"{folder}/{t:06d}.png"
            cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
            names.append(name)
    return names


def pair_names(num_frames: int, overlap_frames: int,
               cross_overlap_frames: int) -> list[tuple[str, str]]:
    """Image pairs to match: each frame's stereo pair; within each eye, every frame with the
    ``overlap_frames`` next ones; across the eyes, with the ``cross_overlap_frames`` next ones
    (both equal: every image pair of frames up to ``overlap_frames`` apart, as COLMAP's
    sequential matching of a rig)."""
    names = [[f"{folder}/{t:06d}.png" for t in range(num_frames)] for folder in EYE_FOLDERS]
    pairs = [(names[0][t], names[1][t]) for t in range(num_frames)]
    for first, second, overlap in ((0, 0, overlap_frames), (1, 1, overlap_frames),
                                   (0, 1, cross_overlap_frames), (1, 0, cross_overlap_frames)):
        pairs += [(names[first][t], names[second][t + k]) for k in range(1, overlap + 1)
                  for t in range(num_frames - k)]
    return pairs


def match_pairs(pycolmap, database: Path, pair_file: Path, num_frames: int, overlap_frames: int,
                cross_overlap_frames: int, num_threads: int, verification) -> None:
    """Feature matching and two-view verification (``verification``: COLMAP's
    ``TwoViewGeometryOptions``) of the ``pair_names`` pairs, listed in ``pair_file``."""
    pair_file.write_text("".join(f"{a} {b}\n" for a, b in pair_names(
        num_frames, overlap_frames, cross_overlap_frames)))
    pycolmap.match_image_pairs(
        database, matching_options=pycolmap.FeatureMatchingOptions(num_threads=num_threads),
        pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pair_file)),
        verification_options=verification, device=pycolmap.Device.cpu)


def read_matches(pycolmap, database_path: Path, num_frames: int):
    """Keypoints, (eye, frame) per image, verified pairs; ids -> our image indices."""
    with pycolmap.Database.open(str(database_path)) as db:
        images = db.read_all_images()
        index = {}
        eye_frame = np.zeros((len(images), 2), np.int64)
        for image in images:
            folder, stem = image.name.split("/")
            i = EYE_FOLDERS.index(folder) * num_frames + int(stem.split(".")[0])
            index[image.image_id] = i
            eye_frame[i] = (EYE_FOLDERS.index(folder), int(stem.split(".")[0]))
        keypoints = [None] * len(images)
        for image_id, i in index.items():
            keypoints[i] = db.read_keypoints(image_id)[:, :2].astype(np.float64)
        pair_ids, geometries = db.read_two_view_geometries()
        pairs, raw = [], []
        for pair_id, geometry in zip(pair_ids, geometries):
            id1, id2 = pycolmap.pair_id_to_image_pair(pair_id)
            matches = np.asarray(geometry.inlier_matches, np.int64).reshape(-1, 2)
            if len(matches):
                pairs.append(PairMatches(index[id1], index[id2], matches))
                raw.append((id1, id2, geometry))
    return keypoints, eye_frame, pairs, raw


#: Fewest SIFT features (median per image) of a usable video.
MIN_FEATURES_PER_IMAGE = 100


def check_features(keypoints: list[np.ndarray], eye_frame: np.ndarray) -> None:
    """InputError when the images have too few features (textureless, sky, black frames)."""
    counts = np.array([len(k) for k in keypoints])
    if np.median(counts) < MIN_FEATURES_PER_IMAGE:
        worst = np.argsort(counts)[:5]
        where = ", ".join(f"{EYE_FOLDERS[eye_frame[i, 0]]} frame {eye_frame[i, 1]} ({counts[i]})"
                          for i in worst)
        raise InputError(f"too little texture: median {np.median(counts):.0f} features per image "
                         f"(need {MIN_FEATURES_PER_IMAGE}; fewest: {where})")


def remove_moving_matches(pycolmap, database_path: Path, raw, pairs, moving, min_inliers: int) -> int:
    """Deletes verified matches touching moving keypoints; returns the matches removed."""
    removed = 0
    with pycolmap.Database.open(str(database_path)) as db:
        for (id1, id2, geometry), pair in zip(raw, pairs):
            keep = ~(moving[pair.image1][pair.matches[:, 0]] | moving[pair.image2][pair.matches[:, 1]])
            if keep.all():
                continue
            removed += int((~keep).sum())
            kept = pair.matches[keep] if keep.sum() >= min_inliers else pair.matches[:0]
            geometry.inlier_matches = kept.astype(np.uint32)
            db.update_two_view_geometry(id1, id2, geometry)
    return removed


def set_rig_pose(pycolmap, database_path: Path, right_from_left: np.ndarray) -> None:
    """Stores the stereo estimate of the right eye's pose in the rig (the mapper starts from
    it, the final bundle adjustment refines it)."""
    with pycolmap.Database.open(str(database_path)) as db:
        for rig in db.read_all_rigs():
            for sensor in rig.non_ref_sensors:
                rig.set_sensor_from_rig(sensor, pycolmap.Rigid3d(
                    pycolmap.Rotation3d(right_from_left[:, :3]), right_from_left[:, 3].copy()))
            db.update_rig(rig)
