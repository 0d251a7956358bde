"""Differentiable face chips, equivalent to dlib's `get_face_chip(img, shape, 150, 0.25)`.

    chips = face_chip.extract_face_chips(images, landmarks)   # [B, 150, 150, 3]

dlib aligns a face for its recognition network by a least-squares similarity
transform from a template (its 5-point or mean 68-point face, padded) to the
detected landmarks, turns that into a rotated rectangle, and samples the chip
bilinearly, from an image pyramid (5-tap [1 4 6 4 1] filter, factor 2) when the
face is more than twice the chip's size. This module repeats each step in
TensorFlow, so the chip is differentiable with respect to the image. It differs
from dlib only in keeping pixel values as floats (dlib truncates to uint8 after
every pyramid level and after sampling: chips are on average ~0.5/255 brighter
here).

Landmarks are image pixels (x right, y down, origin at the top-left pixel's
centre) in one of three layouts:
  "dlib5":  dlib's 5-point predictor (right eye outer, inner, left eye outer,
            inner, nose base).
  "dlib68": dlib's 68-point predictor (iBUG layout).
  "deep3d5": Deep3D's 5 points (eye centres, nose tip, mouth corners, image-left
            first), placed on dlib's mean face.
"""

import numpy as np
import tensorflow as tf

from deep3dface import constants

CHIP_SIZE = 150  # dlib compute_face_descriptor's chip
CHIP_PADDING = 0.25  # dlib get_face_chip's default padding
# dlib get_face_chip_details: template positions of its 5-point predictor's parts.
DLIB5_TEMPLATE = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                  (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                  (0.4901123135679, 0.6277975316475))
# dlib get_face_chip_details: mean face shape of the 68-point layout's points 17-67.
DLIB68_MEAN_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991,
    0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217,
    0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428,
    0.793132, 0.858516, 0.79751, 0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395,
    0.639268, 0.726104, 0.642159, 0.556721, 0.490127, 0.423532, 0.338094, 0.290379, 0.428096,
    0.490127, 0.552157, 0.689874, 0.553364, 0.490127, 0.42689)
DLIB68_MEAN_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482,
    0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106,
    0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733,
    0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578,
    0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792,
    0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182)
DLIB68_FIRST = 17
# dlib ignores the eyebrows (17-26) and the lower lip (55-59, 65-67).
DLIB68_USED = tuple(i for i in range(DLIB68_FIRST, 68)
                    if not (17 <= i <= 26 or 55 <= i <= 59 or 65 <= i <= 67))
# pyramid_down<2>: separable 5-tap filter and dlib's point mapping p / 2 - offset (x, y).
PYRAMID_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)
PYRAMID_OFFSET = (1.25, 0.75)
LAYOUTS = ("dlib5", "dlib68", "deep3d5")


def template(layout):
  """(landmark indices used, unpadded template points `[P, 2]` in [0, 1]) of a layout."""
  if layout == "dlib5":
    return np.arange(5), np.array(DLIB5_TEMPLATE)
  mean = np.stack([DLIB68_MEAN_X, DLIB68_MEAN_Y], axis=1)
  if layout == "dlib68":
    used = np.array(DLIB68_USED)
    return used, mean[used - DLIB68_FIRST]
  if layout == "deep3d5":
    return np.arange(5), np.stack([mean[np.array(g) - DLIB68_FIRST].mean(0)
                                   for g in constants.DETECTED_LANDMARK_GROUPS_0BASED])
  raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def layout_for(num_points, layout="auto"):
  """The layout of `num_points` landmarks: 5 -> dlib5, 68 -> dlib68 unless given."""
  if layout != "auto":
    expected = 68 if layout == "dlib68" else 5
    if num_points != expected:
      raise ValueError(f"layout {layout!r} needs {expected} landmarks, got {num_points}")
    return layout
  if num_points not in (5, 68):
    raise ValueError(f"landmarks must be [B, 5, 2] or [B, 68, 2], got {num_points} points")
  return "dlib5" if num_points == 5 else "dlib68"


def similarity(source, target):
  """Least-squares similarity x -> [[a, -b], [b, a]] x + t mapping `source` to `target`.

  The same minimiser as dlib's find_similarity_transform (Umeyama, no
  reflection) in closed form. Args `[..., P, 2]`; returns (a, b, t `[..., 2]`).
  """
  ms, mt = tf.reduce_mean(source, -2), tf.reduce_mean(target, -2)
  u, v = source - ms[..., None, :], target - mt[..., None, :]
  norm = tf.reduce_sum(u * u, [-2, -1])
  a = tf.reduce_sum(u * v, [-2, -1]) / norm
  b = tf.reduce_sum(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0], -1) / norm
  t = mt - tf.stack([a * ms[..., 0] - b * ms[..., 1], b * ms[..., 0] + a * ms[..., 1]], -1)
  return a, b, t


