"""scripts/prepare_data.py on real photos (R-Net from a test-built graph), bad inputs, resume,
the original's mask files and CelebA_RGBA.bin; the default skin mask."""

import os
import shutil

import numpy as np
import PIL.Image
import pytest

from deep3dface import align
from gcn_face import prepare, records, skin_mask
from tests import slim_rnet_graph
from tests.scripts_run import assert_one_line_error, run_script


@pytest.fixture(scope="module")
def rnet_path(tmp_path_factory):
  return slim_rnet_graph.write(str(tmp_path_factory.mktemp("rnet") / "FaceReconModel.pb"))


@pytest.fixture(scope="module")
def photo_dir(deep3d_photos, tmp_path_factory):
  """4 real photos, a truncated JPEG and an image without a face."""
  directory = tmp_path_factory.mktemp("photos")
  for path in deep3d_photos[:4]:
    shutil.copy(path, directory)
  with open(deep3d_photos[4], "rb") as f:
    data = f.read()
  (directory / "truncated.jpg").write_bytes(data[:len(data) // 3])
  PIL.Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(directory / "blank.png")
  return str(directory)


def _prepare(photo_dir, output, rnet_path, *args):
  return run_script("prepare_data", f"--input_dir={photo_dir}", f"--output_dir={output}",
                    f"--rnet_path={rnet_path}", "--per_shard=2", "--workers=2", *args)


def test_photos_to_records_and_resume(photo_dir, rnet_path, tmp_path):
  output = str(tmp_path / "prepared")
  result = _prepare(photo_dir, output, rnet_path)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = records.read_manifest(output)
  total = sum(manifest["splits"][s]["count"] for s in manifest["splits"])
  assert total == 4
  reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
  assert set(reasons) == {"truncated.jpg", "blank.png"}
  assert "no face found" in reasons["blank.png"] and "truncated" in reasons["truncated.jpg"]
  faces = list(records.dataset(output, "train", has_landmarks68=True))
  for face in faces:
    assert face["image"].shape == (224, 224, 3) and 0.05 < float(np.mean(face["mask"])) < 0.6
    assert np.all(np.isfinite(face["coeff"]))
    # The 5 points are the 68's groups, as alignment uses them.
    np.testing.assert_allclose(face["landmarks"], align.five_from_68(face["landmarks68"].numpy()),
                               atol=1e-3)
  # Running again continues after the complete shards: nothing is duplicated or lost.
  again = _prepare(photo_dir, output, rnet_path)
  assert again.returncode == 0, again.stderr[-3000:]
  manifest = records.read_manifest(output)
  assert sum(manifest["splits"][s]["count"] for s in manifest["splits"]) == 4
  assert len(manifest["skipped"]) == 2


def test_original_mask_files(photo_dir, rnet_path, deep3d_photos, tmp_path):
  """A mask PNG whose alpha is 255 on the left half of the photo, aligned like the photo."""
  masks = tmp_path / "masks"
  masks.mkdir()
  for path in deep3d_photos[:4]:
    w, h = PIL.Image.open(path).size
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, : w // 2] = 255
    rgba = np.dstack([np.zeros((h, w, 3), np.uint8), alpha])
    name = os.path.splitext(os.path.basename(path))[0] + ".png"
    PIL.Image.fromarray(rgba).save(masks / name)
  output = str(tmp_path / "prepared")
  result = _prepare(photo_dir, output, rnet_path, f"--mask_dir={masks}")
  assert result.returncode == 0, result.stderr[-3000:]
  for face in records.dataset(output, "train"):
    mask = face["mask"].numpy()
    assert mask[:, :60].mean() > 0.9 and mask[:, -60:].mean() < 0.1


def test_celeba_rgba(deep3d_photos, rnet_path, tmp_path):
  crops = []
  for path in deep3d_photos[:3]:
    image = align.load_image(path)
    aligned = align.align_image(image, align.load_landmarks_txt(os.path.splitext(path)[0] + ".txt"))
    rgba = np.dstack([aligned.image / 127.5 - 1.0, np.ones((224, 224))]).astype("<f4")
    crops.append(rgba)
  path = tmp_path / "CelebA_RGBA.bin"
  path.write_bytes(np.stack(crops).tobytes())
  assert prepare.celeba_rgba_count(str(path)) == 3
  rgb, mask = prepare.read_celeba_rgba(str(path), 1)
  np.testing.assert_allclose(rgb, np.clip((crops[1][..., :3] + 1) * 127.5 + 0.5, 0, 255).astype(
      np.uint8))
  assert mask.all()
  output = str(tmp_path / "prepared")
  result = run_script("prepare_data", f"--celeba_rgba={path}", f"--output_dir={output}",
                      f"--rnet_path={rnet_path}", "--workers=1")
  assert result.returncode == 0, result.stderr[-3000:]
  assert records.split_files(output, "train")[1] == 3
  (tmp_path / "short.bin").write_bytes(np.stack(crops).tobytes()[:-5])
  with pytest.raises(prepare.PrepareError, match="not a whole number"):
    prepare.celeba_rgba_count(str(tmp_path / "short.bin"))


@pytest.mark.parametrize("args,message", [
    (["--input_dir=/nonexistent"], "/nonexistent: no such folder"),
    ([], "exactly one of --input_dir and --celeba_rgba"),
    (["--input_dir=.", "--segmenter=nomodule"], "segmenter must be one of"),
])
def test_bad_arguments(args, message):
  assert_one_line_error(run_script("prepare_data", *args), message)


def test_without_rnet_the_coefficients_are_fitted(photo_dir, synthetic_model, tmp_path):
  """No R-Net: the fit gives each face coefficients whose landmarks land on the detected ones;
  a second run adds nothing."""
  from deep3dface import face_model, fitting  # pylint: disable=g-import-not-at-top
  output = str(tmp_path / "fitted")
  args = [f"--input_dir={photo_dir}", f"--output_dir={output}",
          f"--rnet_path={tmp_path / 'none.pb'}", "--face_model=synthetic_grid", "--per_shard=2",
          "--workers=2", "--batch_size=3", "--landmark_steps=80", "--photo_steps=10"]
  result = run_script("prepare_data", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "none.pb absent: the coefficients are fitted" in result.stderr
  manifest = records.read_manifest(output)
  assert manifest["info"]["coefficients"] == "fit"
  assert manifest["info"]["model"] == "synthetic_grid"
  assert manifest["info"]["num_vertices"] == synthetic_model.num_vertices
  assert sum(manifest["splits"][s]["count"] for s in manifest["splits"]) == 4
  model = face_model.FaceModel(synthetic_model)
  for face in records.dataset(output, "train", has_landmarks68=True):
    coeff = face["coeff"].numpy()[None]
    assert np.all(np.isfinite(coeff)) and np.abs(coeff).max() > 0.01
    fitted = model(coeff).landmarks.numpy()[0]
    target = fitting.to_model_landmarks(face["landmarks68"].numpy())
    assert np.linalg.norm(fitted - target, axis=-1).mean() < 6.0  # pixels, 224 crop
  again = run_script("prepare_data", *args)
  assert again.returncode == 0, again.stderr[-3000:]
  manifest = records.read_manifest(output)
  assert sum(manifest["splits"][s]["count"] for s in manifest["splits"]) == 4


def test_default_skin_mask(deep3d_photos):
  from deep3dface import landmarks  # pylint: disable=g-import-not-at-top
  image = align.load_image(deep3d_photos[1])
  face = landmarks.LandmarkDetector().detect(image)[0]
  mask = skin_mask.landmark_colour_mask(image, face.landmarks)
  hull = skin_mask.hull_mask(image, face.landmarks)
  assert mask.sum() > 0.5 * hull.sum() and not np.any(mask & ~hull)
  for group in skin_mask.EYES:  # eye centres are not skin
    x, y = np.round(face.landmarks[list(group)].mean(0)).astype(int)
    assert not mask[y, x]
  x, y = np.round(face.landmarks[[1, 31, 28]].mean(0)).astype(int)  # a cheek is
  assert mask[y, x]
  assert skin_mask.load_segmenter("gcn_face.skin_mask:hull_mask") is skin_mask.hull_mask
