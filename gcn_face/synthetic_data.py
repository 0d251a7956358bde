"""The synthetic training set: renders of a morphable model with detail the PCA cannot hold.

Each face has random identity, expression, pose and SH lighting, and a true
per-vertex albedo = the PCA albedo of random coefficients + detail outside the
PCA space (eyebrows, freckles, moles, beard shadow, lip colour). It is lit and
rendered with Deep3D's camera into a 224 x 224 crop over a random background;
random occluders (a hand, glasses, a hair band) are drawn on top and removed
from the face mask (the rendered face, brows, eyes and lips included, as the
release's segmentation labels). The stored coefficients carry the true shape, pose and
light and the least-squares PCA fit of the true albedo, i.e. the best coarse
texture a 3DMM can give, so the GCN has exactly the detail to learn.
"""

import numpy as np
import PIL.Image
import PIL.ImageDraw
import tensorflow as tf

from deep3dface import align, constants, face_model, posing, synthetic
from gcn_face import refinement

SIZE = constants.IMAGE_SIZE
# Coefficient spreads (the bases are EV-scaled: N(0, 1) is a plausible face).
ID_STD, EXP_STD, TEX_STD = 1.0, 0.6, 1.0
YAW, PITCH, ROLL = 0.45, 0.2, 0.12  # radians, uniform half-ranges
TRANSLATION_STD = (0.04, 0.04, 0.25)  # dm
GAMMA_STD = (0.15, 0.08)  # first-order, second-order SH coefficients
AMBIENT = (0.3, 0.1)  # mean, std of the first SH coefficient (on top of Deep3D's 0.8 prior)
TINT_STD = 0.008  # per-channel colour of the light
EXPOSURE_LIMIT = 240.0  # 0-255 level of a face's 98th-percentile lit vertex (see expose)
NOISE_STD = 2.0  # 0-255 sensor noise
OCCLUDER_PROBABILITY = {"hand": 0.2, "glasses": 0.25, "hair_band": 0.2}


def _gauss(xy, cx, cy, sx, sy):
  return synthetic.gaussian(xy[:, 0], xy[:, 1], cx, cy, sx, sy)


def fine_noise(xy, rng, wavelengths, count=32):
  """A random field `[N]` of unit RMS: `count` plane waves with wavelengths drawn from the
  (min, max) range in dm, random directions and phases (pores, stubble, hair strokes)."""
  angle = rng.uniform(0, np.pi, count)
  k = 2 * np.pi / rng.uniform(*wavelengths, count)
  phase = rng.uniform(0, 2 * np.pi, count)
  waves = np.cos(xy @ (np.stack([np.cos(angle), np.sin(angle)]) * k) + phase)
  return waves.sum(1) * np.sqrt(2.0 / count)


