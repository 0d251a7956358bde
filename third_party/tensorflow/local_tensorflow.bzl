"""Repository rule exposing the installed TensorFlow and Python to Bazel.

Runs the configured interpreter (PYTHON_BIN_PATH, else python3 on PATH) to ask
TensorFlow for its include and library directories, links them into the
repository, and declares the C++ libraries and a Python toolchain for it.
"""

_PROBE = """
import sys, tensorflow as tf
print(sys.executable)
print(tf.sysconfig.get_include())
print(tf.sysconfig.get_lib())
"""

_BUILD = """
package(default_visibility = ["//visibility:public"])

load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

cc_library(
    name = "tf_headers",
    hdrs = glob(["include/**"]),
    includes = ["include"],
    defines = ["_GLIBCXX_USE_CXX11_ABI=1", "EIGEN_MAX_ALIGN_BYTES=64"],
)

cc_library(
    name = "tf_framework",
    srcs = ["libtensorflow_framework.so.2"],
)

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "py_runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":py_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _local_tensorflow_impl(ctx):
    python = ctx.os.environ.get("PYTHON_BIN_PATH") or ctx.which("python3")
    if not python:
        fail("local_tensorflow: no python3 found; set --repo_env=PYTHON_BIN_PATH=...")
    result = ctx.execute([python, "-c", _PROBE], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.return_code != 0:
        fail("local_tensorflow: %s cannot import tensorflow (install requirements.txt first): %s" %
             (python, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"))
    lines = result.stdout.strip().splitlines()
    executable, include, lib = lines[-3], lines[-2], lines[-1]
    ctx.symlink(include, "include")
    ctx.symlink(lib + "/libtensorflow_framework.so.2", "libtensorflow_framework.so.2")
    ctx.file("BUILD", _BUILD.format(python = executable))

local_tensorflow = repository_rule(
    implementation = _local_tensorflow_impl,
    environ = ["PYTHON_BIN_PATH"],
    local = False,
)