def chip_details(landmarks, size=CHIP_SIZE, padding=CHIP_PADDING, layout="auto"):
  """dlib's chip_details of a face: the chip's rectangle in the image and its angle.

  Args:
    landmarks: `[B, P, 2]` image pixels (x, y), P = 5 or 68 (see module doc).
    size: chip side in pixels.
    padding: template padding (0.25: dlib's default for get_face_chip).
    layout: "auto", "dlib5", "dlib68" or "deep3d5".

  Returns:
    (rect `[B, 4]` float64 (left, top, right, bottom) with dlib's inclusive
    corners, angle `[B]` radians).
  """
  landmarks = tf.cast(tf.convert_to_tensor(landmarks), tf.float64)
  if landmarks.shape.rank != 3 or landmarks.shape[-1] != 2:
    raise ValueError(f"landmarks must be [B, P, 2], got shape {landmarks.shape}")
  indices, points = template(layout_for(landmarks.shape[1], layout))
  chip_points = tf.constant((padding + points) / (2.0 * padding + 1.0) * size, tf.float64)
  a, b, t = similarity(tf.broadcast_to(chip_points, tf.shape(tf.gather(landmarks, indices, axis=1))),
                       tf.gather(landmarks, indices, axis=1))
  half = size / 2.0
  centre = tf.stack([a * half - b * half, b * half + a * half], -1) + t
  extent = (size * tf.sqrt(a * a + b * b) - 1.0) / 2.0  # centered_drect subtracts 1
  rect = tf.concat([centre - extent[:, None], centre + extent[:, None]], -1)
  return rect, tf.atan2(b, a)


def _rect_area(rect):
  width = tf.maximum(rect[..., 2] - rect[..., 0] + 1.0, 0.0)
  height = tf.maximum(rect[..., 3] - rect[..., 1] + 1.0, 0.0)
  return width * height


def _rect_down(rect):
  ox, oy = PYRAMID_OFFSET
  return rect / 2.0 - tf.constant([ox, oy, ox, oy], tf.float64)


def _rotated_corners(rect, angle):
  """tl, tr, bl `[..., 2]` of `rect` `[..., 4]` rotated by `angle` `[...]` about its centre
  (dlib rotate_point)."""
  centre = tf.stack([rect[..., 0] + rect[..., 2], rect[..., 1] + rect[..., 3]], -1) / 2.0
  c, s = tf.cos(angle), tf.sin(angle)

  def rotate(x, y):
    dx, dy = x - centre[..., 0], y - centre[..., 1]
    return centre + tf.stack([c * dx - s * dy, s * dx + c * dy], -1)

  return (rotate(rect[..., 0], rect[..., 1]), rotate(rect[..., 2], rect[..., 1]),
          rotate(rect[..., 0], rect[..., 3]))


def _sample_points(rect, angle, size):
  """dlib's chip sampling grid of `rect` `[..., 4]` at `angle` `[...]`: image pixels
  `[..., size, size, 2]` (x, y) of the chip's rows and columns."""
  tl, tr, bl = (p[..., None, None, :] for p in _rotated_corners(rect, angle))
  steps = tf.range(size, dtype=tf.float64) / (size - 1.0)
  cols, rows = steps[None, :, None], steps[:, None, None]
  return tl + cols * (tr - tl) + rows * (bl - tl)


def pyramid_down(image):
  """dlib's pyramid_down<2> of `[H, W, C]` (5x5 [1 4 6 4 1]^2 / 256, every other pixel,
  output `[(H - 3) // 2, (W - 3) // 2, C]`), without uint8 rounding."""
  taps = np.array(PYRAMID_TAPS) / 16.0
  channels = image.shape[-1]
  kernel = tf.constant(np.tile(np.outer(taps, taps)[:, :, None, None], (1, 1, channels, 1)),
                       tf.float32)
  return tf.nn.depthwise_conv2d(image[None], kernel, [1, 2, 2, 1], "VALID")[0]


def _bilinear(images, x, y):
  """dlib interpolate_bilinear of `images` `[B, H, W, C]` at pixels `x, y` `[B, ...]`
  (float64): `[B, ..., C]`, zero where any of the 4 neighbours is outside."""
  shape = tf.shape(images, tf.int64)
  h, w = shape[1], shape[2]
  x0, y0 = tf.floor(x), tf.floor(y)
  fx, fy = tf.cast(x - x0, tf.float32)[..., None], tf.cast(y - y0, tf.float32)[..., None]
  x0, y0 = tf.cast(x0, tf.int64), tf.cast(y0, tf.int64)
  inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
  x0c, y0c = tf.clip_by_value(x0, 0, tf.maximum(w - 2, 0)), tf.clip_by_value(y0, 0,
                                                                             tf.maximum(h - 2, 0))
  x1c, y1c = tf.minimum(x0c + 1, w - 1), tf.minimum(y0c + 1, h - 1)
  # Rows of the batch's pixels as one [B * H * W, C] table: one gather per neighbour.
  pixels = tf.reshape(images, tf.stack([-1, shape[3]]))
  first = tf.reshape(tf.range(shape[0]) * h * w, [-1] + [1] * (x.shape.rank - 1))

  def at(yy, xx):
    return tf.gather(pixels, first + yy * w + xx)

  top = at(y0c, x0c) * (1.0 - fx) + at(y0c, x1c) * fx
  bottom = at(y1c, x0c) * (1.0 - fx) + at(y1c, x1c) * fx
  value = top * (1.0 - fy) + bottom * fy
  return tf.where(inside[..., None], value, tf.zeros_like(value))


