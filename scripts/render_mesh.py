"""Renders a mesh with the differentiable rasterizer and writes a PNG.

  python -m scripts.render_mesh --mesh=cube --output=out/cube.png
  python -m scripts.render_mesh --mesh=path/to/face.obj --image_size=512

The mesh is centred, scaled to unit radius and seen from --camera_distance
along +z, lit by a point light at the camera (tf_mesh_renderer's Phong model).
"""

import os

import numpy as np
from absl import app, flags, logging

from scripts.common import (fail, parse_flags, quiet_tensorflow, require_compiled_ops,
                            require_numbers, user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("mesh", "cube", "'cube', or an OBJ file (v/f lines; extra v columns ignored).")
flags.DEFINE_string("output", "out/render_mesh.png", "PNG to write (atomically).")
MAX_IMAGE_SIZE = 8192  # pixels a side: ~1 GB of float RGBA per image
flags.DEFINE_integer("image_size", 256, "Width and height in pixels.", lower_bound=1,
                     upper_bound=MAX_IMAGE_SIZE)
flags.DEFINE_float("camera_distance", 4.0, "Camera distance in mesh radii.", lower_bound=1e-3)
flags.DEFINE_list("angles", ["0.4", "0.6", "0.0"], "Rotation about x, y, z in radians.")
flags.DEFINE_float("fov_y", 40.0, "Vertical field of view in degrees (tf_mesh_renderer default).",
                   lower_bound=1e-3, upper_bound=179.0)
require_numbers("angles", count=3)


def main(argv):
  del argv
  from PIL import Image
  import tensorflow as tf
  import renderer
  from gcn_face import mesh_io
  from renderer import scenes
  require_compiled_ops()

  if FLAGS.mesh == "cube":
    vertices, triangles, _ = scenes.cube()
  else:
    try:
      vertices, triangles = mesh_io.read_obj(user_path(FLAGS.mesh))
      vertices = vertices.astype(np.float32)
    except ValueError as e:
      fail(str(e))
  vertices = vertices - vertices.mean(0)
  vertices /= np.linalg.norm(vertices, axis=1).max()
  rotation = renderer.camera_utils.euler_matrices([[float(a) for a in FLAGS.angles]])[0, :3, :3]
  vertices = vertices @ rotation.numpy().T
  normals = scenes.vertex_normals(vertices, triangles)
  eye = [0.0, 0.0, FLAGS.camera_distance]
  try:
    image = renderer.mesh_renderer(
        vertices[None], triangles, normals[None],
        np.full((1, len(vertices), 3), 0.8, np.float32), eye, [0.0, 0.0, 0.0], [0.0, 1.0, 0.0],
        [[eye]], [[[0.9, 0.9, 0.9]]], FLAGS.image_size, FLAGS.image_size,
        ambient_color=[[0.15, 0.15, 0.2]], fov_y=FLAGS.fov_y,
        far_clip=2 * FLAGS.camera_distance + 2.0)
  except (tf.errors.ResourceExhaustedError, MemoryError):
    fail(f"--image_size={FLAGS.image_size}: out of memory rendering "
         f"{FLAGS.image_size}x{FLAGS.image_size} pixels; use a smaller size")
  rgba = (np.clip(image.numpy()[0], 0.0, 1.0) * 255).round().astype(np.uint8)
  output = user_path(FLAGS.output)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  tmp = output + ".tmp.png"
  Image.fromarray(rgba, "RGBA").save(tmp)
  os.replace(tmp, output)
  logging.info("rendered %d vertices / %d triangles to %s (%.1f%% covered)", len(vertices),
               len(triangles), output, 100.0 * (rgba[..., 3] > 0).mean())
  print(f"Wrote {output}")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
