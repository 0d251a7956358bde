"""Per-photo refinement (new: none of the originals has it) and its held-out protocol.

    holdout = holdout_mask(skin_mask, name, seed=0)               # never enters any loss
    photo = fill_holdout(crop, holdout)                            # what everything else sees
    refiner = PhotoRefiner(face_model, pairs, encoder)
    albedo, terms = refiner.refine(start, coarse, coeff, photo, train_mask, face_mask,
                                   landmarks)

The texture a photo gets (the trained GCN's output, else the 3DMM's) is fine-tuned on that
one photo with the paper's losses (SPEC 6.5): the pixel loss between the lit render and the
photo on the visible skin pixels of `train_mask`, the identity loss (1 - cosine of the
identity encoder's features of the photo and of the render composited over it), the vertex
loss pulling the vertices the pixel loss does not see (turned away, or under hair, hands or
background) toward the 3DMM's colours, and the symmetry loss; plus an
edge-smoothness term on the change (this project's: without it a vertex whose pixels are
all held out keeps its start colour while its neighbours move). The variable is a
per-vertex change of the albedo; the geometry, pose and light stay the coefficients'.

Honest protocol: `holdout_mask` draws a seeded 20 % of the skin-mask pixels, and
`fill_holdout` replaces them by their seen neighbours' mean before anything else looks at
the photo (fit, GCN, identity features, refinement): their values reach nothing but the
L1 computed on them, which measures the texture where it was not fitted.
"""

import dataclasses
import zlib

import numpy as np
import scipy.ndimage
import scipy.sparse
import tensorflow as tf

import renderer
from deep3dface import constants, face_model as face_model_lib, fitting, posing
from gcn_face import losses, refinement, refiner_input

SIZE = constants.IMAGE_SIZE
HOLDOUT_FRACTION = 0.2
BLEND_ROUNDS = 4  # neighbour averagings of the seen vertices' weight: the start's seam width


@dataclasses.dataclass
class RefineConfig:
  """Adam on the per-vertex albedo change ([-1, 1] scale); weights of the terms."""
  steps: int = 40
  lr: float = 0.02
  pixel: float = 1.0  # the paper's pixel loss (mean |R - I| over the pixels, 3 channels)
  identity: float = 0.2  # the release's lambda_id
  invisible: float = 1.0  # x losses.INVISIBLE_WEIGHT (0.3), the release's vertex term
  symmetry: float = 0.05
  smoothness: float = 1.0


