"""Default skin/occlusion mask of an aligned face from its 68 landmarks and its colours.

The paper segments skin with a face-parsing network we cannot ship. The default
here: the face region = the hull of the jaw (0-16) and the brows (17-26) lifted
towards the hairline, minus the eyes, brows and mouth polygons (slightly
grown); then a per-image skin-colour model — a Gaussian in (Cb, Cr) fitted to
the cheeks and nose, where skin is most likely — keeps the pixels within
`max_distance` Mahalanobis units, which removes hands of another tone, glasses,
hair and shadows of a different colour. `SEGMENTERS` maps names to callables
`(image uint8 [H, W, 3], landmarks68 [68, 2]) -> bool [H, W]`; an external
segmenter plugs in as `module:function` (see `load_segmenter`).
"""

import importlib

import numpy as np
import PIL.Image
import PIL.ImageDraw

# 68-point (iBUG/dlib) groups, 0-based.
JAW = tuple(range(0, 17))
BROWS = (tuple(range(17, 22)), tuple(range(22, 27)))
EYES = (tuple(range(36, 42)), tuple(range(42, 48)))
MOUTH = tuple(range(48, 60))
# Cheeks and nose bridge/tip: the seed region of the colour model.
SEED_TRIANGLES = ((1, 31, 28), (15, 35, 28), (2, 3, 31), (14, 13, 35), (28, 31, 35))
FOREHEAD_LIFT = 0.25  # brows lifted by this fraction of the brow-to-chin height
MAX_DISTANCE = 3.0  # Mahalanobis radius of the skin-colour Gaussian


def _polygon_mask(shape, polygons, grow=0):
  image = PIL.Image.new("L", (shape[1], shape[0]), 0)
  draw = PIL.ImageDraw.Draw(image)
  for polygon in polygons:
    points = [tuple(map(float, p)) for p in polygon]
    draw.polygon(points, fill=255, outline=255)
    if grow:
      draw.line(points + [points[0]], fill=255, width=int(grow))
  return np.asarray(image) > 0


def _feature_polygons(landmarks68):
  """(eye, brow and mouth polygons, how much to grow them in pixels)."""
  lm = np.asarray(landmarks68, np.float64)
  size = np.linalg.norm(lm[45] - lm[36])  # outer eye corners
  return [lm[list(g)] for g in EYES + BROWS] + [lm[list(MOUTH)]], max(2, 0.08 * size)


def feature_mask(shape, landmarks68):
  """bool `[H, W]`: the eyes, brows and mouth (the face parts the skin mask leaves out, the
  release's face labels keep: not occluders)."""
  polygons, grow = _feature_polygons(landmarks68)
  return _polygon_mask(shape, polygons, grow=grow)


def face_outline(landmarks68):
  """`[27, 2]` polygon of the face: the jaw (0-16) and the brows lifted towards the hairline."""
  lm = np.asarray(landmarks68, np.float64)
  brow_points = lm[17:27]
  lift = FOREHEAD_LIFT * (lm[8, 1] - brow_points[:, 1].mean())
  return np.concatenate([lm[list(JAW)], brow_points[::-1] - np.array([0.0, lift])])


def polygon_mask(shape, polygon):
  """bool `[H, W]`: the pixels inside a polygon `[P, 2]` (x, y)."""
  return _polygon_mask(shape, [polygon])


def face_region(shape, landmarks68):
  """bool `[H, W]`: the landmark face area without eyes, brows and mouth."""
  return (_polygon_mask(shape, [face_outline(landmarks68)]) &
          ~feature_mask(shape, landmarks68))


def _chroma(image):
  rgb = np.asarray(image, np.float64)
  cb = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
  cr = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]
  return np.stack([cb, cr], -1)


def landmark_colour_mask(image, landmarks68, max_distance=MAX_DISTANCE):
  """The default segmenter: `face_region` ∩ pixels close to the face's skin colour."""
  image = np.asarray(image)
  lm = np.asarray(landmarks68, np.float64)
  region = face_region(image.shape[:2], lm)
  seed = _polygon_mask(image.shape[:2], [lm[list(t)] for t in SEED_TRIANGLES]) & region
  if seed.sum() < 10:
    return region
  chroma = _chroma(image)
  samples = chroma[seed]
  mean = samples.mean(0)
  cov = np.cov(samples.T) + np.eye(2) * 4.0  # floor: JPEG-flat skin has a tiny covariance
  diff = chroma - mean
  distance = np.sqrt(np.einsum("...i,ij,...j->...", diff, np.linalg.inv(cov), diff))
  return region & (distance < max_distance)


def hull_mask(image, landmarks68):
  """`face_region` alone (no colour model)."""
  return face_region(np.asarray(image).shape[:2], landmarks68)


SEGMENTERS = {"landmarks_colour": landmark_colour_mask, "landmarks": hull_mask}


def load_segmenter(spec):
  """A segmenter by name (`SEGMENTERS`) or as 'package.module:function'."""
  if spec in SEGMENTERS:
    return SEGMENTERS[spec]
  if ":" not in spec:
    raise ValueError(f"segmenter must be one of {sorted(SEGMENTERS)} or 'module:function', "
                     f"got {spec!r}")
  module, function = spec.split(":", 1)
  try:
    return getattr(importlib.import_module(module), function)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"segmenter {spec!r} cannot be loaded ({e})") from None