def albedo_detail(xy, rng):
  """Multiplicative and additive albedo detail `[N, 3]` (0-255 units) on mesh positions `[N, 2]`
  (x right, y up, dm): the part of a face's texture outside the PCA space.

  Sizes are chosen for the 35,709-vertex default (vertex spacing ~0.01 dm, about one pixel
  of the 224 x 224 crop): freckles of 0.01-0.02 dm, brow hair strokes and stubble of
  0.03-0.06 dm wavelength are resolved by the mesh and the photo, not by the refiner's
  2,232-vertex level 2.
  """
  n = len(xy)
  gain = np.ones((n, 3))
  add = np.zeros((n, 3))
  # Eyebrows: brown-black bands with a random arch and thickness, made of hair strokes.
  depth = rng.uniform(0.35, 0.75)
  strokes = np.clip(0.65 + 0.35 * fine_noise(xy, rng, (0.03, 0.05)), 0.2, 1.0)
  for side in (-1.0, 1.0):
    arch = 0.47 + rng.normal(0, 0.02) + 0.04 * (1 - ((xy[:, 0] - side * 0.30) / 0.2) ** 2)
    band = np.exp(-0.5 * ((xy[:, 0] - side * 0.30) / 0.17) ** 4 -
                  0.5 * ((xy[:, 1] - arch) / rng.uniform(0.025, 0.045)) ** 2)
    gain *= 1.0 - depth * (band * strokes)[:, None] * np.array([1.0, 1.05, 1.1])
  # Freckles on cheeks and nose.
  for _ in range(rng.integers(0, 120)):
    cx, cy = rng.normal(0, 0.3), rng.uniform(-0.2, 0.25)
    spot = _gauss(xy, cx, cy, *(rng.uniform(0.01, 0.02),) * 2)
    gain *= 1.0 - rng.uniform(0.15, 0.4) * spot[:, None] * np.array([0.8, 1.0, 1.2])
  # Moles: few, dark brown.
  for _ in range(rng.integers(0, 5)):
    cx, cy = rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.6)
    spot = _gauss(xy, cx, cy, *(rng.uniform(0.015, 0.03),) * 2)
    gain *= 1.0 - 0.65 * spot[:, None] * np.array([0.9, 1.0, 1.05])
  # Beard stubble below the mouth and along the jaw.
  if rng.random() < 0.4:
    region = np.clip((-0.25 - xy[:, 1]) / 0.2, 0, 1) * (np.abs(xy[:, 0]) < 0.7)
    region *= 1.0 - _gauss(xy, 0.0, -0.38, 0.2, 0.07)
    stubble = np.clip(0.7 + 0.3 * fine_noise(xy, rng, (0.03, 0.06)), 0.0, 1.0)
    gain *= 1.0 - rng.uniform(0.2, 0.45) * (region * stubble)[:, None] * np.array(
        [1.0, 0.95, 0.85])
  # Lip colour with a sharp vermilion border and vertical lip lines.
  lips = np.exp(-0.5 * (((xy[:, 0]) / 0.2) ** 4 + ((xy[:, 1] + 0.38) / 0.055) ** 4))
  lines = 1.0 + 0.25 * np.cos(2 * np.pi * xy[:, 0] / rng.uniform(0.03, 0.05))
  add += rng.uniform(10, 35) * (lips * lines)[:, None] * np.array([1.0, -0.5, -0.3])
  return gain, add


def random_coefficients(rng, count):
  """`[count, 257]` random identity, expression, albedo, pose, light, translation."""
  coeff = np.zeros((count, constants.COEFF_DIM), np.float32)
  part = constants.COEFF_SLICES
  coeff[:, part["identity"]] = rng.normal(0, ID_STD, (count, constants.ID_DIM))
  coeff[:, part["expression"]] = rng.normal(0, EXP_STD, (count, constants.EXP_DIM))
  coeff[:, part["albedo"]] = rng.normal(0, TEX_STD, (count, constants.TEX_DIM))
  coeff[:, part["angles"]] = rng.uniform(-1, 1, (count, 3)) * np.array([PITCH, YAW, ROLL])
  gamma = np.zeros((count, 3, 9))
  gamma[:, :, 0] = rng.normal(*AMBIENT, (count, 1))
  gamma[:, :, 1:4] = rng.normal(0, GAMMA_STD[0], (count, 1, 3))  # white-ish light direction
  gamma[:, :, 4:] = rng.normal(0, GAMMA_STD[1], (count, 1, 5))
  gamma += rng.normal(0, TINT_STD, (count, 3, 9))
  coeff[:, part["gamma"]] = gamma.reshape(count, constants.GAMMA_DIM)
  coeff[:, part["translation"]] = rng.normal(0, 1, (count, 3)) * np.array(TRANSLATION_STD)
  return coeff


