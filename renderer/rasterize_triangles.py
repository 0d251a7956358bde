"""tf_mesh_renderer's `rasterize_triangles`: rasterize and interpolate in one call."""

from renderer import _checks
from renderer import camera_utils
from renderer.rasterize import interpolate, rasterize


def rasterize_triangles(vertices, attributes, triangles, projection_matrices, image_width,
                        image_height, background_value):
  """Rasterizes a scene and interpolates vertex attributes (tf_mesh_renderer API).

  Args:
    vertices: float32 `[B, V, 3]` model-space positions.
    attributes: float32 `[B, V, C]` per-vertex attributes to interpolate.
    triangles: int32 `[T, 3]` vertex indices in `[0, V)`. Both windings are drawn.
    projection_matrices: float32 `[B, 4, 4]` model-view-projection matrices
      (clip = M @ [x, y, z, 1]^T).
    image_width: int in [1, 32767], pixels.
    image_height: int in [1, 32767], pixels.
    background_value: float32 `[C]` (or scalar) for pixels no triangle covers.

  Returns:
    float32 `[B, H, W, C]` interpolated attributes. As in tf_mesh_renderer,
    row 0 is the bottom of the image (NDC y = -1).

  Gradients: w.r.t. vertices and attributes.
  """
  vertices = _checks.float_tensor(vertices, "vertices", 3, 3, "[B, V, 3]")
  clip = camera_utils.transform_homogeneous(projection_matrices, vertices)
  raster = rasterize(clip, triangles, image_width, image_height)
  return interpolate(attributes, triangles, raster.triangle_ids, raster.barycentrics,
                     background_value)
