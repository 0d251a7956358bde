"""Analysis-by-synthesis: the 257 coefficients of a photo by optimisation through the renderer.

    fitter = Fitter(face_model.FaceModel(model), skin_indices)
    result = fitter.fit(images, landmarks68, masks)          # or init=R-Net coefficients

The objective is the one Deep3D trains its R-Net with (SPEC 2.10; its losses.py and
reconstruction_model.py), minimised per image instead of learned, with Deep3D's scales:
the photometric error of the lit render (per-pixel RGB distance / 255, averaged over
the rendered small face region `frontmask2_idx`/`tri_mask2` times the skin mask), the
68-landmark error (x20 on the nose and the inner mouth), the coefficient prior, the
skin-albedo variance and the monochrome-lighting prior (the mean over the 27 lighting
coefficients of the squared deviation from their channel mean). Deep3D's FaceNet
identity term (0.2) is left out: its weights are a licensed asset, and the fit must work
without them. It works with any model in the BFM schema, including the synthetic one.

Two stages: pose, identity and expression from the landmarks alone (no rendering,
so it is cheap and lands the face where the photometric term has gradients), then
every coefficient with all terms through the differentiable rasterizer.
"""

import dataclasses

import numpy as np
import tensorflow as tf

import renderer
from deep3dface import constants, face_model as face_model_lib, posing

SIZE = constants.IMAGE_SIZE
# Deep3D's loss weights (SPEC 2.10).
PHOTO_WEIGHT = 1.92
PHOTO_SCALE = 255.0  # Deep3D's Photo_loss divides the RGB distance by 255
LANDMARK_WEIGHT = 1.6e-3
LANDMARK_BOOST = 20.0
BOOSTED_LANDMARKS_1BASED = (29, 30, 31) + tuple(range(61, 69))  # nose ridge, inner mouth
REG_WEIGHT = 3e-4
EXP_REG = 0.8
TEX_REG = 1.7e-2
REFLECTANCE_WEIGHT = 5.0
GAMMA_WEIGHT = 10.0


@dataclasses.dataclass
class FitConfig:
  """Adam on all coefficients (they share one scale: the bases carry the PCA deviations)."""
  landmark_steps: int = 150
  photo_steps: int = 100
  lr: float = 0.02


def landmark_weights():
  weights = np.ones(constants.NUM_KEYPOINTS, np.float32)
  weights[np.array(BOOSTED_LANDMARKS_1BASED) - 1] = LANDMARK_BOOST
  return tf.constant(weights)


def to_model_landmarks(landmarks68):
  """Crop landmarks (x, row) -> Deep3D's (u, v_up) of `posing.project`."""
  landmarks68 = np.asarray(landmarks68, np.float32)
  return np.stack([landmarks68[..., 0], SIZE - 1 - landmarks68[..., 1]], axis=-1)


def render_colors(clip_vertices, triangles, colors):
  """Per-vertex colours `[B, N, C]` (any scale) -> (image `[B, 224, 224, C]` top-down,
  coverage `[B, 224, 224]`), differentiable w.r.t. the vertices and the colours."""
  raster = renderer.rasterize(clip_vertices, triangles, SIZE, SIZE)
  ones = tf.ones_like(colors[..., :1])
  pixels = renderer.interpolate(tf.concat([colors, ones], -1), triangles, raster.triangle_ids,
                                raster.barycentrics)
  pixels = tf.reverse(pixels, axis=[1])  # the rasterizer's row 0 is the image bottom
  images, alpha = renderer.split_channels(pixels, [-1, 1])
  return images, tf.squeeze(alpha, -1)


def photo_term(rendered, images, mask):
  """Deep3D's Photo_loss per image: 1.92 sum(|R - I|_2 / 255 * m) / max(sum(m), 1).

  rendered, images: `[B, H, W, 3]` on [0, 255]; mask: `[B, H, W]` in [0, 1]. (The 1e-8
  under the square root keeps the gradient finite where R = I.)
  """
  error = tf.sqrt(tf.reduce_sum(tf.square(rendered - images), -1) + 1e-8) / PHOTO_SCALE
  return PHOTO_WEIGHT * (tf.reduce_sum(error * mask, [1, 2]) /
                         tf.maximum(tf.reduce_sum(mask, [1, 2]), 1.0))


