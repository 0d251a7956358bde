"""Boundary validation shared by the renderer's public functions.

Static problems (wrong rank, wrong trailing dimension, wrong dtype kind,
non-positive image size) raise ValueError naming the argument; problems only
visible at run time (out-of-range indices) are raised by the ops themselves as
tf.errors.InvalidArgumentError.
"""

import numbers

import tensorflow as tf


def float_tensor(value, name, rank=None, last_dim=None, layout=""):
  """Converts a real-valued input (float or integer dtype) to float32 and checks its static shape."""
  t = _to_tensor(value, name, tf.float32)
  if not (t.dtype.is_floating or t.dtype.is_integer) or t.dtype == tf.bool:
    raise ValueError(f"{name} must be a real-valued tensor, got dtype {t.dtype.name}")
  if t.dtype != tf.float32:
    t = tf.cast(t, tf.float32)
  _check_shape(t, name, rank, last_dim, layout)
  return t


def index_tensor(value, name, rank=None, last_dim=None, layout=""):
  """Converts integer indices to int32 and checks the static shape."""
  t = _to_tensor(value, name, None)
  if not t.dtype.is_integer:
    raise ValueError(f"{name} must be an integer tensor, got dtype {t.dtype.name}")
  if t.dtype != tf.int32:
    t = tf.cast(_in_int32_range(t, name), tf.int32)
  _check_shape(t, name, rank, last_dim, layout)
  return t


_INT32 = (-2**31, 2**31 - 1)


def _in_int32_range(t, name):
  """`t` unchanged, after checking that int32 holds it (a cast would wrap 2^32 + 2 to 2):
  ValueError when eager, InvalidArgumentError inside a tf.function."""
  if t.dtype.size <= 4 and t.dtype != tf.uint32:
    return t
  if tf.executing_eagerly():
    values = t.numpy()
    if values.size and (values.min() < _INT32[0] or values.max() > _INT32[1]):
      raise ValueError(f"{name} has indices outside the int32 range (e.g. "
                       f"{values.max() if values.max() > _INT32[1] else values.min()})")
    return t
  wide = tf.cast(t, tf.int64) if t.dtype != tf.int64 else t
  with tf.control_dependencies([tf.debugging.assert_less_equal(
      wide, tf.constant(_INT32[1], tf.int64), message=f"{name} has indices outside int32"),
      tf.debugging.assert_greater_equal(
      wide, tf.constant(_INT32[0], tf.int64), message=f"{name} has indices outside int32")]):
    return tf.identity(t)


def _to_tensor(value, name, dtype_hint):
  dtype = getattr(value, "dtype", None)
  if dtype is not None:
    try:
      dtype = tf.as_dtype(dtype)
    except TypeError:
      raise ValueError(f"{name} has unsupported dtype {dtype}") from None
    if not (dtype.is_floating or dtype.is_integer) or dtype == tf.bool:
      raise ValueError(f"{name} must be a real-valued tensor, got dtype {dtype.name}")
  try:
    return tf.convert_to_tensor(value, dtype_hint=dtype_hint)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} cannot be converted to a tensor: {e}") from None


def _check_shape(t, name, rank, last_dim, layout):
  shape = t.shape
  if rank is not None and shape.rank is not None and shape.rank != rank:
    raise ValueError(f"{name} must have shape {layout}, got shape {shape}")
  if (last_dim is not None and shape.rank is not None and shape.rank > 0 and
      shape[-1] is not None and shape[-1] != last_dim):
    raise ValueError(f"{name} must have shape {layout}, got shape {shape}")


MAX_IMAGE_SIZE = 32767  # pixel indices are int16 in the kernels (kMaxImageSize)


def image_size(value, name):
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if value > MAX_IMAGE_SIZE:
    raise ValueError(f"{name} must be at most {MAX_IMAGE_SIZE}, got {value!r}")
  return int(value)
