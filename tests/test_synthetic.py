"""Synthetic clip: ground truth checked against independent renders, the dataset format and the oracle."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

import make_synthetic_clip as script
from stereo4d import geometry, videoio
from stereo4d import io as sio
from stereo4d.synthetic import (
    ADE20K,
    SyntheticClipConfig,
    SyntheticOracle,
    build_scene,
    render_view,
)
from stereo4d.synthetic.clip import clip_times_s, rectified_cameras
from stereo4d.synthetic.render import trace

VID = "synthtest_66667"  # first clip frame = video frame 2
CONFIG = SyntheticClipConfig(num_frames=8, eye_size_px=320, gt_size_px=160, num_tracks=400)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    paths = sio.ClipPaths(VID, root / "npz", root / "raw", root / "processed", root / "gt")
    from stereo4d.synthetic import make_synthetic_clip

    summary = make_synthetic_clip(paths, CONFIG)
    with np.load(paths.gt) as z:
        gt = {k: z[k] for k in z.files}
    return paths, gt, summary


def _sample(image, xy):
    """Bilinear samples of image [H, W, C] at continuous pixel coordinates xy [n, 2]."""
    coords = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]
    return np.stack(
        [
            ndimage.map_coordinates(image[..., c].astype(float), coords, order=1, mode="nearest")
            for c in range(image.shape[-1])
        ],
        -1,
    )


def test_depth_labels_and_disparity(clip):
    _, gt, summary = clip
    depth, labels, disp = gt["depth_m"], gt["labels"], gt["disparity_px"]
    t, size = CONFIG.num_frames, CONFIG.gt_size_px
    assert depth.shape == (t, size, size) and depth.dtype == np.float32
    sky = labels == ADE20K["sky"]
    assert np.array_equal(sky, ~np.isfinite(depth))
    assert 0.1 < sky.mean() < 0.4
    assert 0.9 < depth[~sky].min() < 1.3  # the pedestrian walking just ahead
    assert 17.0 < depth[~sky].max() <= 20.0  # the facade closing the street
    assert set(np.unique(labels)) == set(ADE20K.values())
    f_px = geometry.focal_length_px(60.0, size)
    np.testing.assert_allclose(disp[~sky], f_px * 0.063 / depth[~sky], rtol=5e-5)
    assert np.all(disp[sky] == 0)
    assert summary["depth_range_m"][0] == pytest.approx(depth[~sky].min(), rel=1e-4)


def test_track_keeps_its_colour(clip):
    _, gt, _ = clip
    q, xy, vis = gt["query_points_tyx"], gt["tracks_xy"], gt["visibles"]
    rgb = gt["rgb_left"]
    t_q = q[:, 0].astype(int)
    ref = np.zeros((len(q), 3))
    for t in range(CONFIG.num_frames):
        sel = t_q == t
        ref[sel] = _sample(rgb[t], q[sel][:, [2, 1]])
    diffs, shuffled = [], []
    perm = np.random.default_rng(0).permutation(len(q))
    for t in range(CONFIG.num_frames):
        sel = np.nonzero(vis[:, t] & (t_q != t))[0]
        col = _sample(rgb[t], xy[sel, t])
        diffs.append(np.abs(col - ref[sel]).mean(-1))
        shuffled.append(np.abs(col - ref[perm[sel]]).mean(-1))
    diffs, shuffled = np.concatenate(diffs), np.concatenate(shuffled)
    assert len(diffs) > 1000
    print(
        f"track colour change {diffs.mean():.2f} (median {np.median(diffs):.2f}), "
        f"shuffled {shuffled.mean():.2f} grey levels"
    )
    assert np.median(diffs) < 2.0 and diffs.mean() < 0.25 * shuffled.mean()


def test_disparity_warps_right_view_onto_left(clip):
    _, gt, _ = clip
    scene = CONFIG.build_scene()
    times = clip_times_s(gt["timestamps"])
    cams = rectified_cameras(scene, times, CONFIG.baseline_m)
    size = CONFIG.gt_size_px
    rays = geometry.perspective_pixel_rays(size, size, CONFIG.gt_hfov_deg)
    for t in (0, CONFIG.num_frames - 1):
        right = render_view(scene, times[t], cams[1, t], rays)
        left = gt["rgb_left"][t].astype(float)
        disp, depth = gt["disparity_px"][t], gt["depth_m"][t]
        rows, cols = np.mgrid[:size, :size].astype(float)
        warped = np.stack(
            [
                ndimage.map_coordinates(
                    right["rgb"][..., c].astype(float), [rows, cols - disp], order=1
                )
                for c in range(3)
            ],
            -1,
        )
        zero = right["rgb"].astype(float)
        src_col = np.round(cols - disp).astype(int)
        inside = (src_col >= 0) & (src_col < size) & np.isfinite(depth)
        r_depth = right["depth_m"][rows.astype(int), np.clip(src_col, 0, size - 1)]
        with np.errstate(invalid="ignore"):
            ok = inside & (np.abs(r_depth - depth) < 0.02 * depth)
        ok = ndimage.binary_erosion(ok, iterations=1)
        err = np.abs(warped - left).mean(-1)[ok]
        err_zero = np.abs(zero - left).mean(-1)[ok]
        print(
            f"frame {t}: warp error mean {err.mean():.2f} median {np.median(err):.2f}, "
            f"zero disparity {err_zero.mean():.2f} / {np.median(err_zero):.2f} "
            f"on {ok.mean():.0%} of pixels"
        )
        assert ok.mean() > 0.5
        assert np.median(err) < 1.5 and err.mean() < 0.3 * err_zero.mean()


def test_dataset_npz_round_trip_and_video(clip):
    paths, gt, summary = clip
    data = sio.load_dataset_npz(paths.npz)
    t = CONFIG.num_frames
    np.testing.assert_array_equal(data["timestamps"], 66667 + np.round(np.arange(t) * 1e6 / 30))
    np.testing.assert_allclose(data["camera2world"], gt["camera2world"])
    assert geometry.is_rotation(data["camera2world"][..., :3])
    np.testing.assert_allclose(data["rectified2rig"], CONFIG.rectified2rig)
    np.testing.assert_array_equal(data["fov_bounds"], CONFIG.fov_bounds_deg)
    vis = gt["visibles"]
    track3d = data["track3d"]
    assert track3d.shape == gt["tracks3d_world"].shape
    np.testing.assert_allclose(track3d[vis], gt["tracks3d_world"][vis], atol=1e-5)
    assert np.all(np.isnan(track3d[~vis]))
    info = videoio.probe_video(paths.raw_video)
    assert (info.width, info.height) == (2 * CONFIG.eye_size_px, CONFIG.eye_size_px)
    video = videoio.read_video(paths.raw_video)
    assert len(video) == 2 + t + CONFIG.trailing_frames == summary["video_frames"]


def _psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_raw_eyes_rectify_onto_the_ground_truth_view(clip):
    """Remapping the raw left eye through rectified2rig gives rgb_left; without it, it does not."""
    paths, gt, _ = clip
    video = videoio.read_video(paths.raw_video)
    eye = CONFIG.eye_size_px
    size = CONFIG.gt_size_px
    for rig, expect_good in ((CONFIG.rectified2rig[0], True), (np.eye(3), False)):
        mx, my = geometry.perspective_to_equirect_map(
            (eye, eye), CONFIG.fov_bounds_deg, size, size, CONFIG.gt_hfov_deg, rig
        )
        psnr = [
            _psnr(cv2.remap(video[2 + t][:, :eye], mx, my, cv2.INTER_LINEAR), gt["rgb_left"][t])
            for t in range(CONFIG.num_frames)
        ]
        print(f"rectified={expect_good}: PSNR {min(psnr):.1f}-{max(psnr):.1f} dB")
        assert (min(psnr) > 27.0) if expect_good else (max(psnr) < 22.0)
    # The right eye rectifies onto a render of the right camera (at +baseline along x).
    scene = CONFIG.build_scene()
    cams = rectified_cameras(scene, clip_times_s(gt["timestamps"]), CONFIG.baseline_m)
    rays = geometry.perspective_pixel_rays(size, size, CONFIG.gt_hfov_deg)
    right_truth = render_view(scene, 0.0, cams[1, 0], rays)["rgb"]
    mx, my = geometry.perspective_to_equirect_map(
        (eye, eye), CONFIG.fov_bounds_deg, size, size, CONFIG.gt_hfov_deg, CONFIG.rectified2rig[1]
    )
    right_psnr = _psnr(cv2.remap(video[2][:, eye:], mx, my, cv2.INTER_LINEAR), right_truth)
    print(f"right eye PSNR {right_psnr:.1f} dB")
    assert right_psnr > 27.0
    # The frame just before the clip is a different image: frame selection matters.
    mx, my = geometry.perspective_to_equirect_map(
        (eye, eye), CONFIG.fov_bounds_deg, size, size, CONFIG.gt_hfov_deg, CONFIG.rectified2rig[0]
    )
    assert _psnr(cv2.remap(video[1][:, :eye], mx, my, cv2.INTER_LINEAR), gt["rgb_left"][0]) < 30.0


def test_oracle_reproduces_stored_tracks(clip):
    paths, gt, _ = clip
    oracle = SyntheticOracle.from_gt_file(paths.gt)
    out = oracle.tracks_for_queries(gt["query_points_tyx"])
    np.testing.assert_array_equal(out["tracks_xy"], gt["tracks_xy"])
    np.testing.assert_array_equal(out["visibles"], gt["visibles"])
    np.testing.assert_array_equal(out["tracks3d_world"], gt["tracks3d_world"])
    np.testing.assert_array_equal(out["is_dynamic"], gt["is_dynamic"])
    assert 0.1 < gt["is_dynamic"].mean() < 0.5
    # Occlusion is exercised: some in-view points are hidden.
    size = CONFIG.gt_size_px
    x, y = gt["tracks_xy"][..., 0], gt["tracks_xy"][..., 1]
    in_view = (x >= 0.5) & (y >= 0.5) & (x < size - 0.5) & (y < size - 0.5)
    assert 0 < np.sum(in_view & ~gt["visibles"]) < 0.2 * in_view.sum()


def test_oracle_known_values(clip):
    paths, gt, _ = clip
    oracle = SyntheticOracle.from_gt_file(paths.gt)
    q = gt["query_points_tyx"]
    t_q = q[:, 0].astype(int)
    rows = np.arange(len(q))
    # A query's 3D point projects back onto its query pixel, visible, in its query frame.
    np.testing.assert_allclose(gt["tracks_xy"][rows, t_q], q[:, [2, 1]], atol=1e-3)
    assert np.all(gt["visibles"][rows, t_q])
    # Static points stay put; points on the street stay on the plane y = eye height.
    static = ~gt["is_dynamic"]
    spread = np.ptp(gt["tracks3d_world"][static], axis=1).max()
    assert spread < 1e-9
    on_ground = gt["query_object_id"] == 0
    assert on_ground.sum() > 20
    np.testing.assert_allclose(
        gt["tracks3d_world"][on_ground][..., 1], CONFIG.eye_height_m, atol=1e-9
    )
    moved = np.linalg.norm(
        gt["tracks3d_world"][gt["is_dynamic"], -1] - gt["tracks3d_world"][gt["is_dynamic"], 0],
        axis=-1,
    )
    assert np.all(moved > 0.02)
    # Visible track depths agree with the rendered depth map (median over the points).
    vis = gt["visibles"]
    n, t = np.nonzero(vis)
    xy = gt["tracks_xy"][n, t]
    px = np.clip(np.floor(xy).astype(int), 0, CONFIG.gt_size_px - 1)
    rel = np.abs(gt["depth_m"][t, px[:, 1], px[:, 0]] / gt["depth_track_m"][n, t] - 1)
    assert np.median(rel) < 5e-3
    # A sky query gives NaN and is never visible.
    sky_t, sky_y, sky_x = np.argwhere(gt["labels"] == ADE20K["sky"])[0]
    out = oracle.tracks_for_queries(np.array([[sky_t, sky_y + 0.5, sky_x + 0.5]]))
    assert np.all(np.isnan(out["tracks3d_world"])) and not out["visibles"].any()


def test_ray_caster_known_values():
    """Hand-computed hits: the street below the eye, the sky above, the ball's near side."""
    scene = build_scene(0, eye_height_m=1.6)
    ball = [p.name for p in scene.primitives].index("ball")
    _, centre = scene.primitives[ball].motion.pose(np.array([0.5]))
    origins = np.array([[0.3, -0.2, 2.0], [0.3, -0.2, 2.0], [0.0, 0.0, 0.0]])
    to_ball = centre[0] - origins[2]
    dirs = np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.1], to_ball])
    out = trace(scene, 0.5, origins, dirs)
    np.testing.assert_allclose(out["dist_m"][0], 1.8, atol=1e-12)  # down to the plane y = 1.6
    assert out["obj"][0] == 0 and out["labels"][0] == ADE20K["road"]
    np.testing.assert_allclose(out["p_local"][0], [0.3, -0.5, 2.0 - 20.0], atol=1e-12)
    assert np.isinf(out["dist_m"][1]) and out["labels"][1] == ADE20K["sky"]
    assert np.all(np.isnan(out["p_local"][1]))
    np.testing.assert_allclose(out["dist_m"][2], np.linalg.norm(to_ball) - 0.3, atol=1e-12)
    assert out["obj"][2] == ball and out["labels"][2] == ADE20K["ball"]
    np.testing.assert_allclose(np.linalg.norm(out["p_local"][2]), 0.3, atol=1e-12)
    # float32 tiled images agree with the float64 caster on the first hit.
    rays = geometry.perspective_pixel_rays(48, 64, 60.0)
    cam = scene.camera.camera_to_world(np.array([0.5]))[0]
    image = render_view(scene, 0.5, cam, rays)
    ref = trace(scene, 0.5, cam[:, 3], rays @ cam[:, :3].T)
    assert np.mean(image["obj"] == ref["obj"]) > 0.995
    fin = np.isfinite(ref["dist_m"])
    np.testing.assert_allclose(image["dist_m"][fin], ref["dist_m"][fin], rtol=1e-4)


