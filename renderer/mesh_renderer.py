"""Phong-shaded rendering of triangle meshes (tf_mesh_renderer's mesh_renderer).

Same arguments, defaults, broadcasting and output as google/tf_mesh_renderer,
on this package's C++ rasterizer. One documented deviation: the specular term
no longer L2-normalises the reflection/camera dot products across all pixels of
the image (a bug of the original); `legacy_specular=True` restores it.
"""

import tensorflow as tf

from renderer import _checks
from renderer import camera_utils
from renderer._op_library import ops
from renderer.rasterize import interpolate, rasterize

# tf_mesh_renderer's defaults.
DEFAULT_FOV_Y = 40.0  # degrees
DEFAULT_NEAR_CLIP = 0.01
DEFAULT_FAR_CLIP = 10.0
BACKGROUND_ATTRIBUTE = -1.0  # marks empty pixels in every interpolated channel


def _per_image(value, name, batch_size, inner_shape):
  """Broadcasts a per-scene parameter to [B] + inner_shape (tf_mesh_renderer rules)."""
  layout = "[B" + "".join(f", {d}" for d in inner_shape) + "]"
  t = _checks.float_tensor(value, name)
  rank = t.shape.rank
  if rank == len(inner_shape):
    return tf.broadcast_to(t[None], [batch_size] + inner_shape)
  if rank == len(inner_shape) + 1:
    if t.shape[0] is not None and isinstance(batch_size, int) and t.shape[0] != batch_size:
      raise ValueError(f"{name} must have shape {layout}, got shape {t.shape}")
    return t
  raise ValueError(f"{name} must have shape {layout} or {inner_shape}, got shape {t.shape}")


def phong_shader(normals, alphas, pixel_positions, light_positions, light_intensities,
                 diffuse_colors=None, camera_position=None, specular_colors=None,
                 shininess_coefficients=None, ambient_color=None, legacy_specular=False):
  """Per-pixel Phong lighting of rasterized buffers.

  Args:
    normals: float32 `[B, H, W, 3]` unit world-space normals.
    alphas: float32 `[B, H, W]` coverage in {0, 1}.
    pixel_positions: float32 `[B, H, W, 3]` world-space positions.
    light_positions: float32 `[B, L, 3]` point-light positions.
    light_intensities: float32 `[B, L, 3]` RGB intensities (may exceed 1).
    diffuse_colors: float32 `[B, H, W, 3]` diffuse albedo in [0, 1].
    camera_position: float32 `[B, 3]`; if given, specular light is added.
    specular_colors: float32 `[B, H, W, 3]` specular albedo in [0, 1].
    shininess_coefficients: float32 broadcastable to `[B, H, W]`.
    ambient_color: float32 `[B, 3]` ambient light, or None for black.
    legacy_specular: reproduce tf_mesh_renderer's per-image normalisation of
      the specular dot products.

  Returns:
    float32 `[B, H, W, 4]` RGBA, RGB in [0, inf) and zero where alpha <= 0.5,
    rows flipped so that row 0 is the top of the image (NDC y = +1).
  """
  return _phong_shader_xla(normals, alphas, pixel_positions, light_positions,
                           light_intensities, diffuse_colors, camera_position, specular_colors,
                           shininess_coefficients, ambient_color, legacy_specular)


