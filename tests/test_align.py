"""5-point alignment (SPEC 2.1) on the 25 real photos, its inverse, and bad inputs."""

import os

import numpy as np
import PIL.Image
import pytest

from deep3dface import align


def independent_crop_geometry(width, height, points, standard, unit=102.0, size=224):
  """SPEC 2.1 in numpy with a pseudo-inverse instead of lstsq."""
  up = np.stack([points[:, 0], height - 1 - points[:, 1]], 1)
  rows = []
  for (x, y, z) in standard:
    rows.append([x, y, z, 1, 0, 0, 0, 0])
    rows.append([0, 0, 0, 0, x, y, z, 1])
  k = np.linalg.pinv(np.array(rows)) @ up.reshape(-1)
  s = 0.5 * (np.linalg.norm(k[:3]) + np.linalg.norm(k[4:7]))
  w, h = int(width * unit / s), int(height * unit / s)
  left = int(w / 2 - size / 2 + (k[3] - width / 2) * unit / s)
  top = int(h / 2 - size / 2 + (height / 2 - k[7]) * unit / s)
  return s, (k[3], k[7]), (w, h), (left, top)


def test_real_photos_align_like_spec(deep3d_photos, standard_landmarks_path):
  standard = align.standard_five_points(standard_landmarks_path)
  np.testing.assert_allclose(standard, align.standard_five_points(), atol=1e-5)
  residuals = []
  for path in deep3d_photos:
    image = align.load_image(path)
    points = align.load_landmarks_txt(os.path.splitext(path)[0] + ".txt")
    out = align.align_image(image, points, standard)
    s, t, size, offset = independent_crop_geometry(image.shape[1], image.shape[0], points,
                                                   standard)
    tr = out.transform
    assert tr.resized_size == size and tr.offset == offset, path
    np.testing.assert_allclose([tr.scale, *tr.translation], [s, *t], rtol=1e-9)
    # The crop is the resized photo at the offset, zero outside it.
    resized = np.asarray(PIL.Image.fromarray(image).resize(size, PIL.Image.BICUBIC))
    padded = np.zeros((size[1] + 1000, size[0] + 1000, 3), np.uint8)
    padded[500:500 + size[1], 500:500 + size[0]] = resized
    expected = padded[500 + offset[1]:500 + offset[1] + 224, 500 + offset[0]:500 + offset[0] + 224]
    np.testing.assert_array_equal(out.image, expected)
    # The exact inverse round-trips, and Deep3D's landmark mapping agrees
    # with the exact geometry to within its rounding (< 2 px).
    crop_points = tr.to_crop(points)
    np.testing.assert_allclose(tr.to_original(crop_points), points, atol=1e-9)
    assert np.abs(crop_points - out.landmarks).max() < 2.0
    # Aligned points land near the standard targets (x right, y down in the
    # crop); only scale and translation are normalised, so head rotation stays.
    target = np.stack([112 + 102 * standard[:, 0], 111.5 - 102 * standard[:, 1]], 1)
    residuals.append(np.linalg.norm(crop_points - target, axis=1).mean())
  assert np.mean(residuals) < 12.0 and np.max(residuals) < 25.0  # measured: 9.3 / 13.7


def test_bilinear_variant_and_crop_size(deep3d_photos):
  path = deep3d_photos[0]
  image = align.load_image(path)
  points = align.load_landmarks_txt(os.path.splitext(path)[0] + ".txt")
  bicubic = align.align_image(image, points)
  bilinear = align.align_image(image, points, resample="bilinear")
  assert bicubic.transform == bilinear.transform
  assert 0 < np.abs(bicubic.image.astype(int) - bilinear.image).mean() < 10
  small = align.align_image(image, points, crop_size=112)
  assert small.image.shape == (112, 112, 3)
  np.testing.assert_allclose(small.landmarks, bicubic.landmarks / 2, atol=1.5)


def test_five_from_68_uses_eye_contour_means():
  lm = np.arange(136, dtype=np.float64).reshape(68, 2)
  five = align.five_from_68(lm)
  np.testing.assert_allclose(five[0], lm[36:42].mean(0))
  np.testing.assert_allclose(five[1], lm[42:48].mean(0))
  np.testing.assert_allclose(five[2:], lm[[30, 48, 54]])


@pytest.fixture
def face_photo(tmp_path):
  rng = np.random.default_rng(0)
  return rng.integers(0, 255, size=(120, 100, 3), dtype=np.uint8)