def adam_step(state, lr, grad):
  """One Adam step (0.9, 0.999, 1e-8) on state = (variable, m, v, t) tf.Variables."""
  variable, m, v, t = state
  t.assign_add(1.0)
  m.assign(0.9 * m + 0.1 * grad)
  v.assign(0.999 * v + 0.001 * tf.square(grad))
  variable.assign_sub(lr * (m / (1.0 - 0.9 ** t)) / (tf.sqrt(v / (1.0 - 0.999 ** t)) + 1e-8))


def gamma_term(gamma):
  """Deep3D's Gamma_loss per image: 10 mean over the [3, 9] lighting of the squared
  deviation from the mean of the 3 channels; gamma `[B, 27]` (R, G, B blocks of 9)."""
  gamma = tf.reshape(gamma, [-1, 3, 9])
  deviation = gamma - tf.reduce_mean(gamma, axis=1, keepdims=True)
  return GAMMA_WEIGHT * tf.reduce_mean(tf.square(deviation), [1, 2])


class Fitter:
  """Fits Deep3D coefficients to aligned 224 x 224 crops.

  Args:
    face_model: deep3dface.face_model.FaceModel.
    skin_indices: int `[S]` skin vertices (reflectance prior); empty to skip it.
    config: FitConfig.
  """

  def __init__(self, face_model, skin_indices=(), config=None):
    self.face_model = face_model
    self.config = config or FitConfig()
    self.skin_indices = tf.constant(np.asarray(skin_indices, np.int32))
    self.weights = landmark_weights()
    self.front_triangles = face_model.front_triangles
    # Stage 1 forms only the 68 keypoints: their rows of the mean and the shape basis.
    rows = (np.asarray(face_model.keypoints)[:, None] * 3 + np.arange(3)).reshape(-1)
    self.keypoint_mean = tf.gather(face_model.mean_shape, rows, axis=1)
    self.keypoint_basis = tf.gather(face_model.shape_basis, rows)
    # No AutoGraph: the steps branch on Python values only, and converting their callees'
    # source was most of a process's first fit (docs/speed.md).
    self._landmark_step = tf.function(self._landmark_step_impl, reduce_retracing=True,
                                      autograph=False)
    self._photo_step = tf.function(self._photo_step_impl, reduce_retracing=True,
                                   autograph=False)

  def _landmark_loss(self, landmarks, targets):
    d2 = tf.reduce_sum(tf.square(landmarks - targets), -1)
    return LANDMARK_WEIGHT * tf.reduce_mean(d2 * self.weights, -1)

  def _prior(self, coeff):
    c = face_model_lib.split_coefficients(coeff)
    reg = REG_WEIGHT * (tf.reduce_sum(tf.square(c.identity), -1) +
                        EXP_REG * tf.reduce_sum(tf.square(c.expression), -1) +
                        TEX_REG * tf.reduce_sum(tf.square(c.albedo), -1))
    return reg, gamma_term(c.gamma)

  def _reflectance(self, face):
    if self.skin_indices.shape[0] == 0:
      return tf.zeros(tf.shape(face.albedo)[:1])
    skin = tf.gather(face.albedo, self.skin_indices, axis=1) / 255.0
    return REFLECTANCE_WEIGHT * tf.reduce_sum(tf.math.reduce_variance(skin, axis=1), -1)

  def photo_mask(self, face, skin_masks):
    """Deep3D's photometric mask `[B, 224, 224]`: the rendered coverage of the small face
    region (frontmask2_idx / tri_mask2) times the skin mask."""
    raster = renderer.rasterize(tf.stop_gradient(face.clip_vertices), self.front_triangles,
                                SIZE, SIZE)
    return tf.reverse(tf.cast(raster.triangle_ids >= 0, tf.float32), axis=[1]) * skin_masks

  def _photo(self, face, images, skin_masks):
    rendered, _ = render_colors(face.clip_vertices, self.face_model.triangles, face.colors)
    return photo_term(rendered, images, self.photo_mask(face, skin_masks))

  def terms(self, coeff, images, masks, targets):
    """Per-image loss terms `{name: [B]}` of coefficients `[B, 257]`."""
    face = self.face_model(coeff)
    reg, gamma = self._prior(coeff)
    return {"photo": self._photo(face, images, masks),
            "landmark": self._landmark_loss(face.landmarks, targets),
            "reg": reg, "gamma": gamma, "reflectance": self._reflectance(face)}

  def keypoint_landmarks(self, coeff):
    """The 68 projected landmarks `[B, 68, 2]` of coefficients, forming only those vertices."""
    c = face_model_lib.split_coefficients(coeff)
    flat = self.keypoint_mean + tf.matmul(tf.concat([c.identity, c.expression], -1),
                                          self.keypoint_basis, transpose_b=True)
    shape = tf.reshape(flat, [-1, constants.NUM_KEYPOINTS, 3]) - self.face_model.center
    rotation = posing.rotation_matrices(c.angles)
    vertices = tf.matmul(shape, rotation, transpose_b=True) + c.translation[:, None, :]
    return posing.project(vertices)

  def _landmark_step_impl(self, state, targets, free):
    coeff = state[0]
    with tf.GradientTape() as tape:
      reg, _ = self._prior(coeff)
      loss = tf.reduce_sum(self._landmark_loss(self.keypoint_landmarks(coeff), targets) + reg)
    adam_step(state, self.config.lr, tape.gradient(loss, coeff) * free)
    return loss

  def _photo_step_impl(self, state, images, masks, targets):
    coeff = state[0]
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.add_n(list(self.terms(coeff, images, masks, targets).values())))
    adam_step(state, self.config.lr, tape.gradient(loss, coeff))
    return loss

  def fit(self, images, landmarks68, masks=None, init=None):
    """Fits coefficients.

    Args:
      images: `[B, 224, 224, 3]` RGB in [0, 255] (aligned crops).
      landmarks68: `[B, 68, 2]` (x, row) pixels in the crop (dlib's 68-point layout).
      masks: optional `[B, 224, 224]` {0, 1} skin masks (default: all ones); the photometric
        term sees them times the rendered small face region, as Deep3D.
      init: optional `[B, 257]` start (e.g. R-Net's coefficients); default zeros.

    Returns:
      (coefficients float32 `[B, 257]` numpy, final per-image terms {name: `[B]` numpy}).

    Raises:
      ValueError: shapes, a value range, or NaN/inf in the inputs; a diverged fit.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3):
      raise ValueError(f"images must be [B, {SIZE}, {SIZE}, 3], got {images.shape}")
    batch = images.shape[0]
    landmarks68 = np.asarray(landmarks68, np.float32)
    if landmarks68.shape != (batch, constants.NUM_KEYPOINTS, 2):
      raise ValueError(f"landmarks68 must be [{batch}, 68, 2], got {landmarks68.shape}")
    masks = np.ones(images.shape[:3], np.float32) if masks is None else np.asarray(masks,
                                                                                    np.float32)
    if masks.shape != images.shape[:3]:
      raise ValueError(f"masks must be {list(images.shape[:3])}, got {list(masks.shape)}")
    start = np.zeros([batch, constants.COEFF_DIM], np.float32) if init is None else np.asarray(
        init, np.float32)
    if start.shape != (batch, constants.COEFF_DIM):
      raise ValueError(f"init must be [{batch}, 257], got {start.shape}")
    for name, value in (("images", images), ("landmarks68", landmarks68), ("masks", masks),
                        ("init", start)):
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contain NaN or infinity")
    if images.min() < 0 or images.max() > 255:
      raise ValueError("images must be on the [0, 255] scale")
    targets = tf.constant(to_model_landmarks(landmarks68))
    coeff = tf.Variable(start)
    # Stage 1 moves identity, expression, pose (angles, translation) only.
    free = np.zeros(constants.COEFF_DIM, np.float32)
    for name in ("identity", "expression", "angles", "translation"):
      free[constants.COEFF_SLICES[name]] = 1.0
    images_t, masks_t = tf.constant(images), tf.constant(masks)
    try:
      for stage, steps in ((0, self.config.landmark_steps), (1, self.config.photo_steps)):
        state = (coeff, tf.Variable(tf.zeros_like(start)), tf.Variable(tf.zeros_like(start)),
                 tf.Variable(0.0))
        for _ in range(steps):
          if stage == 0:
            self._landmark_step(state, targets, tf.constant(free))
          else:
            self._photo_step(state, images_t, masks_t, targets)
      final = self.terms(coeff, images_t, masks_t, targets)
    except tf.errors.InvalidArgumentError:  # check_numerics in the traced face formation
      raise ValueError("the fit diverged: the coefficients became NaN or infinite") from None
    return coeff.numpy(), {k: v.numpy() for k, v in final.items()}