def _phong_shader(normals, alphas, pixel_positions, light_positions, light_intensities,
                  diffuse_colors, camera_position, specular_colors, shininess_coefficients,
                  ambient_color, legacy_specular):
  batch_size = tf.shape(normals)[0]
  height, width = tf.shape(normals)[1], tf.shape(normals)[2]
  normals = tf.reshape(normals, [batch_size, 1, -1, 3])  # [B, 1, P, 3]
  positions = tf.reshape(pixel_positions, [batch_size, 1, -1, 3])
  diffuse = tf.reshape(diffuse_colors, [batch_size, -1, 3])

  colors = tf.zeros_like(diffuse)
  if ambient_color is not None:
    colors = ambient_color[:, None, :] * diffuse
  to_lights = tf.math.l2_normalize(light_positions[:, :, None, :] - positions, axis=3)
  n_dot_l = tf.clip_by_value(tf.reduce_sum(normals * to_lights, axis=3), 0.0, 1.0)  # [B, L, P]
  colors += tf.einsum("blp,bpc,blc->bpc", n_dot_l, diffuse, light_intensities)

  if camera_position is not None:
    specular = tf.reshape(specular_colors, [batch_size, -1, 3])
    reflected = tf.math.l2_normalize(2.0 * n_dot_l[..., None] * normals - to_lights, axis=3)
    to_camera = tf.math.l2_normalize(camera_position[:, None, None, :] - positions, axis=3)
    r_dot_c = tf.reduce_sum(to_camera * reflected, axis=3)  # [B, L, P]
    if legacy_specular:
      r_dot_c = tf.math.l2_normalize(r_dot_c, axis=2)
    r_dot_c = tf.where(n_dot_l != 0.0, tf.clip_by_value(r_dot_c, 0.0, 1.0), 0.0)
    shininess = tf.reshape(tf.broadcast_to(shininess_coefficients, [batch_size, height, width]),
                           [batch_size, 1, -1])
    specularity = tf.pow(r_dot_c, shininess)
    colors += tf.einsum("blp,bpc,blc->bpc", specularity, specular, light_intensities)

  rgb = tf.reshape(colors, [batch_size, height, width, 3])
  alpha = tf.reshape(alphas, [batch_size, height, width, 1])
  rgb = tf.where(alpha > 0.5, rgb, 0.0)
  return tf.reverse(tf.concat([rgb, alpha], axis=3), axis=[1])


# The per-pixel and per-vertex stages are chains of small element-wise ops;
# XLA fuses each into a few loops (measured: shading 45 ms -> 2 ms at
# B=4, 224x224, one thread). The C++ rasterizer runs between them.
_phong_shader_xla = tf.function(_phong_shader, jit_compile=True, reduce_retracing=True)


# The vertex transform as a few fused loops instead of a chain of broadcast
# ops (XLA), and its gradient written out, also under XLA: TensorFlow's
# gradient of the broadcasts took 3.5 ms at B = 4, V = 35,709 (1 thread), this
# one 1.6 ms.
_transform_xla = tf.function(camera_utils.transform_homogeneous, jit_compile=True,
                             reduce_retracing=True)


@tf.function(jit_compile=True, reduce_retracing=True)
def _transform_grad_xla(matrices, vertices, d_clip):
  """d matrices [B, 4, 4] and d vertices [B, V, 3] of clip = [vertices, 1] M^T."""
  m = matrices[:, None, :, :3]  # [B, 1, 4, 3]: M's rows without the translation column
  d_vertices = (d_clip[..., 0:1] * m[..., 0, :] + d_clip[..., 1:2] * m[..., 1, :] +
                d_clip[..., 2:3] * m[..., 2, :] + d_clip[..., 3:4] * m[..., 3, :])
  homogeneous = tf.concat([vertices, tf.ones_like(vertices[..., :1])], axis=2)
  return tf.einsum("bvi,bvj->bij", d_clip, homogeneous), d_vertices


@tf.custom_gradient
def _clip_space(matrices, vertices):
  """[B, 4, 4], [B, V, 3] -> clip-space [B, V, 4] (camera_utils.transform_homogeneous)."""
  def grad(d_clip):
    return _transform_grad_xla(matrices, vertices, d_clip)
  return _transform_xla(matrices, vertices), grad


@tf.function(jit_compile=True, reduce_retracing=True)
def _shade_pixels(pixels, light_positions, light_intensities, camera_position,
                  shininess_coefficients, ambient_color, legacy_specular):
  """Splits interpolated [normal, position, diffuse(, specular, shininess)] and shades."""
  diffuse = pixels[..., 6:9]
  specular = shininess = None
  if camera_position is not None:
    specular = pixels[..., 9:12]
    if shininess_coefficients is None:
      shininess = pixels[..., 12]
    else:
      shininess = tf.reshape(shininess_coefficients, [-1, 1, 1])
  alphas = tf.cast(tf.reduce_any(diffuse >= 0.0, axis=3), tf.float32)
  return _phong_shader(tf.math.l2_normalize(pixels[..., 0:3], axis=3), alphas,
                       pixels[..., 3:6], light_positions, light_intensities, diffuse,
                       camera_position, specular, shininess, ambient_color, legacy_specular)


