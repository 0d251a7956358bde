"""Face formation from Deep3D's 257 coefficients (SPEC 2.3-2.9), batched and differentiable.

    model = FaceModel(bfm.load_model(path))        # or synthetic.synthetic_model()
    face = model(coefficients)                     # [B, 257] float32
    face.colors, face.clip_vertices, face.landmarks ...

Units: shapes in decimetres (model space: x right, y up, z towards the camera),
albedo and colours in [0, 255] RGB, angles in radians, image positions in
pixels of the 224 x 224 aligned crop.
"""

import collections

import numpy as np
import tensorflow as tf

from deep3dface import constants
from deep3dface import face_ops
from deep3dface import posing
from renderer import camera_utils

Coefficients = collections.namedtuple(
    "Coefficients", ["identity", "expression", "albedo", "angles", "gamma", "translation"])

FaceOutput = collections.namedtuple("FaceOutput", [
    "shape",          # [B, N, 3] canonical shape (identity + expression), dm
    "vertices",       # [B, N, 3] posed: shape R^T + t, dm
    "normals",        # [B, N, 3] rotated unit vertex normals
    "albedo",         # [B, N, 3] PCA albedo, [0, 255] (not clipped)
    "colors",         # [B, N, 3] SH-lit albedo, [0, 255] (not clipped)
    "landmarks",      # [B, 68, 2] projected keypoints (u, v_up), pixels, y up
    "clip_vertices",  # [B, N, 4] clip space of Deep3D's renderer camera
])

NORMAL_MODES = ("deep3d", "area_weighted")
BASIS_KERNELS = ("auto", "op", "matmul")


def split_coefficients(coefficients):
  """Splits `[B, 257]` coefficients into the SPEC 2.3 groups.

  Returns:
    Coefficients(identity [B, 80], expression [B, 64], albedo [B, 80],
    angles [B, 3] (x, y, z radians), gamma [B, 27] (R, G, B blocks of 9),
    translation [B, 3] (dm)).

  Raises:
    ValueError: if the static shape is not `[B, 257]`.
  """
  coefficients = _checked_coefficients(coefficients)
  return Coefficients(*tf.split(coefficients, constants.COEFF_SPLITS, axis=-1))


def _checked_coefficients(coefficients):
  """float32 tensor of `coefficients`; ValueError unless its static shape is `[B, 257]`."""
  coefficients = tf.convert_to_tensor(coefficients, tf.float32)
  if coefficients.shape.rank != 2 or coefficients.shape[-1] not in (None, constants.COEFF_DIM):
    raise ValueError(f"coefficients must have shape [B, {constants.COEFF_DIM}], got "
                     f"{coefficients.shape}")
  return coefficients