def expose(albedo, normals, gamma):
  """Auto-exposure: `gamma` `[B, 27]` scaled (with Deep3D's ambient prior) so that at most
  2 % of a face's camera-facing vertices would clip at 255 when lit (EXPOSURE_LIMIT at the
  98th percentile); a camera meters so, and a clipped photo says nothing of the albedo."""
  gamma = np.array(gamma, np.float64).reshape(-1, 3, 9)
  prior = np.zeros(9)
  prior[0] = constants.SH_AMBIENT_PRIOR
  lit = posing.illuminate(tf.constant(albedo, tf.float32), tf.constant(normals, tf.float32),
                          tf.constant(gamma.reshape(-1, 27), tf.float32)).numpy()
  for i in range(len(gamma)):
    facing = normals[i, :, 2] > 0.0
    level = np.percentile(lit[i][facing], 98) if facing.any() else 0.0
    if level > EXPOSURE_LIMIT:
      gamma[i] = (gamma[i] + prior) * (EXPOSURE_LIMIT / level) - prior
  return gamma.reshape(-1, 27).astype(np.float32)


def _background(rng):
  yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
  a, b = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
  angle = rng.uniform(0, 2 * np.pi)
  t = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)
  blobs = sum(rng.uniform(-25, 25) * np.exp(-((xx - rng.random()) ** 2 + (yy - rng.random()) ** 2)
                                            / rng.uniform(0.005, 0.05)) for _ in range(6))
  return a * (1 - t[..., None]) + b * t[..., None] + blobs[..., None]


def _draw_occluders(image, mask, landmarks68, rng):
  """Draws occluders on `image` (uint8, in place via PIL) and clears them from `mask`."""
  picture = PIL.Image.fromarray(image)
  cover = PIL.Image.new("L", (SIZE, SIZE), 0)
  draws = (PIL.ImageDraw.Draw(picture), PIL.ImageDraw.Draw(cover))
  eyes = [landmarks68[36:42].mean(0), landmarks68[42:48].mean(0)]
  eye_gap = float(np.linalg.norm(eyes[1] - eyes[0]))
  kinds = []
  if rng.random() < OCCLUDER_PROBABILITY["glasses"]:
    kinds.append("glasses")
    color = tuple(int(c) for c in rng.uniform(0, 90, 3))
    r = 0.32 * eye_gap
    for draw, fill in zip(draws, (color, 255)):
      for e in eyes:
        draw.ellipse([e[0] - r, e[1] - 0.8 * r, e[0] + r, e[1] + 0.8 * r], outline=fill,
                     width=max(2, int(0.06 * eye_gap)))
      draw.line([tuple(eyes[0] + [r, 0]), tuple(eyes[1] - [r, 0])], fill=fill,
                width=max(2, int(0.05 * eye_gap)))
  if rng.random() < OCCLUDER_PROBABILITY["hair_band"]:
    kinds.append("hair_band")
    brow_y = landmarks68[17:27, 1].min()
    y0 = brow_y - rng.uniform(0.35, 0.7) * eye_gap
    height = rng.uniform(0.15, 0.3) * eye_gap
    color = tuple(int(c) for c in rng.uniform(0, 255, 3))
    tilt = rng.normal(0, 5)
    for draw, fill in zip(draws, (color, 255)):
      draw.polygon([(0, y0), (SIZE, y0 + tilt), (SIZE, y0 + height + tilt), (0, y0 + height)],
                   fill=fill)
  if rng.random() < OCCLUDER_PROBABILITY["hand"]:
    kinds.append("hand")
    centre = landmarks68[rng.choice([2, 4, 8, 12, 14])] + rng.normal(0, 8, 2)
    size = rng.uniform(0.6, 1.0) * eye_gap
    color = tuple(int(c) for c in np.array([215, 170, 145]) * rng.uniform(0.6, 1.1))
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    lengths = rng.uniform(0.9, 1.4, 4) * size
    for draw, fill in zip(draws, (color, 255)):
      draw.ellipse([centre[0] - size, centre[1] - size, centre[0] + size, centre[1] + size],
                   fill=fill)
      for f in range(4):
        base = centre + direction * 0.8 * size + normal * (f - 1.5) * 0.45 * size
        tip = base + direction * lengths[f]
        draw.line([tuple(base), tuple(tip)], fill=fill, width=max(3, int(0.35 * size)))
  occluded = np.asarray(cover) > 0
  return np.asarray(picture).copy(), mask & ~occluded, kinds