def _phong_shade(normals, positions, diffuse_colors, triangles, raster, light_positions,
                 light_intensities, ambient_color, specular_colors=None, camera_position=None,
                 shininess=None):
  """Interpolation and _shade_pixels (without legacy_specular) as one C++ op.

  The interpolated buffer is never stored (kernels/phong_core.h). Vertex
  arrays are [B, V, 3]; shininess is [B] (or a scalar) or per vertex [B, V],
  used with specular_colors and camera_position.
  """
  batch_size = tf.shape(normals)[0]
  if ambient_color is None:
    ambient_color = tf.zeros([batch_size, 3])
  if specular_colors is None:
    specular_colors = tf.zeros([batch_size, 0, 3])
    camera_position = tf.zeros([batch_size, 3])
    shininess = tf.zeros([batch_size])
  elif shininess.shape.rank != 2:
    shininess = tf.broadcast_to(tf.reshape(shininess, [-1]), [batch_size])
  return ops().renderer_phong_shade(normals, positions, diffuse_colors, specular_colors,
                                    triangles, raster.triangle_ids, raster.barycentrics,
                                    light_positions, light_intensities, ambient_color,
                                    camera_position, shininess)


_VERTEX_ARRAY_INPUTS = (0, 1, 2, 3)  # normals, positions, diffuse, specular


def _unneeded_vertex_arrays(op):
  """The vertex-array inputs whose gradient nobody asked for.

  GradientTape tells (op.skip_input_indices: unwatched inputs); graph-mode
  tf.gradients does not, and then every gradient is computed.
  """
  skip = getattr(op, "skip_input_indices", None) or ()
  return [i for i in _VERTEX_ARRAY_INPUTS if i in skip]


@tf.RegisterGradient("RendererPhongShade")
def _phong_shade_grad(op, d_rgba):
  skip = _unneeded_vertex_arrays(op)
  grads = list(ops().renderer_phong_shade_grad(*op.inputs, d_rgba, skip_vertex_arrays=skip))
  for i in skip:  # the op returns [B, 0, 3] for these
    grads[i] = None
  # No gradients for the integer inputs: triangles and triangle_ids.
  return grads[:4] + [None, None] + grads[4:]