def test_cli_prints_paths(tmp_path, capsys):
    argv = [
        "--vid=clitest_0",
        "--num_frames=2",
        "--eye_size=64",
        f"--npz_folder={tmp_path / 'npz'}",
        f"--raw_video_folder={tmp_path / 'raw'}",
        f"--gt_folder={tmp_path / 'gt'}",
    ]
    assert script.run_cli(script.main, argv) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "gt" / "clitest_0.npz") in out
    assert (tmp_path / "raw" / "clitest.mp4").is_file()
    assert script.run_cli(script.main, ["--vid=no_timestamp"]) == 2


def test_oracle_refuses_files_that_are_not_synthetic_ground_truth(tmp_path):
    """A corrupt file, an npz without the oracle's fields, or a foreign config: InputError."""
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz at all")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, depth_m=np.zeros((2, 4, 4), np.float32))
    bad_config = tmp_path / "bad_config.npz"
    np.savez(bad_config, config_json=np.array('{"unknown_field": 1}'), timestamps=np.arange(3))
    for path in (garbage, foreign, bad_config):
        with pytest.raises(sio.InputError, match="not a synthetic ground-truth file"):
            SyntheticOracle.from_gt_file(path)
    with pytest.raises(sio.InputError, match="missing ground-truth file"):
        SyntheticOracle.from_gt_file(tmp_path / "absent.npz")


def test_photo_texture_keeps_its_detail_at_one_texel_per_screen_pixel():
    """Standard mip-mapping: a photo seen at one texel per screen pixel is sampled from the
    full-resolution level (fine detail kept); at four texels per pixel from a level 4x coarser."""
    import torch

    from stereo4d.synthetic.photos import photo_pyramid, sample_photo

    side, texel_m = 128, 0.01
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    uv_m = torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], axis=1) * texel_m)

    def detail(footprint_texels: float) -> float:
        footprint = torch.full((side * side,), footprint_texels * texel_m, dtype=torch.float64)
        grey = sample_photo("astronaut", uv_m, texel_m, (0.0, 0.0), footprint).mean(1)
        return float(np.std(cv2.Laplacian(grey.numpy().reshape(side, side), cv2.CV_64F)))

    full = photo_pyramid("astronaut")[0][:side, :side].mean(-1).numpy()
    original = float(np.std(cv2.Laplacian(full, cv2.CV_64F)))
    assert detail(1.0) == pytest.approx(original, rel=1e-6)  # level 0, exactly the photo
    assert detail(4.0) < 0.3 * original  # band-limited where a pixel covers 4 texels