class SyntheticRenderer:
  """Renders synthetic training faces of a morphable model.

  Args:
    model: deep3dface.bfm.MorphableModel (synthetic or BFM09).
  """

  def __init__(self, model):
    self.model = model
    self.face_model = face_model.FaceModel(model)
    self.xy = np.asarray(model.mean_shape, np.float64)[:, :2]
    # Least-squares PCA fit of an albedo: coeff = pinv(texBase) (albedo - meantex).
    self.tex_pinv = np.linalg.pinv(np.asarray(model.tex_base, np.float64))
    self.mean_tex = np.asarray(model.mean_tex, np.float64).reshape(-1)
    self.triangles = tf.constant(model.triangles, tf.int32)

  def true_albedo(self, tex_coefficients, rng):
    """PCA albedo of the coefficients with detail, uint8 `[N, 3]`."""
    pca = self.mean_tex + np.asarray(self.model.tex_base, np.float64) @ tex_coefficients
    gain, add = albedo_detail(self.xy, rng)
    return np.clip(pca.reshape(-1, 3) * gain + add + 0.5, 0, 255).astype(np.uint8)

  def pca_fit(self, albedo):
    """The 80 albedo coefficients closest (least squares) to an albedo `[N, 3]`."""
    return self.tex_pinv @ (np.asarray(albedo, np.float64).reshape(-1) - self.mean_tex)

  def render(self, seeds):
    """One synthetic face per seed.

    Returns:
      list of dicts with image uint8 `[224, 224, 3]`, mask bool `[224, 224]`,
      coeff `[257]` (albedo = PCA fit of the true albedo), landmarks `[5, 2]`,
      landmarks68 `[68, 2]`, albedo uint8 `[N, 3]`, occluders (list of str).
    """
    rngs = [np.random.default_rng(s) for s in seeds]
    coeff = np.concatenate([random_coefficients(r, 1) for r in rngs])
    part = constants.COEFF_SLICES
    albedo = np.stack([self.true_albedo(c[part["albedo"]].astype(np.float64), r)
                       for c, r in zip(coeff, rngs)])
    face = self.face_model(coeff)
    coeff[:, part["gamma"]] = expose(albedo, face.normals.numpy(), coeff[:, part["gamma"]])
    lit = posing.illuminate(tf.constant(albedo, tf.float32), face.normals,
                            coeff[:, part["gamma"]])
    pixels, alphas = (x.numpy() for x in refinement.render(
        face.clip_vertices, self.triangles, tf.clip_by_value(lit, 0.0, 255.0)))
    landmarks68 = face.landmarks.numpy().astype(np.float64)
    landmarks68[..., 1] = SIZE - 1 - landmarks68[..., 1]
    out = []
    for i, rng in enumerate(rngs):
      alpha = alphas[i, ..., None]
      image = pixels[i, ..., :3] * alpha + _background(rng) * (1 - alpha)
      image = np.clip(image + rng.normal(0, NOISE_STD, image.shape) + 0.5, 0, 255).astype(np.uint8)
      mask = alphas[i] > 0.5
      image, mask, kinds = _draw_occluders(image, mask, landmarks68[i], rng)
      stored = coeff[i].copy()
      stored[part["albedo"]] = self.pca_fit(albedo[i])
      out.append({"image": image, "mask": mask, "coeff": stored,
                  "landmarks": align.five_from_68(landmarks68[i]),
                  "landmarks68": landmarks68[i], "albedo": albedo[i], "occluders": kinds})
    return out
