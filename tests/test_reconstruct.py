"""Fitting, reconstruction and evaluation: analysis-by-synthesis on a synthetic face, three real
photos reconstructed with the synthetic model (files re-read with trimesh), bad inputs, resume,
the evaluation table; metrics against scikit-image; the PLY writer."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
import skimage.metrics
import tensorflow as tf
import trimesh

from deep3dface import constants, face_model, fitting
from gcn_face import mesh_io, metrics, refinement, synthetic_data
from tests.scripts_run import ROOT, assert_one_line_error, run_script

FAST_FIT = ["--landmark_steps=60", "--photo_steps=20"]


def test_fitting_finds_a_synthetic_face(synthetic_model):
  face = synthetic_data.SyntheticRenderer(synthetic_model).render([5])[0]  # yaw 0.40 rad
  model = face_model.FaceModel(synthetic_model)
  fitter = fitting.Fitter(model, refinement.skin_indices(synthetic_model),
                          fitting.FitConfig(landmark_steps=100, photo_steps=40))
  image = face["image"][None].astype(np.float32)
  lm = face["landmarks68"][None]
  mask = face["mask"][None].astype(np.float32)
  coeff, terms = fitter.fit(image, lm, mask)
  start = fitter.terms(tf.zeros([1, 257]), tf.constant(image), tf.constant(mask),
                       tf.constant(fitting.to_model_landmarks(lm)))
  fitted = model(tf.constant(coeff)).landmarks.numpy()[0]
  error = np.linalg.norm(fitted - fitting.to_model_landmarks(lm)[0], axis=-1).mean()
  assert error < 4.0, error  # pixels, on a face ~120 pixels wide
  assert terms["landmark"][0] < 0.4 * float(start["landmark"][0])
  assert terms["photo"][0] < 0.6 * float(start["photo"][0])
  truth = face["coeff"][constants.COEFF_SLICES["angles"]]
  np.testing.assert_allclose(coeff[0, constants.COEFF_SLICES["angles"]], truth, atol=0.08)


def test_keypoint_landmarks_equal_the_formed_ones(synthetic_model):
  model = face_model.FaceModel(synthetic_model)
  coeff = tf.random.stateless_normal([3, 257], [1, 2]) * 0.3
  np.testing.assert_allclose(fitting.Fitter(model).keypoint_landmarks(coeff),
                             model(coeff).landmarks, atol=1e-3)


def test_fit_rejects_bad_inputs(synthetic_model):
  fitter = fitting.Fitter(face_model.FaceModel(synthetic_model))
  image = np.zeros([1, 224, 224, 3], np.float32)
  with pytest.raises(ValueError, match="landmarks68 must be"):
    fitter.fit(image, np.zeros([1, 5, 2]))
  with pytest.raises(ValueError, match="landmarks68 contain NaN"):
    fitter.fit(image, np.full([1, 68, 2], np.nan))
  with pytest.raises(ValueError, match="images must be on the"):
    fitter.fit(image + 300, np.zeros([1, 68, 2]))


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_scikit_image(seed):
  rng = np.random.default_rng(seed)
  a = rng.uniform(0, 255, (48, 40, 3))
  b = np.clip(a + rng.normal(0, 15, a.shape), 0, 255)
  ssim = skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=255,
                                               channel_axis=-1)
  # scikit-image averages the map without its 5-pixel border.
  assert metrics.ssim_map(a, b)[5:-5, 5:-5].mean() == pytest.approx(ssim, abs=1e-12)
  full = np.ones(a.shape[:2])
  assert metrics.masked_psnr(a, b, full) == pytest.approx(
      skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)
  region = np.zeros(a.shape[:2])
  region[10:30, 5:20] = 1
  inside = (slice(10, 30), slice(5, 20))
  assert metrics.masked_l1(a, b, region) == pytest.approx(np.abs(a - b)[inside].mean())
  assert metrics.masked_psnr(a, b, region) == pytest.approx(
      skimage.metrics.peak_signal_noise_ratio(a[inside], b[inside], data_range=255))
  assert np.isnan(metrics.masked_ssim(a, b, np.zeros(a.shape[:2])))


def test_ply_writer_read_by_trimesh(tmp_path):
  rng = np.random.default_rng(0)
  vertices, faces = rng.normal(size=(6, 3)), np.array([[0, 1, 2], [2, 3, 4], [4, 5, 0]])
  colors, normals = rng.uniform(0, 255, (6, 3)), rng.normal(size=(6, 3))
  path = str(tmp_path / "m.ply")
  mesh_io.write_ply(path, vertices, faces, colors, normals)
  mesh = trimesh.load(path, process=False)
  np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)
  np.testing.assert_array_equal(mesh.faces, faces)
  np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], np.round(colors))


def _read_obj_colors(path):
  """v lines' trailing colours (floats in [0, 1]) on 0-255, parsed independently of mesh_io."""
  with open(path) as f:
    colors = np.array([[float(t) for t in line.split()[4:7]] for line in f
                       if line.startswith("v ")])
  assert colors.min() >= 0.0 and colors.max() <= 1.0
  return colors * 255.0