def mesh_renderer(vertices, triangles, normals, diffuse_colors, camera_position,
                  camera_lookat, camera_up, light_positions, light_intensities, image_width,
                  image_height, specular_colors=None, shininess_coefficients=None,
                  ambient_color=None, fov_y=DEFAULT_FOV_Y, near_clip=DEFAULT_NEAR_CLIP,
                  far_clip=DEFAULT_FAR_CLIP, legacy_specular=False):
  """Renders Phong-shaded meshes (tf_mesh_renderer's `mesh_renderer`).

  Args:
    vertices: float32 `[B, V, 3]` world-space positions.
    triangles: int32 `[T, 3]` vertex indices; both windings are drawn.
    normals: float32 `[B, V, 3]` unit vertex normals.
    diffuse_colors: float32 `[B, V, 3]` diffuse albedo in [0, 1]; a pixel is
      covered when any interpolated channel is >= 0.
    camera_position: float32 `[B, 3]` or `[3]`, world units.
    camera_lookat: float32 `[B, 3]` or `[3]`, a point on the optical axis.
    camera_up: float32 `[B, 3]` or `[3]`, the camera's up direction.
    light_positions: float32 `[B, L, 3]` point lights (world units).
    light_intensities: float32 `[B, L, 3]` RGB light intensities.
    image_width: int in [1, 32767], pixels.
    image_height: int in [1, 32767], pixels.
    specular_colors: float32 `[B, V, 3]` in [0, 1], or None (no specular).
    shininess_coefficients: float, `[]`, `[B]` or `[B, V]` Phong exponents;
      required together with specular_colors.
    ambient_color: float32 `[B, 3]` (or `[3]`) ambient light, None for black.
    fov_y: float, `[]` or `[B]`, vertical field of view in degrees.
    near_clip: float, `[]` or `[B]`, near plane distance (world units).
    far_clip: float, `[]` or `[B]`, far plane distance (world units).
    legacy_specular: reproduce tf_mesh_renderer's specular normalisation bug.

  Returns:
    float32 `[B, H, W, 4]` RGBA; row 0 is the top of the image. RGB is the
    linear lit colour in [0, inf) (0 on background), alpha is 1 on covered
    pixels and 0 elsewhere.

  Gradients: w.r.t. vertices, normals, colours, lights and camera.
  """
  width = _checks.image_size(image_width, "image_width")
  height = _checks.image_size(image_height, "image_height")
  vertices = _checks.float_tensor(vertices, "vertices", 3, 3, "[B, V, 3]")
  normals = _checks.float_tensor(normals, "normals", 3, 3, "[B, V, 3]")
  diffuse_colors = _checks.float_tensor(diffuse_colors, "diffuse_colors", 3, 3, "[B, V, 3]")
  light_positions = _checks.float_tensor(light_positions, "light_positions", 3, 3,
                                         "[B, L, 3]")
  light_intensities = _checks.float_tensor(light_intensities, "light_intensities", 3, 3,
                                           "[B, L, 3]")
  batch_size = vertices.shape[0] if vertices.shape[0] is not None else tf.shape(vertices)[0]
  camera_position = _per_image(camera_position, "camera_position", batch_size, [3])
  camera_lookat = _per_image(camera_lookat, "camera_lookat", batch_size, [3])
  camera_up = _per_image(camera_up, "camera_up", batch_size, [3])
  fov_y = _per_image(fov_y, "fov_y", batch_size, [])
  near_clip = _per_image(near_clip, "near_clip", batch_size, [])
  far_clip = _per_image(far_clip, "far_clip", batch_size, [])
  if ambient_color is not None:
    ambient_color = _per_image(ambient_color, "ambient_color", batch_size, [3])
  if (specular_colors is None) != (shininess_coefficients is None):
    raise ValueError("specular_colors and shininess_coefficients must be given together")

  if specular_colors is not None:
    specular_colors = _checks.float_tensor(specular_colors, "specular_colors", 3, 3,
                                           "[B, V, 3]")
    shininess_coefficients = _checks.float_tensor(shininess_coefficients,
                                                  "shininess_coefficients")
    if shininess_coefficients.shape.rank > 2:
      raise ValueError("shininess_coefficients must have shape at most [B, V], got shape "
                       f"{shininess_coefficients.shape}")

  view = camera_utils.look_at(camera_position, camera_lookat, camera_up)
  projection = camera_utils.perspective(width / height, fov_y, near_clip,
                                        far_clip)
  raster = rasterize(_clip_space(tf.matmul(projection, view), vertices), triangles, width,
                     height)
  if legacy_specular:
    return _legacy_render(normals, vertices, diffuse_colors, triangles, raster,
                          light_positions, light_intensities, ambient_color, specular_colors,
                          camera_position, shininess_coefficients)
  return _phong_shade(normals, vertices, diffuse_colors, triangles, raster, light_positions,
                      light_intensities, ambient_color, specular_colors, camera_position,
                      shininess_coefficients)


def _legacy_render(normals, positions, diffuse_colors, triangles, raster, light_positions,
                   light_intensities, ambient_color, specular_colors, camera_position,
                   shininess):
  """tf_mesh_renderer's pipeline: interpolate all attributes, shade in TensorFlow."""
  attributes = [normals, positions, diffuse_colors]
  per_vertex_shininess = specular_colors is not None and shininess.shape.rank == 2
  if specular_colors is not None:
    attributes.append(specular_colors)
    if per_vertex_shininess:
      attributes.append(shininess[:, :, None])
  vertex_attributes = tf.concat(attributes, axis=2)
  pixels = interpolate(vertex_attributes, triangles, raster.triangle_ids, raster.barycentrics,
                       tf.fill([tf.shape(vertex_attributes)[2]], BACKGROUND_ATTRIBUTE))
  return _shade_pixels(pixels, light_positions, light_intensities,
                       camera_position if specular_colors is not None else None,
                       None if per_vertex_shininess else shininess, ambient_color, True)
