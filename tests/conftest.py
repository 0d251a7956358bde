"""Shared fixtures: paths to ../shared data (skip when absent) and TF set-up."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("GCN_FACE_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def bfm_topology_path():
  path = os.path.join(SHARED, "data", "deep3d", "BFM", "facemodel_info.mat")
  if not os.path.isfile(path):
    pytest.skip(f"real BFM topology not found at {path} (../shared is absent)")
  return path
