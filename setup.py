"""Builds and installs the project, compiling its TensorFlow ops.

`pip install --no-build-isolation -e .` (or `pip install .`) compiles
renderer/kernels/*.cc, deep3dface/kernels/*.cc and gcn_face/kernels/*.cc with
the compile and link flags of the installed TensorFlow and ships the libraries
as renderer/_rasterizer_ops*.so, deep3dface/_face_ops*.so and
gcn_face/_graph_ops*.so.
"""

import functools
import json
import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
# TensorFlow op libraries: (module, sources, headers).
OP_LIBRARIES = [
    ("renderer._rasterizer_ops",
     ["renderer/kernels/phong_ops.cc", "renderer/kernels/rasterizer_ops.cc"],
     ["renderer/kernels/index_range.h", "renderer/kernels/phong_core.h",
      "renderer/kernels/phong_avx2.h", "renderer/kernels/phong_cpu.h",
      "renderer/kernels/float8_avx2.h", "renderer/kernels/raster_checks.h",
      "renderer/kernels/rasterizer_avx2.h", "renderer/kernels/rasterizer_core.h",
      "renderer/kernels/rasterizer_cpu.h", "renderer/kernels/simd_x86.h",
      "renderer/kernels/tf_kernel_support.h"]),
    ("deep3dface._face_ops", ["deep3dface/kernels/face_ops.cc"],
     ["deep3dface/kernels/linear_basis.h", "deep3dface/kernels/pose_light.h",
      "deep3dface/kernels/simd_dispatch.h",
      "deep3dface/kernels/vertex_normals.h", "renderer/kernels/index_range.h",
      "renderer/kernels/simd_x86.h", "renderer/kernels/tf_kernel_support.h"]),
    ("gcn_face._graph_ops", ["gcn_face/kernels/graph_ops.cc"],
     ["gcn_face/kernels/chebyshev.h", "renderer/kernels/index_range.h",
      "renderer/kernels/simd_x86.h", "renderer/kernels/tf_kernel_support.h"]),
]
# -Wno-psabi: the AVX2 lane type passes through generic inline code that is
# only ever inlined into AVX2 functions (GCC notes an ABI change otherwise).
CXX_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off",
             "-Wno-deprecated-declarations", "-Wno-psabi"]

_PROBE = ("import json, sys, tensorflow as tf; print(json.dumps({'version': tf.__version__, "
          "'cflags': tf.sysconfig.get_compile_flags(), 'lflags': tf.sysconfig.get_link_flags()}))")


def _fail(message):
  sys.stderr.write(f"error: {message}\n")
  raise SystemExit(1)


@functools.lru_cache(maxsize=None)
def _tensorflow_flags():
  """Compile/link flags of the TensorFlow that the target interpreter imports.

  Under pip's build isolation TensorFlow is hidden from this process, so the
  same interpreter is asked again without the isolation's path overrides.
  """
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  for extra_env in (dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), env):
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            env=extra_env, check=False)
    if result.returncode == 0 and result.stdout.strip():
      return json.loads(result.stdout.strip().splitlines()[-1])
  _fail(f"TensorFlow is not importable by {sys.executable}; install it first "
        "(`pip install -r requirements.txt`, or requirements-gpu.txt for GPUs), then "
        "`pip install --no-build-isolation -e .`")


class BuildTensorFlowOps(build_ext):
  """Compiles TensorFlow custom-op libraries with TensorFlow's own flags."""

  def build_extension(self, ext):
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
      _fail(f"no C++ compiler ('{cxx}') found; install one (Debian: apt-get install g++) "
            "or set CXX")
    tf_flags = _tensorflow_flags()
    output = os.path.abspath(self.get_ext_fullpath(ext.name))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    command = ([cxx] + CXX_FLAGS + ["-I", ROOT] + tf_flags["cflags"] +
               [os.path.join(ROOT, s) for s in ext.sources] + ["-o", output] +
               tf_flags["lflags"])
    print(f"{ext.name}: building {os.path.basename(output)} against TensorFlow "
          f"{tf_flags['version']} (CPU kernels)", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      errors = [l for l in result.stderr.splitlines() if "error" in l][:5]
      _fail(f"compiling {ext.name} failed:\n" + "\n".join(errors or
                                                              result.stderr.splitlines()[-5:]))


setup(
    name="gcn-face",
    version="0.1.0",
    description=("TensorFlow 2 reimplementation of 'Towards High-Fidelity 3D Face "
                 "Reconstruction from In-the-Wild Images Using Graph Convolutional Networks'"),
    python_requires=">=3.10",
    packages=find_packages(include=["renderer", "renderer.*", "gcn_face", "gcn_face.*",
                                    "deep3dface", "deep3dface.*", "scripts", "scripts.*"]),
    package_data={"gcn_face": ["viewer.js"]},
    ext_modules=[Extension(name, sources=sources, depends=headers)
                 for name, sources, headers in OP_LIBRARIES],
    cmdclass={"build_ext": BuildTensorFlowOps},
    # TensorFlow is not listed: tensorflow-cpu (requirements.txt) and tensorflow
    # (requirements-gpu.txt) are alternatives, and it must be present to compile.
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.11",
        "pillow>=10.0",
        "absl-py>=2.0",
        "tensorboard>=2.21",
        "dlib-bin>=19.24",
        "face_recognition_models>=0.3.0",
        "scikit-image>=0.22",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5", "trimesh>=4.0"]},
    zip_safe=False,
)
