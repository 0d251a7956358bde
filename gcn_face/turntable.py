"""turntable.gif: a reconstructed face turning left and right, textures side by side, rendered
with this package's Phong renderer (renderer.mesh_renderer) under a head light."""

import math

import numpy as np
import PIL.Image
import tensorflow as tf

import renderer
from gcn_face import atomic_file, panels

FRAMES = 24
MAX_DEGREES = 60.0  # the turn's amplitude either side of frontal
FRAME_MS = 80  # 12.5 frames a second: one turn left and back right in about 2 s
SIZE = 224
FOV_Y_DEGREES = 20.0
AMBIENT = 0.35  # share of ambient light; the rest is a point light at the camera
BACKGROUND = 255.0


def yaw_angles(frames=FRAMES, max_degrees=MAX_DEGREES):
  """Degrees `[frames]`: one sinusoidal swing 0 -> +max -> 0 -> -max -> back (looping)."""
  return max_degrees * np.sin(2.0 * np.pi * np.arange(frames) / frames)


def render(shape, triangles, albedos, degrees, size=SIZE):
  """Renders each albedo on the shape seen from each yaw angle.

  Args:
    shape: `[N, 3]` canonical vertices (y up, the face looking at +z), any unit.
    triangles: `[T, 3]` 0-based.
    albedos: list of `[N, 3]` sRGB colours in [0, 255].
    degrees: `[F]` camera yaw angles, degrees (positive: the camera moves to the face's left).
    size: image width and height, pixels.

  Returns:
    uint8 `[F, size, size * len(albedos), 3]`: per frame the textures side by side on white.
  """
  shape = np.asarray(shape, np.float64).reshape(-1, 3)
  centre = 0.5 * (shape.min(0) + shape.max(0))
  radius = float(np.linalg.norm(shape - centre, axis=1).max())
  distance = radius / math.sin(math.radians(FOV_Y_DEGREES) / 2.0) * 1.02
  theta = np.radians(np.asarray(degrees, np.float64))
  eyes = centre + distance * np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
  frames, textures = len(theta), len(albedos)
  batch = frames * textures
  eyes = np.repeat(eyes, textures, axis=0)  # frame-major: [f0 t0, f0 t1, f1 t0, ...]
  vertices = np.broadcast_to(shape - centre, (batch,) + shape.shape)
  normals = _vertex_normals(shape, triangles)
  colors = np.tile(np.stack([np.clip(a, 0, 255) / 255.0 for a in albedos]), (frames, 1, 1))
  image = renderer.mesh_renderer(
      tf.constant(vertices, tf.float32), tf.constant(np.asarray(triangles, np.int32)),
      tf.constant(np.broadcast_to(normals, vertices.shape), tf.float32),
      tf.constant(colors, tf.float32), tf.constant(eyes - centre, tf.float32),
      tf.zeros([batch, 3]), tf.constant(np.tile([0.0, 1.0, 0.0], (batch, 1)), tf.float32),
      tf.constant((eyes - centre)[:, None], tf.float32),
      tf.fill([batch, 1, 3], 1.0 - AMBIENT), size, size,
      ambient_color=tf.fill([batch, 3], AMBIENT), fov_y=FOV_Y_DEGREES,
      near_clip=distance * 0.1, far_clip=distance * 10.0).numpy()
  rgb = np.clip(image[..., :3], 0.0, 1.0) * 255.0
  alpha = image[..., 3:]
  rgb = rgb * alpha + BACKGROUND * (1.0 - alpha)
  rgb = rgb.reshape(frames, textures, size, size, 3).transpose(0, 2, 1, 3, 4)
  return np.clip(np.round(rgb.reshape(frames, size, textures * size, 3)), 0, 255).astype(np.uint8)


def _vertex_normals(shape, triangles):
  """Area-weighted unit vertex normals, oriented to agree with the face's +z (both windings
  are drawn, so only the lighting needs the orientation)."""
  t = np.asarray(triangles, np.int64)
  cross = np.cross(shape[t[:, 1]] - shape[t[:, 0]], shape[t[:, 2]] - shape[t[:, 0]])
  normals = np.zeros_like(shape)
  for k in range(3):
    np.add.at(normals, t[:, k], cross)
  if normals[:, 2].sum() < 0:
    normals = -normals
  return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def frames_with_labels(shape, triangles, albedos, labels, frames=FRAMES,
                       max_degrees=MAX_DEGREES, size=SIZE):
  """uint8 `[F, LABEL_HEIGHT + size, size * len(albedos), 3]`: `render` under a label row."""
  images = render(shape, triangles, albedos, yaw_angles(frames, max_degrees), size)
  row = panels.label_row(labels, size)
  return np.concatenate([np.broadcast_to(row, (len(images),) + row.shape), images], axis=1)


def write_gif(path, frames, frame_ms=FRAME_MS):
  """Writes uint8 `[F, H, W, 3]` frames as a looping GIF atomically."""
  images = [PIL.Image.fromarray(f) for f in frames]
  with atomic_file.atomic_path(path) as tmp:
    images[0].save(tmp, "GIF", save_all=True, append_images=images[1:], duration=frame_ms,
                   loop=0, disposal=1)
