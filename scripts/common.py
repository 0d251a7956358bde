"""Helpers shared by the command-line programs."""

import os


def user_path(path):
  """Paths given to `bazel run` are relative to the workspace, not the runfiles tree."""
  base = os.environ.get("BUILD_WORKSPACE_DIRECTORY", "")
  return path if os.path.isabs(path) or not base else os.path.join(base, path)


def fail(message):
  """Ends the program with one line on stderr and exit status 1 (no usage dump, no trace)."""
  raise SystemExit(f"error: {message}")
