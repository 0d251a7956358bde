"""Finds and loads the compiled rasterizer op library (one place, loaded once)."""

import ctypes
import glob
import os
import platform

import tensorflow as tf

_LIBRARY_ENV = "RENDERER_OPS_LIBRARY"
_LIBRARY_GLOB = "_rasterizer_ops*.so"
_ops = None

# glibc serves allocations above its mmap threshold (128 KiB at first) with
# fresh mmap()s, so every multi-megabyte image tensor pays a page fault per
# 4 KiB on first touch: about 3 ms per rasterize/interpolate call at B=4,
# 224x224. Raising the threshold (and the trim threshold) keeps freed buffers
# mapped for reuse. Process-wide; RENDERER_MALLOC_TUNING=0 disables it.
_MALLOC_TUNING_ENV = "RENDERER_MALLOC_TUNING"
_M_TRIM_THRESHOLD = -1  # mallopt parameters from <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit
_TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def _tune_malloc():
  if os.environ.get(_MALLOC_TUNING_ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) and
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
  except (OSError, AttributeError):
    return False


def _library_path():
  explicit = os.environ.get(_LIBRARY_ENV)
  if explicit:
    if not os.path.isfile(explicit):
      raise ImportError(f"{_LIBRARY_ENV}={explicit} does not name a file")
    return explicit
  here = os.path.dirname(os.path.abspath(__file__))
  found = sorted(glob.glob(os.path.join(here, _LIBRARY_GLOB)))
  if not found:
    raise ImportError(
        f"renderer: the compiled op library ({_LIBRARY_GLOB}) is missing from {here}; "
        "build it with `pip install --no-build-isolation -e .` or "
        "`bazel build //renderer:_rasterizer_ops.so`")
  return found[0]


def ops():
  """Returns the module of generated op wrappers (renderer_rasterize, ...)."""
  global _ops
  if _ops is None:
    path = _library_path()
    _tune_malloc()
    try:
      _ops = tf.load_op_library(path)
    except (tf.errors.NotFoundError, OSError) as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
      raise ImportError(
          f"renderer: cannot load {path} with TensorFlow {tf.__version__} ({first_line}); "
          "it was probably built against another TensorFlow: rebuild it with "
          "`pip install --no-build-isolation -e .`") from None
  return _ops
