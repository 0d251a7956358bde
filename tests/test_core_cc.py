"""Runs tests/cc/core_test.cc: the C++ core's SIMD and portable paths agree
bit for bit and match double-precision pixel bounds (see that file)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "tests", "cc", "core_test.cc")


@pytest.mark.parametrize("flags", [["-O2"], ["-O3", "-march=native"]], ids=["O2", "native"])
def test_core(tmp_path, flags):
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
  if compiler is None:
    pytest.skip("no C++ compiler found (set CXX)")
  binary = tmp_path / "core_test"
  build = subprocess.run([compiler, *flags, "-std=c++17", "-ffp-contract=off", "-I", ROOT,
                          SOURCE, "-o", str(binary)], capture_output=True, text=True)
  assert build.returncode == 0, build.stderr[-3000:]
  run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stdout[-3000:]
  assert "all checks passed" in run.stdout
