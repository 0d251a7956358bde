"""Low-level differentiable primitives: rasterize and interpolate.

These are thin wrappers over the C++ ops in kernels/ (nvdiffrast-style): the
rasterizer turns clip-space triangles into per-pixel triangle ids,
perspective-correct barycentrics and depth; interpolation turns per-vertex
attributes into images. Gradients flow from images to attributes and, through
the barycentrics, to the clip-space x, y and w of the vertices.

Image convention of these primitives (as tf_mesh_renderer's op): row 0 is at
NDC y = -1, i.e. images are stored bottom-up; pixel (col, row) has its centre at
NDC ((2 col + 1 - W) / W, (2 row + 1 - H) / H). mesh_renderer() flips rows.
"""

import collections

import tensorflow as tf

from renderer import _checks
from renderer._op_library import ops

EMPTY_TRIANGLE_ID = -1  # triangle id of pixels no triangle covers

RasterOutput = collections.namedtuple("RasterOutput",
                                      ["triangle_ids", "barycentrics", "depth"])


def rasterize(clip_vertices, triangles, image_width, image_height, name=None):
  """Rasterizes a batch of meshes given in clip space.

  Args:
    clip_vertices: float32 `[B, V, 4]` homogeneous clip-space positions
      (x, y, z, w), e.g. `camera_utils.transform_homogeneous(P @ V, vertices)`.
      Triangles may cross w = 0; those with all w < 0 are not drawn, nor are
      triangles with a non-finite coordinate.
    triangles: int32 `[T, 3]` vertex indices in `[0, V)`, shared by the batch.
      Both windings are drawn (no back-face culling).
    image_width: int in [1, 32767], pixels.
    image_height: int in [1, 32767], pixels.
    name: optional op name.

  Returns:
    RasterOutput with
      triangle_ids: int32 `[B, H, W]`, the visible triangle, -1 where empty.
      barycentrics: float32 `[B, H, W, 3]`, perspective-correct, each in
        [0, 1] summing to 1 on covered pixels, 0 where empty.
      depth: float32 `[B, H, W]`, NDC z in [-1, 1] of the visible surface,
        1 where empty (no gradient).

  Gradients: w.r.t. clip_vertices (x, y, w) through the barycentrics.

  Raises:
    ValueError: static shape/dtype problems or a non-positive image size.
    tf.errors.InvalidArgumentError: a triangle index out of range.
  """
  with tf.name_scope(name or "rasterize"):
    clip_vertices = _checks.float_tensor(clip_vertices, "clip_vertices", 3, 4, "[B, V, 4]")
    triangles = _checks.index_tensor(triangles, "triangles", 2, 3, "[T, 3]")
    width = _checks.image_size(image_width, "image_width")
    height = _checks.image_size(image_height, "image_height")
    ids, bary, depth = ops().renderer_rasterize(
        clip_vertices, triangles, image_width=width, image_height=height)
    return RasterOutput(ids, bary, depth)


def interpolate(attributes, triangles, triangle_ids, barycentrics, background_value=None,
                name=None):
  """Interpolates per-vertex attributes over the rasterized pixels.

  Args:
    attributes: float32 `[B, V, C]` per-vertex attributes (any units).
    triangles: int32 `[T, 3]`, the triangles given to `rasterize`.
    triangle_ids: int32 `[B, H, W]` from `rasterize` (-1 = empty).
    barycentrics: float32 `[B, H, W, 3]` from `rasterize`.
    background_value: float32 `[C]` (or a scalar) for empty pixels; 0 if None.
    name: optional op name.

  Returns:
    float32 `[B, H, W, C]`: sum_i b_i * attributes[tri_i] on covered pixels,
    background_value elsewhere.

  Gradients: w.r.t. attributes, barycentrics (hence vertices) and background.
  """
  with tf.name_scope(name or "interpolate"):
    attributes = _checks.float_tensor(attributes, "attributes", 3, None, "[B, V, C]")
    triangles = _checks.index_tensor(triangles, "triangles", 2, 3, "[T, 3]")
    triangle_ids = _checks.index_tensor(triangle_ids, "triangle_ids", 3, None, "[B, H, W]")
    barycentrics = _checks.float_tensor(barycentrics, "barycentrics", 4, 3, "[B, H, W, 3]")
    channels = tf.shape(attributes)[2]
    if background_value is None:
      background = tf.zeros([channels], tf.float32)
    else:
      background = _checks.float_tensor(background_value, "background_value")
      if background.shape.rank is not None and background.shape.rank > 1:
        raise ValueError(f"background_value must have shape [C] or be a scalar, got shape "
                         f"{background.shape}")
      background = tf.broadcast_to(background, [channels])
    return ops().renderer_interpolate(attributes, triangles, triangle_ids, barycentrics,
                                      background)


@tf.RegisterGradient("RendererRasterize")
def _rasterize_grad(op, unused_d_ids, d_barycentrics, unused_d_depth):
  if d_barycentrics is None:
    return [None, None]
  d_clip = ops().renderer_rasterize_grad(op.inputs[0], op.inputs[1], op.outputs[0],
                                         op.outputs[1], d_barycentrics)
  return [d_clip, None]


@tf.RegisterGradient("RendererInterpolate")
def _interpolate_grad(op, d_images):
  d_attributes, d_barycentrics, d_background = ops().renderer_interpolate_grad(
      op.inputs[0], op.inputs[1], op.inputs[2], op.inputs[3], d_images)
  return [d_attributes, None, None, d_barycentrics, d_background]
