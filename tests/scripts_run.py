"""Runs a command-line program of scripts/ the way users do, and checks its one-line errors."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(module, *args):
  """`python -m scripts.<module> args...` from the repository root; the CompletedProcess."""
  return subprocess.run([sys.executable, "-m", f"scripts.{module}", *args], cwd=ROOT,
                        capture_output=True, text=True, check=False, timeout=600)


def assert_one_line_error(result, text):
  """Exit status 1, the last stderr line 'error: ...' containing `text`, no traceback."""
  assert result.returncode == 1, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and text in last, last
  assert "Traceback" not in result.stderr