def _truncate(x):
  """dlib's assignment of a float to a uint8 pixel (truncation), with a straight-through
  gradient."""
  return x + tf.stop_gradient(tf.floor(x) - x)


def _extract_one(image, rect, angle, size, dlib_rounding):
  """One chip `[size, size, C]` from `[H, W, C]`, as dlib's extract_image_chips."""
  h, w = tf.cast(tf.shape(image)[0], tf.float64), tf.cast(tf.shape(image)[1], tf.float64)
  # Pyramid depth and the crop dlib builds it from (a 2 px border per level).
  grow, _ = tf.while_loop(lambda g, r: _needs_pyramid(r, size),
                          lambda g, r: (g * 2.0 + 2.0, _rect_down(r)),
                          (tf.constant(2.0, tf.float64), rect))
  tl, tr, bl = _rotated_corners(rect, angle)
  br = tr + bl - tl
  corners = tf.stack([tl, tr, bl, br])
  last = tf.stack([w - 1.0, h - 1.0])
  low = tf.clip_by_value(tf.reduce_min(corners, 0) - grow, 0.0, last)
  high = tf.clip_by_value(tf.reduce_max(corners, 0) + grow, 0.0, last)
  low, high = tf.floor(low + 0.5), tf.floor(high + 0.5)  # drectangle -> rectangle
  high = tf.maximum(high, low)
  box = tf.cast(tf.concat([low, high], 0), tf.int32)
  sub = image[box[1]:box[3] + 1, box[0]:box[2] + 1]
  rect = rect - tf.tile(low, [2])

  def body(level_rect, level_image):
    down = pyramid_down(level_image)
    return _rect_down(level_rect), _truncate(down) if dlib_rounding else down

  rect, sub = tf.while_loop(lambda r, _: _needs_pyramid(r, size), body, (rect, sub),
                            shape_invariants=(rect.shape, tf.TensorShape([None, None,
                                                                          image.shape[-1]])))
  return _extract_direct(sub[None], rect[None], angle[None], size, dlib_rounding)[0]


def _extract_direct(images, rect, angle, size, dlib_rounding):
  """All chips `[B, size, size, C]` sampled from the images themselves: dlib's result when
  no chip needs a pyramid level (its crop then holds every sample and its neighbours, or
  ends where the image does)."""
  points = _sample_points(rect, angle, size)
  chips = _bilinear(images, points[..., 0], points[..., 1])
  return _truncate(chips) if dlib_rounding else chips


def _needs_pyramid(rect, size):
  """Whether dlib samples a chip `[..., 4]` from a pyramid level (rect more than about twice
  the chip's size)."""
  return _rect_area(_rect_down(rect)) > float(size * size)


def extract_face_chips(images, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING, layout="auto",
                       dlib_rounding=False):
  """Face chips as dlib's `get_face_chip(image, shape, size, padding)`, differentiable.

  Args:
    images: float `[B, H, W, C]` (RGB 0-255 for the recognisers).
    landmarks: `[B, P, 2]` image pixels (x, y), P = 5 or 68; see the module doc.
    size: chip side (150 for dlib's ResNet).
    padding: template padding (dlib's 0.25).
    layout: "auto" (5 -> dlib5, 68 -> dlib68), "dlib5", "dlib68" or "deep3d5".
    dlib_rounding: truncate like dlib's uint8 images after each pyramid level
      and after sampling (gradients pass straight through); for uint8 inputs
      the chip then equals dlib's.

  Returns:
    float32 `[B, size, size, C]`, zero where the chip leaves the image.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  if images.shape.rank != 4:
    raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
  rect, angle = chip_details(landmarks, size, padding, layout)
  if images.shape[0] is not None and rect.shape[0] is not None and images.shape[0] != rect.shape[0]:
    raise ValueError(f"{images.shape[0]} images but {rect.shape[0]} landmark sets")
  # Faces in aligned crops (training, reconstruction) need no pyramid: one batched gather
  # instead of a loop over the images (a training step's chips: 62 -> 24 ms of op time at
  # 2 threads, 36 -> 23 at 1, forward and backward).
  return tf.cond(
      tf.reduce_any(_needs_pyramid(rect, size)),
      lambda: tf.map_fn(
          lambda args: _extract_one(args[0], args[1], args[2], size, dlib_rounding),
          (images, rect, angle),
          fn_output_signature=tf.TensorSpec([size, size, images.shape[-1]], tf.float32)),
      lambda: _extract_direct(images, rect, angle, size, dlib_rounding))


def chip_scale(landmarks, size=CHIP_SIZE, padding=CHIP_PADDING, layout="auto"):
  """Image pixels per chip pixel `[B]` (> 2 means dlib samples from a pyramid level)."""
  rect, _ = chip_details(landmarks, size, padding, layout)
  return (rect[:, 2] - rect[:, 0] + 1.0) / size

