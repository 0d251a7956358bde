"""Runs the C++ core tests in tests/cc: the SIMD and portable paths of the
rasterizer (core_test.cc) and of the Phong shading (phong_core_test.cc) agree
bit for bit, and pixel bounds match double precision (see those files)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["core_test", "phong_core_test"])
@pytest.mark.parametrize("flags", [["-O2"], ["-O3", "-march=native"]], ids=["O2", "native"])
def test_core(tmp_path, name, flags):
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
  if compiler is None:
    pytest.skip("no C++ compiler found (set CXX)")
  binary = tmp_path / name
  source = os.path.join(ROOT, "tests", "cc", name + ".cc")
  build = subprocess.run([compiler, *flags, "-std=c++17", "-ffp-contract=off", "-Wno-psabi",
                          "-I", ROOT, source, "-o", str(binary)], capture_output=True, text=True)
  assert build.returncode == 0, build.stderr[-3000:]
  run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stdout[-3000:]
  if "skipped:" in run.stdout:
    pytest.skip(run.stdout.strip())
  assert "all checks passed" in run.stdout
