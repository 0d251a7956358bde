"""Finds and loads the project's compiled op libraries (the rasterizer's here, loaded once)."""

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


def _library_path(package_dir, library_glob, env_var, bazel_target):
  explicit = os.environ.get(env_var)
  if explicit:
    if not os.path.isfile(explicit):
      raise ImportError(f"{env_var}={explicit} does not name a file")
    return explicit
  found = sorted(glob.glob(os.path.join(package_dir, library_glob)))
  if not found:
    package = os.path.basename(package_dir)
    raise ImportError(
        f"{package}: the compiled op library ({library_glob}) is missing from {package_dir}; "
        f"build it with `pip install --no-build-isolation -e .` or `bazel build {bazel_target}`")
  return found[0]


def load_library(package_dir, library_glob, env_var, bazel_target):
  """Loads a TensorFlow op library of this project; one clear ImportError otherwise.

  Args:
    package_dir: directory that holds the compiled library (the package's own).
    library_glob: its file name pattern, e.g. "_rasterizer_ops*.so".
    env_var: environment variable that may name the library file instead.
    bazel_target: the Bazel target that builds it (for the error message).
  """
  path = _library_path(package_dir, library_glob, env_var, bazel_target)
  _tune_malloc()
  try:
    return tf.load_op_library(path)
  except (tf.errors.NotFoundError, OSError) as e:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise ImportError(
        f"{os.path.basename(package_dir)}: cannot load {path} with TensorFlow {tf.__version__} "
        f"({first_line}); it was probably built against another TensorFlow: rebuild it with "
        "`pip install --no-build-isolation -e .`") from None


def ops():
  """Returns the module of generated op wrappers (renderer_rasterize, ...)."""
  global _ops
  if _ops is None:
    _ops = load_library(os.path.dirname(os.path.abspath(__file__)), _LIBRARY_GLOB, _LIBRARY_ENV,
                        "//renderer:_rasterizer_ops.so")
  return _ops