def test_reconstruct_three_photos(deep3d_photos, trained, tmp_path):
  _, checkpoint = trained
  photos = deep3d_photos[:3]
  corrupt = tmp_path / "corrupt.jpg"
  corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
  blank = tmp_path / "blank.png"
  PIL.Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
  listing = tmp_path / "list.txt"
  listing.write_text("\n".join([*photos, str(corrupt), str(blank)]) + "\n")
  out = tmp_path / "out"
  args = [f"--input={listing}", f"--output_dir={out}", f"--gcn_checkpoint={checkpoint}",
          *FAST_FIT]
  result = run_script("reconstruct", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "3 reconstructed, 0 already done, 2 failed (corrupt, blank)" in result.stderr
  assert "corrupt.jpg" in result.stderr and "blank.png: no face found" in result.stderr
  assert "Traceback" not in result.stderr
  for photo in photos:
    folder = out / os.path.splitext(os.path.basename(photo))[0]
    info = json.loads((folder / "result.json").read_text())
    assert info["coefficients"] == "fit" and info["refined"] and info["refined_per_photo"]
    assert info["textures"] == ["coarse", "fine", "refined"]
    assert set(info["files"]) <= set(os.listdir(folder))
    coarse = trimesh.load(str(folder / "coarse.obj"), process=False)
    fine = trimesh.load(str(folder / "fine.obj"), process=False)
    ply = trimesh.load(str(folder / "mesh.ply"), process=False)
    assert coarse.vertices.shape == (3315, 3) and len(coarse.faces) > 6000
    np.testing.assert_allclose(ply.vertices, coarse.vertices, atol=1e-5)
    np.testing.assert_array_equal(ply.faces, fine.faces)
    refined_colors = _read_obj_colors(folder / "refined.obj")  # mesh.ply: the most refined
    np.testing.assert_allclose(ply.visual.vertex_colors[:, :3], refined_colors, atol=0.51)
    # trimesh reads the OBJ's colours as the PLY's (integer OBJ colours read as white).
    np.testing.assert_allclose(
        trimesh.load(str(folder / "refined.obj"), process=False).visual.vertex_colors[:, :3],
        ply.visual.vertex_colors[:, :3], atol=1)
    glb = trimesh.load(str(folder / "mesh.glb"))
    assert sorted(glb.geometry) == ["coarse", "fine", "refined"]
    assert {"turntable.gif", "viewer.html", "mesh.glb"} <= set(info["files"])
    with PIL.Image.open(folder / "turntable.gif") as gif:
      assert gif.n_frames >= 24 and gif.size == (2 * 224, 224 + 18)
    assert np.abs(refined_colors - _read_obj_colors(folder / "fine.obj")).mean() > 1.0
    assert _read_obj_colors(folder / "coarse.obj").std() > 1.0
    with PIL.Image.open(photo) as original, PIL.Image.open(folder / "overlay.png") as overlay:
      assert overlay.size == original.size
    with PIL.Image.open(folder / "strip.png") as strip:
      assert strip.size == (5 * 224, 224 + 18)  # photo | coarse | fine | refined | overlay
    for name in ("skin_mask", "holdout_mask", "render_coarse", "render_fine", "render_refined"):
      with PIL.Image.open(folder / f"{name}.png") as image:
        assert image.size == (224, 224), name
    skin = np.asarray(PIL.Image.open(folder / "skin_mask.png")) > 127
    held = np.asarray(PIL.Image.open(folder / "holdout_mask.png")) > 127
    render = np.asarray(PIL.Image.open(folder / "render_coarse.png"), np.float64)
    crop = np.asarray(PIL.Image.open(folder / "crop.png"), np.float64)
    assert not np.any(held & ~skin) and 0.15 < held.sum() / skin.sum() < 0.25
    # The files recompute result.json's table.
    assert info["l1"]["coarse"]["region"] == pytest.approx(
        metrics.masked_l1(render, crop, skin), abs=0.02)
    assert info["l1"]["coarse"]["heldout"] == pytest.approx(
        metrics.masked_l1(render, crop, held), abs=0.02)
    assert info["heldout_pixels"] == held.sum() and info["region_pixels"] == skin.sum()
    assert info["l1"]["refined"]["heldout"] < info["l1"]["coarse"]["heldout"]
    assert np.load(folder / "coeff.npy").shape == (257,)
  again = run_script("reconstruct", *args)
  assert again.returncode == 0 and "0 reconstructed, 3 already done, 2 failed" in again.stderr
  nothing = run_script("reconstruct", f"--input={blank}", f"--output_dir={out}", *FAST_FIT)
  assert_one_line_error(nothing, "no photo could be reconstructed")


def test_overlay_is_rendered_at_the_photo_resolution(deep3d_photos, synthetic_model):
  """render_in_photo at the photo's pixels equals the 224 x 224 render where the crop's pixel
  centres land (the alignment's inverse), and its edges are photo pixels, not crop pixels."""
  from gcn_face import reconstruction  # pylint: disable=g-import-not-at-top
  rec = reconstruction.Reconstructor(synthetic_model, fit_config=fitting.FitConfig(60, 10),
                                     holdout_fraction=0.0)
  photo = next(p for p in deep3d_photos if "015309" in p)  # 900 x 1354: ~6 photo px a crop px
  face = rec.reconstruct(photo, "photo")
  overlay = reconstruction.render_in_photo(face, face.colors["coarse"], rec.triangles)
  rows, cols = np.mgrid[0:224, 0:224]
  crop_points = np.stack([cols, rows], -1).astype(np.float64)
  photo_points = face.transform.to_original(crop_points)
  h0, w0 = face.photo.shape[:2]
  nearest = np.clip(np.round(photo_points).astype(int), 0, [w0 - 1, h0 - 1])
  inside = scipy.ndimage.binary_erosion(face.alpha > 0.5, iterations=3)
  sampled = overlay[nearest[..., 1], nearest[..., 0]].astype(np.float64)
  difference = np.abs(sampled - face.renders["coarse"])[inside]
  assert difference.mean() < 2.0, difference.mean()
  changed = np.any(overlay != face.photo, axis=-1)
  x0, y0, x1, y1 = reconstruction.photo_box(face.clip_vertices, face.transform)
  assert not changed[:y0].any() and not changed[y1:].any()
  assert changed[y0:y1, x0:x1].mean() > 0.3
  scale = face.transform.original_size[0] / face.transform.resized_size[0]
  assert scale > 4
  # The coverage edge steps by photo pixels, not by crop pixels (an upscaled render's edge
  # moves by ~scale pixels whenever it moves).
  covered = changed[y0:y1, x0:x1]
  left_edge = np.array([np.argmax(r) for r in covered if r.any()])
  moves = np.abs(np.diff(left_edge))
  assert np.median(moves[moves > 0]) < scale / 2
  # overlay.png pastes the face only within the landmarks' face outline (soft edge).
  from gcn_face import skin_mask  # pylint: disable=g-import-not-at-top
  pasted = reconstruction.overlay(face, rec.triangles)
  outline = face.transform.to_original(skin_mask.face_outline(face.landmarks68))
  near = scipy.ndimage.binary_dilation(skin_mask.polygon_mask(face.photo.shape[:2], outline),
                                       iterations=int(4 * scale))
  moved = np.abs(pasted.astype(int) - face.photo).max(-1) > 1
  assert not moved[~near].any()
  assert moved[near].mean() > 0.5


def test_all_faces_of_a_photo(deep3d_photos, tmp_path):
  with PIL.Image.open(deep3d_photos[0]) as a, PIL.Image.open(deep3d_photos[1]) as b:
    a, b = a.convert("RGB"), b.convert("RGB").resize((a.width * 3 // 4, a.height * 3 // 4))
    pair = PIL.Image.new("RGB", (a.width + b.width, a.height))
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width, 0))
  pair.save(tmp_path / "pair.png")
  out = tmp_path / "out"
  result = run_script("reconstruct", f"--input={tmp_path / 'pair.png'}", f"--output_dir={out}",
                      "--all_faces", "--gcn_checkpoint=", "--face_model=synthetic_grid", *FAST_FIT)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["pair", "pair_face1", "summary.csv", "summary.md"]
  assert "| pair_face1 |" in (out / "summary.md").read_text()
  for name in ("pair", "pair_face1"):
    info = json.loads((out / name / "result.json").read_text())
    assert info["name"] == name and not info["refined"]


@pytest.mark.parametrize("args,message", [
    (["--input=/nonexistent/photo.jpg"], "/nonexistent/photo.jpg: no such file or folder"),
    (["--input=x.jpg", "--rnet_path=/nonexistent/FaceReconModel.pb"],
     "--rnet_path=/nonexistent/FaceReconModel.pb: not found. checkpoints/FaceReconModel.pb"),
    (["--input=x.jpg", "--gcn_checkpoint=/nonexistent"], "trained GCN texture refinement"),
])
def test_reconstruct_errors(args, message, tmp_path):
  (tmp_path / "x.jpg").write_bytes(b"")
  args = [a.replace("x.jpg", str(tmp_path / "x.jpg")) for a in args]
  assert_one_line_error(run_script("reconstruct", *args), message)


def test_evaluate_table(trained, tmp_path):
  data, checkpoint = trained
  out = tmp_path / "eval"
  result = run_script("evaluate", f"--data_dir={data}", f"--checkpoints={checkpoint},{checkpoint}",
                      "--labels=a,b", f"--output_dir={out}", "--batch_size=2", "--examples=2")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["texture"] for r in rows] == ["coarse 3DMM (PCA)", "GCN (a)", "GCN (b)"]
  assert set(rows[0]) == {"texture", "l1", "psnr", "ssim", "identity", "albedo_l1"}
  for row in rows:
    assert 0 < float(row["l1"]) < 255 and 0 < float(row["ssim"]) <= 1
    assert 0 < float(row["albedo_l1"]) < 255
  assert rows[1] == dict(rows[2], texture="GCN (a)")  # same checkpoint, same numbers
  assert "| coarse 3DMM (PCA) |" in (out / "results.md").read_text()
  with PIL.Image.open(out / "examples.png") as grid:
    assert grid.size == (4 * 224, 2 * 224 + 18)  # a label row on top
    labels = np.asarray(grid)[:18]
    assert labels.min() < 128 and np.median(labels) == 255  # dark text on white
  bad = run_script("evaluate", f"--data_dir={data}", f"--checkpoints={tmp_path}",
                   f"--output_dir={out}")
  assert_one_line_error(bad, "train_config.json")


