"""The release's skin-mask morphology (SPEC 6.1).

E(a) = erode(erode(dilate(a, 5x5 ellipse), 9x9 ellipse), 9x9 ellipse): binary
operations with OpenCV's elliptical elements, 'SAME' size, samples outside the
image ignored (they neither add to a dilation nor remove from an erosion).
"""

import numpy as np
import tensorflow as tf

# cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)), as SPEC 6.1 lists them.
ELLIPSE_5 = ("00100", "11111", "11111", "11111", "00100")
ELLIPSE_9 = ("000010000", "011111110", "011111110", "111111111", "111111111", "111111111",
             "011111110", "011111110", "000010000")


def element(rows):
  """float32 `[k, k]` 0/1 structuring element from strings of '0'/'1'."""
  return np.array([[float(c) for c in row] for row in rows], np.float32)


def _counts(mask, kernel):
  """Per pixel: how many element positions are set in `mask` [B, H, W] ('SAME', zero outside)."""
  k = tf.constant(kernel[:, :, None, None])
  return tf.nn.conv2d(mask[..., None], k, 1, "SAME")[..., 0]


def dilate(mask, kernel):
  """Binary dilation of `[B, H, W]` {0, 1} masks: 1 where any element position is set."""
  return tf.cast(_counts(mask, kernel) > 0.5, tf.float32)


def erode(mask, kernel):
  """Binary erosion of `[B, H, W]` {0, 1} masks: 1 where every in-image element position is
  set (outside samples are ignored)."""
  inside = _counts(tf.ones_like(mask), kernel)
  return tf.cast(_counts(mask, kernel) > inside - 0.5, tf.float32)


def eroded_skin_mask(mask):
  """E(a) of SPEC 6.1 for float `[B, H, W]` masks in {0, 1}."""
  mask = tf.convert_to_tensor(mask, tf.float32)
  big = element(ELLIPSE_9)
  return erode(erode(dilate(mask, element(ELLIPSE_5)), big), big)