def test_image_formats_are_normalised_to_rgb8(tmp_path, face_photo):
  gray = tmp_path / "gray.png"
  PIL.Image.fromarray(face_photo[..., 0]).save(gray)
  assert align.load_image(str(gray)).shape == (120, 100, 3)
  rgba = tmp_path / "rgba.png"
  PIL.Image.fromarray(np.dstack([face_photo, np.full((120, 100), 7, np.uint8)])).save(rgba)
  np.testing.assert_array_equal(align.load_image(str(rgba)), face_photo)
  deep = tmp_path / "deep.png"
  PIL.Image.fromarray(face_photo[..., 1].astype(np.uint16) * 257).save(deep)
  np.testing.assert_array_equal(align.load_image(str(deep))[..., 0], face_photo[..., 1])
  rotated = tmp_path / "rotated.jpg"
  exif = PIL.Image.Exif()
  exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
  PIL.Image.fromarray(face_photo).save(rotated, exif=exif, quality=95)
  assert align.load_image(str(rotated)).shape == (100, 120, 3)


def test_bad_images_give_one_line(tmp_path, face_photo):
  truncated = tmp_path / "cut.jpg"
  PIL.Image.fromarray(face_photo).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:300])
  text = tmp_path / "text.jpg"
  text.write_text("not an image")
  tiny = tmp_path / "tiny.png"
  PIL.Image.fromarray(face_photo[:8, :8]).save(tiny)
  for path, message in [(truncated, "unreadable or truncated"), (text, "unreadable"),
                        (tiny, "smaller than 16x16"), (tmp_path / "none.png", "no such file")]:
    with pytest.raises(align.InputError, match=message) as info:
      align.load_image(str(path))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, message", [
    ("1 2\n3 4\n5 6\n7 8\n", "expected 5 lines of 'x y', got 4"),
    ("1 2\n3 4\n5 6\n7 8\n9 10\n11 12\n", "got 6"),
    ("1 2\n3 4\n5 x\n7 8\n9 10\n", "must be numbers"),
    ("1 2\n3 4\n5 nan\n7 8\n9 10\n", "NaN"),
    ("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", r"one value per line \(10 lines\)"),
    ("1\n2\n3\n4\n5\n", r"one value per line \(5 lines\)"),
    ("1,2\n3,4\n5,6\n7,8\n9,10\n", "separated by commas"),
    ("1, 2\n3, 4\n5, 6\n7, 8\n9, 10\n", "separated by commas"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "not a UTF-8 text file"),
])
def test_bad_landmark_files(tmp_path, content, message):
  path = tmp_path / "lm.txt"
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content)
  with pytest.raises(align.InputError, match=message) as info:
    align.load_landmarks_txt(str(path))
  assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_landmark_file_that_is_not_a_regular_file(tmp_path):
  fifo = tmp_path / "lm.txt"
  os.mkfifo(fifo)  # reading it would block forever
  with pytest.raises(align.InputError, match="not a regular file"):
    align.load_landmarks_txt(str(fifo))
  with pytest.raises(align.InputError, match="no such file"):
    align.load_landmarks_txt(str(tmp_path / "none.txt"))


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "not a readable .mat file"),
    (b"MATLAB 5.0 MAT-file truncated", "not a readable .mat file"),
])
def test_bad_standard_landmark_mat(tmp_path, standard_landmarks_path, content, message):
  path = tmp_path / "similarity_Lm3D_all.mat"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(align.InputError, match=message) as info:
    align.standard_five_points(str(path))
  assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
  truncated = tmp_path / "truncated.mat"
  with open(standard_landmarks_path, "rb") as f:
    truncated.write_bytes(f.read()[:200])
  with pytest.raises(align.InputError, match="truncated.mat: "):
    align.standard_five_points(str(truncated))


def test_degenerate_landmarks_are_rejected(face_photo):
  for points in (np.zeros((5, 2)), np.full((5, 2), 123.4), 100 + np.eye(5, 2)):
    with pytest.raises(ValueError, match=r"landmarks are degenerate: the 5 points span") as info:
      align.align_image(face_photo, points)
    assert "\n" not in str(info.value) and len(str(info.value)) < 120
  with pytest.raises(ValueError, match=r"points must be finite"):
    align.align_image(face_photo, np.full((5, 2), np.nan))