def test_checkpoint_folder_moves_with_its_sampling_cache(trained, tmp_path):
  """train_config.json stores the sampling cache relative to the checkpoint folder: the two
  copied elsewhere load from the copy (nothing rebuilt, nothing read from the old place)."""
  data, checkpoint = trained
  root = os.path.dirname(checkpoint)
  with open(os.path.join(checkpoint, "train_config.json")) as f:
    config = json.load(f)
  assert config["sampling_dir"] == os.path.join("..", "sampling")
  moved = tmp_path / "moved"
  for name in ("gcn", "sampling"):
    shutil.copytree(os.path.join(root, name), moved / name)
  result = run_script("evaluate", f"--data_dir={data}", f"--checkpoints={moved / 'gcn'}",
                      f"--output_dir={tmp_path / 'eval'}", "--batch_size=2", "--examples=0")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"mesh sampling: loaded {moved / 'sampling'}" in result.stderr
  assert "building it" not in result.stderr


def test_missing_compiled_ops_are_one_line_at_start(tmp_path):
  env = dict(os.environ, RENDERER_OPS_LIBRARY=str(tmp_path / "gone.so"))
  for module, args in (("reconstruct", ["--input=x.jpg"]), ("train", ["--data_dir=x"]),
                       ("evaluate", []), ("make_synthetic", [])):
    result = subprocess.run([sys.executable, "-m", f"scripts.{module}", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert_one_line_error(result, "RENDERER_OPS_LIBRARY=")


def test_binary_input_list_names_the_file(tmp_path):
  listing = tmp_path / "photos.txt"
  listing.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
  assert_one_line_error(run_script("reconstruct", f"--input={listing}"),
                        f"{listing}: not a UTF-8 text file")