class FaceModel(tf.Module):
  """Deep3D's face formation on a MorphableModel (BFM09 front or synthetic).

  Args:
    model: deep3dface.bfm.MorphableModel.
    normals: "deep3d" (unit face normals summed, then normalised; Deep3D) or
      "area_weighted" (unnormalised face normals; the GCN release's code).
    near_clip, far_clip: renderer clip planes (Deep3D: 0.01 / 50).
    basis_kernel: "op" (deep3dface.face_ops' C++ ops for the bases, the
      normals and pose + lighting, CPU only: ~2x faster forward, ~3.5x
      faster fitting steps), "matmul" (tf ops, all in one XLA function) or
      "auto" (op unless TensorFlow sees a GPU).
    xla: compile the tf-op formation with XLA (False: plain TensorFlow ops, as a SavedModel
      for TensorFlow Serving needs; `gcn_face.export`).
  """

  def __init__(self, model, normals="deep3d", near_clip=constants.NEAR_CLIP,
               far_clip=constants.FAR_CLIP, basis_kernel="auto", xla=True, name=None):
    super().__init__(name=name)
    if normals not in NORMAL_MODES:
      raise ValueError(f"normals must be one of {NORMAL_MODES}, got {normals!r}")
    if basis_kernel not in BASIS_KERNELS:
      raise ValueError(f"basis_kernel must be one of {BASIS_KERNELS}, got {basis_kernel!r}")
    self.normal_mode = normals
    self.num_vertices = model.num_vertices
    mean = np.asarray(model.mean_shape, np.float64)
    # Deep3D re-centres shapes by the mean shape's centroid (a constant).
    self.center = tf.constant(mean.mean(0), tf.float32)
    self.mean_shape = tf.constant(mean.reshape(1, -1), tf.float32)
    self._centered_mean_shape = tf.constant((mean - mean.mean(0)).reshape(1, -1), tf.float32)
    # [3N, 80 + 64]: one product forms identity + expression. Bases stay
    # vertex-major as in the file, so each row is read once per call.
    self.shape_basis = tf.constant(
        np.concatenate([model.id_base, model.ex_base], axis=1), tf.float32)
    self.mean_tex = tf.constant(np.asarray(model.mean_tex).reshape(1, -1), tf.float32)
    self.tex_basis = tf.constant(np.asarray(model.tex_base), tf.float32)
    self.triangles = tf.constant(model.triangles, tf.int32)
    # Deep3D's small face region (photometric mask): tri_mask2 indexes frontmask2_idx.
    self.front_triangles = tf.constant(
        np.asarray(model.front_mask_idx)[np.asarray(model.tri_mask2)], tf.int32)
    self.point_buf = tf.constant(model.point_buf, tf.int32)
    self.keypoints = tf.constant(model.keypoints, tf.int32)
    self.world_to_clip = posing.camera_matrix(near_clip, far_clip)
    # On CPU the formation is three C++ ops (face_ops: bases, normals, pose
    # and light); with a GPU it is one XLA function of tf ops.
    self._use_ops = (basis_kernel == "op" or
                      (basis_kernel == "auto" and face_ops.use_op()))
    self._form = (tf.function(self._form_impl, jit_compile=True, reduce_retracing=True,
                              autograph=False)
                  if xla else self._form_impl)

  def shape(self, identity, expression):
    """Canonical shape `[B, N, 3]` (dm) from `[B, 80]` identity and `[B, 64]` expression."""
    coeff = tf.concat([identity, expression], axis=-1)
    return self._linear(self._centered_mean_shape, self.shape_basis, coeff)

  def albedo(self, albedo_coefficients):
    """PCA albedo `[B, N, 3]` in [0, 255] (unclipped) from `[B, 80]` coefficients."""
    return self._linear(self.mean_tex, self.tex_basis, albedo_coefficients)

  def _linear(self, mean, basis, coeff):
    """mean `[1, 3N]` + basis `[3N, K]` @ coeff `[B, K]`^T -> `[B, N, 3]`."""
    if self._use_ops:
      flat = face_ops.linear_basis(tf.reshape(mean, [-1]), basis, coeff)
    else:
      flat = mean + tf.transpose(tf.matmul(basis, coeff, transpose_b=True))
    return tf.reshape(flat, [-1, self.num_vertices, 3])

  def vertex_normals(self, shape):
    """Unit vertex normals `[B, N, 3]` of shapes `[B, N, 3]` (SPEC 2.7)."""
    if self._use_ops:
      return face_ops.vertex_normals(shape, self.triangles, self.point_buf,
                                     normalize_faces=self.normal_mode == "deep3d")
    v1 = tf.gather(shape, self.triangles[:, 0], axis=1)
    v2 = tf.gather(shape, self.triangles[:, 1], axis=1)
    v3 = tf.gather(shape, self.triangles[:, 2], axis=1)
    face = tf.linalg.cross(v1 - v2, v2 - v3)
    if self.normal_mode == "deep3d":
      face = tf.math.l2_normalize(face, axis=-1)
    face = tf.pad(face, [[0, 0], [0, 1], [0, 0]])  # row F: zero normal for padding
    summed = tf.reduce_sum(tf.gather(face, self.point_buf, axis=1), axis=2)
    return tf.math.l2_normalize(summed, axis=-1)

  def clip_space(self, vertices):
    """Clip-space positions `[B, N, 4]` of posed vertices for renderer.rasterize."""
    return camera_utils.transform_homogeneous(self.world_to_clip, vertices)

  def __call__(self, coefficients):
    """Forms the face of `[B, 257]` coefficients; returns a FaceOutput.

    Raises:
      ValueError: a static shape other than `[B, 257]`; NaN or infinite coefficients (eager).
      tf.errors.InvalidArgumentError: NaN or infinite coefficients inside a tf.function.
    """
    coefficients = _checked_coefficients(coefficients)
    if tf.executing_eagerly():
      bad = np.flatnonzero(~np.all(np.isfinite(coefficients.numpy()), axis=-1))
      if bad.size:
        raise ValueError(f"face coefficients contain NaN or infinity (rows {bad.tolist()[:8]})")
    else:
      coefficients = tf.debugging.check_numerics(coefficients,
                                                 "face coefficients contain NaN or Inf")
    return self._form_impl(coefficients) if self._use_ops else self._form(coefficients)

  def _form_impl(self, coefficients):
    c = split_coefficients(coefficients)
    shape = self.shape(c.identity, c.expression)
    # The albedo basis (memory-bound) after the shape basis, beside the
    # normals (compute-bound), rather than sharing the memory bus with the shape.
    with tf.control_dependencies([shape]):
      albedo = self.albedo(c.albedo)
    pose_and_light = face_ops.pose_light if self._use_ops else posing.pose_and_light
    posed = pose_and_light(shape, self.vertex_normals(shape), albedo, c.angles, c.translation,
                           c.gamma, self.world_to_clip, self.keypoints)
    return FaceOutput(shape=shape, albedo=albedo, **posed._asdict())