def holdout_mask(skin_mask, name, seed=0, fraction=HOLDOUT_FRACTION):
  """bool `[H, W]`: a random `fraction` of the True pixels of `skin_mask` (`[H, W]`), seeded by
  `seed` and the photo's `name` (the same photo always gets the same pixels)."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
  rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
  return np.asarray(skin_mask, bool) & (rng.uniform(size=np.shape(skin_mask)) < fraction)


def fill_holdout(image, holdout, max_rounds=8):
  """The photo `[H, W, 3]` with its held-out pixels (bool `[H, W]`) replaced by the mean of
  their seen 3 x 3 neighbours (growing outwards where a pixel has none), so that the held-out
  values reach nothing downstream: not the fit, not the GCN's input, not the identity
  features. uint8 `[H, W, 3]`."""
  out = np.asarray(image, np.float64).copy()
  known = ~np.asarray(holdout, bool)
  for _ in range(max_rounds):
    if known.all():
      break
    weight = scipy.ndimage.uniform_filter(known.astype(np.float64), 3, mode="constant")
    total = np.stack([scipy.ndimage.uniform_filter(out[..., c] * known, 3, mode="constant")
                      for c in range(out.shape[-1])], -1)
    fill = ~known & (weight > 1e-9)
    out[fill] = total[fill] / weight[fill][:, None]
    known = known | fill
  out[~known] = 0.0
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def edges(triangles):
  """int32 `[E, 2]` unique undirected edges of triangles `[F, 3]`."""
  t = np.asarray(triangles, np.int64)
  pairs = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
  return np.unique(np.sort(pairs, axis=1), axis=0).astype(np.int32)


def smooth_vertex_weights(weights, triangles, rounds):
  """Per-vertex weights `[N]` averaged `rounds` times with their mesh neighbours (each vertex
  and its neighbours equally): a soft edge `rounds` rings wide. float64 `[N]`."""
  pairs = edges(triangles)
  n = len(weights)
  adjacency = scipy.sparse.coo_matrix((np.ones(2 * len(pairs)), (
      np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]])), (n, n)).tocsr()
  smoothing = scipy.sparse.diags(1.0 / (1.0 + np.asarray(adjacency.sum(1)).ravel())) @ (
      adjacency + scipy.sparse.identity(n))
  weights = np.asarray(weights, np.float64)
  for _ in range(rounds):
    weights = smoothing @ weights
  return weights


class PhotoRefiner:
  """Fine-tunes a per-vertex albedo on one aligned photo.

  Args:
    face_model: deep3dface.face_model.FaceModel.
    pairs: int32 `[P, 2]` mirror-symmetric vertex pairs (`gcn_face.symmetry.mirror_pairs`).
    encoder: identity encoder (`gcn_face.identity.encoder`), or None to leave L_id out.
    config: RefineConfig.
  """

  def __init__(self, face_model, pairs, encoder=None, config=None):
    self.face_model = face_model
    self.config = config or RefineConfig()
    self.triangles = face_model.triangles
    self.pairs = tf.constant(np.asarray(pairs, np.int32).reshape(-1, 2))
    self.edges = tf.constant(edges(face_model.triangles.numpy()))
    self._triangles_np = face_model.triangles.numpy()
    self.encoder = encoder if self.config.identity > 0 else None
    self._step = tf.function(self._step_impl, reduce_retracing=True, autograph=False)

  def _render(self, colors, raster):
    """Render `[1, 224, 224, 3]` (rows top-down) of lit vertex colours `[1, N, 3]`."""
    pixels = renderer.interpolate(colors, self.triangles, raster.triangle_ids,
                                  raster.barycentrics)
    return tf.reverse(pixels, axis=[1])

  def _losses(self, delta, start, coarse_colors, shading, raster, alpha, image, train_mask,
              visibility, target_features, landmarks):
    c = self.config
    albedo = tf.clip_by_value(start + delta, -1.0, 1.0)
    colors = refinement.lit_colors(albedo, shading)
    rendered = self._render(colors, raster)
    terms = {"pixel": c.pixel * losses.masked_l1(rendered, image, train_mask),
             "invisible": c.invisible * losses.invisible_vertex_loss(colors, coarse_colors,
                                                                     visibility),
             "symmetry": c.symmetry * losses.symmetry_loss(albedo, self.pairs),
             "smoothness": c.smoothness * tf.reduce_mean(tf.abs(
                 tf.gather(delta, self.edges[:, 0], axis=1) -
                 tf.gather(delta, self.edges[:, 1], axis=1)))}
    if self.encoder is not None:
      composite = losses.composite(refinement.to_255(tf.clip_by_value(rendered, -1.0, 1.0)),
                                   refinement.to_255(image), alpha)
      terms["identity"] = c.identity * losses.identity_loss(
          target_features, self.encoder.embed(composite, landmarks))
    return terms

  def _step_impl(self, state, *args):
    delta = state[0]
    with tf.GradientTape() as tape:
      tape.watch(delta)
      loss = tf.add_n(list(self._losses(delta, *args).values()))
    fitting.adam_step(state, self.config.lr, tape.gradient(loss, delta))
    return loss

  def blended_start(self, start, coarse, visibility):
    """The start texture where the photo shows the face, T_pca where it does not, blended
    over a few rings of vertices (`BLEND_ROUNDS`): what the photo cannot support (the GCN's
    guess under hair or beyond the face's edge) starts from the 3DMM, as the vertex loss
    wants it, without a seam. `[1, N, 3]` on [-1, 1]."""
    weight = smooth_vertex_weights(visibility.numpy()[0], self._triangles_np, BLEND_ROUNDS)
    weight = tf.constant(weight[None, :, None], tf.float32)
    return weight * start + (1.0 - weight) * coarse

  def refine(self, start_albedo, coarse_albedo, coeff, image_255, train_mask, face_mask,
             landmarks, steps=None):
    """Refines one face.

    Args:
      start_albedo: `[1, N, 3]` on [-1, 1], the texture to start from (the GCN's or T_pca).
      coarse_albedo: `[1, N, 3]` on [-1, 1], T_pca (the vertex loss's target).
      coeff: `[1, 257]` coefficients (geometry, pose and light, held fixed).
      image_255: `[1, 224, 224, 3]` aligned crop, RGB on [0, 255].
      train_mask: `[1, 224, 224]` {0, 1}: the pixels the pixel loss may see (the face without
        occluders and without the held-out pixels).
      face_mask: `[1, 224, 224]` {0, 1}: train_mask with the held-out pixels (a vertex whose
        pixel is in it and that faces the camera is seen; the others get the vertex loss).
      landmarks: `[1, 5, 2]` crop pixels (the identity encoder's alignment).
      steps: Adam steps (default: the config's).

    Returns:
      (albedo `[1, N, 3]` numpy on [-1, 1], final terms {name: float}).
    """
    steps = self.config.steps if steps is None else int(steps)
    if steps < 0:
      raise ValueError(f"steps must be >= 0, got {steps}")
    start = tf.constant(start_albedo, tf.float32)
    image = tf.constant(image_255, tf.float32) / 127.5 - 1.0
    train_mask = tf.constant(train_mask, tf.float32)
    landmarks = tf.constant(landmarks, tf.float32)
    face = self.face_model(coeff)
    gamma = face_model_lib.split_coefficients(coeff).gamma
    shading = posing.illuminate(tf.ones_like(face.normals), face.normals, gamma)
    coarse_colors = refinement.lit_colors(tf.constant(coarse_albedo, tf.float32), shading)
    seen = tf.gather_nd(tf.constant(face_mask, tf.float32),
                        refiner_input.exact_pixels(face.vertices), batch_dims=1)
    visibility = seen * tf.cast(face.normals[..., 2] > 0.0, tf.float32)
    start = self.blended_start(start, tf.constant(coarse_albedo, tf.float32), visibility)
    raster = renderer.rasterize(face.clip_vertices, self.triangles, SIZE, SIZE)
    alpha = tf.reverse(tf.cast(raster.triangle_ids >= 0, tf.float32), axis=[1])
    features = (tf.stop_gradient(self.encoder.embed(image_255, landmarks))
                if self.encoder is not None else tf.zeros([1, 1]))
    args = (start, coarse_colors, shading, raster, alpha, image, train_mask, visibility,
            features, landmarks)
    state = tuple(tf.Variable(tf.zeros_like(start)) for _ in range(3)) + (tf.Variable(0.0),)
    for _ in range(steps):
      self._step(state, *args)
    terms = self._losses(state[0], *args)
    albedo = tf.clip_by_value(start + state[0], -1.0, 1.0)
    return albedo.numpy(), {k: float(v) for k, v in terms.items()}

