"""The face model's C++ ops on CPU (kernels/face_ops.cc): bases, normals, pose and light.

* `linear_basis`: face formation multiplies ~96 MB of float32 bases (BFM09:
  107,127 rows by 80 + 64 identity/expression and 80 albedo columns) by a few
  coefficient vectors. That product is memory-bound; TensorFlow's GEMM reads
  the bases more than once, the op reads each row once (AVX2 where the CPU
  has it, the same bits without).
* `vertex_normals`: Deep3D's normals (gathers over 70k triangles and the
  8-wide point_buf), which XLA's CPU gathers run ~5x slower.
* `pose_light`: rotation, SH lighting, landmarks and clip space in one pass
  over the vertices (AVX2, 8 vertices at a time): ~1 ms for 4 BFM faces where
  XLA's CPU code for the same formula takes ~3 ms. Its gradient is the
  XLA-compiled vector-Jacobian product of deep3dface.posing's formula.

FaceModel uses them unless TensorFlow sees a GPU (then tf ops under XLA).
"""

import functools
import os

import tensorflow as tf

from deep3dface import constants
from deep3dface import posing
from renderer import _op_library

_LIBRARY_ENV = "DEEP3DFACE_OPS_LIBRARY"
_LIBRARY_GLOB = "_face_ops*.so"
_ops = None


def ops():
  """The module of generated op wrappers (deep3d_linear_basis, ...), loaded once."""
  global _ops
  if _ops is None:
    _ops = _op_library.load_library(os.path.dirname(os.path.abspath(__file__)), _LIBRARY_GLOB,
                                    _LIBRARY_ENV, "//deep3dface:_face_ops.so")
  return _ops


@functools.lru_cache(maxsize=None)
def use_op():
  """Whether `linear_basis` runs the C++ op: True unless TensorFlow sees a GPU.

  Cached: TensorFlow's devices are fixed once its runtime has started.
  """
  return not tf.config.list_logical_devices("GPU")


def linear_basis(mean, basis, coefficients):
  """mean + basis @ coefficients, one row per face.

  Args:
    mean: float32 `[R]`, e.g. the flattened mean shape (x, y, z per vertex).
    basis: float32 `[R, K]`, row-major as stored in BFM files (a constant;
      a tf.Variable falls back to `tf.matmul` so that it gets gradients).
    coefficients: float32 `[B, K]`.

  Returns:
    float32 `[B, R]` with `out[b, r] = mean[r] + sum_k basis[r, k] coefficients[b, k]`.

  Gradients: w.r.t. coefficients and mean (the op treats the basis as constant).
  """
  if isinstance(basis, tf.Variable) or not use_op():
    return mean[None, :] + tf.matmul(coefficients, basis, transpose_b=True)
  return ops().deep3d_linear_basis(mean, basis, coefficients)


def vertex_normals(shape, triangles, point_buf, normalize_faces=True):
  """Deep3D's unit vertex normals (SPEC 2.7).

  Args:
    shape: float32 `[B, N, 3]` vertex positions (any length unit).
    triangles: int32 `[T, 3]` vertex indices in [0, N).
    point_buf: int32 `[N, P]` incident triangles per vertex in [0, T]; T pads.
    normalize_faces: unit face normals before summing (Deep3D), or
      area-weighted (the GCN release's code).

  Returns:
    float32 `[B, N, 3]`: normalize(sum_p face_normal[point_buf[v, p]]), where
    face_normal = (v0 - v1) x (v1 - v2) and normalize(x) = x / max(|x|, 1e-6).

  Gradients: w.r.t. shape.
  """
  return ops().deep3d_vertex_normals(shape, triangles, point_buf,
                                     normalize_faces=normalize_faces)[0]


@tf.RegisterGradient("Deep3dVertexNormals")
def _vertex_normals_grad(op, d_normals, unused_d_summed):
  d_shape = ops().deep3d_vertex_normals_grad(
      op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[1], op.outputs[0], d_normals,
      normalize_faces=op.get_attr("normalize_faces"))
  return [d_shape, None, None]


@tf.RegisterGradient("Deep3dLinearBasis")
def _linear_basis_grad(op, d_combined):
  d_coefficients = ops().deep3d_linear_basis_grad(op.inputs[1], d_combined,
                                                  simd=op.get_attr("simd"))
  return [tf.reduce_sum(d_combined, axis=0), None, d_coefficients]


def pose_light(shape, normals, albedo, angles, translation, gamma, world_to_clip, keypoints):
  """posing.pose_and_light as one C++ op: the same arguments (shapes and units
  documented there; keypoints must lie in [0, N)) and the same PosedFace up
  to float32 rounding (~1e-6 relative). Gradients w.r.t. the first six
  arguments: the XLA-compiled vector-Jacobian product of posing's formula.
  """
  world_to_clip = tf.convert_to_tensor(world_to_clip, tf.float32)
  if world_to_clip.shape.num_elements() not in (None, 16):
    raise ValueError(f"world_to_clip must have shape [4, 4] or [1, 4, 4], got "
                     f"{world_to_clip.shape}")
  return posing.PosedFace(*ops().deep3d_pose_light(
      shape, normals, albedo, angles, translation, gamma,
      tf.reshape(world_to_clip, [4, 4]), keypoints, sh_factors=posing.sh_factors(),
      ambient_prior=constants.SH_AMBIENT_PRIOR, focal=constants.FOCAL,
      principal_point=constants.PRINCIPAL_POINT, camera_distance=constants.CAMERA_DISTANCE))


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _pose_light_vjp(inputs, world_to_clip, keypoints, output_grads):
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = posing.pose_and_light(*inputs, world_to_clip, keypoints)
  return tape.gradient(list(outputs), inputs, output_gradients=output_grads)


@tf.RegisterGradient("Deep3dPoseLight")
def _pose_light_grad(op, *grads):
  grads = [tf.zeros_like(y) if g is None else g for g, y in zip(grads, op.outputs)]
  inputs = list(op.inputs[:6])
  return list(_pose_light_vjp(inputs, op.inputs[6], op.inputs[7], grads)) + [None, None]
