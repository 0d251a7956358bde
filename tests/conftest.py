"""Shared fixtures: paths to ../shared data (skip when absent) and TF set-up."""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("GCN_FACE_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _shared_file(*parts):
  path = os.path.join(SHARED, "data", *parts)
  if not os.path.exists(path):
    pytest.skip(f"{os.path.join(*parts)} not found under {SHARED}/data (../shared is absent)")
  return path


@pytest.fixture(scope="session")
def bfm_topology_path():
  return _shared_file("deep3d", "BFM", "facemodel_info.mat")


@pytest.fixture(scope="session")
def standard_landmarks_path():
  return _shared_file("deep3d", "BFM", "similarity_Lm3D_all.mat")


@pytest.fixture(scope="session")
def coma_template_path():
  return _shared_file("coma", "template.obj")


@pytest.fixture(scope="session")
def deep3d_input_dir():
  return _shared_file("deep3d", "input")


@pytest.fixture(scope="session")
def deep3d_photos(deep3d_input_dir):
  """The 25 real photos of ../shared/data/deep3d/input (jpg and png), sorted."""
  found = sorted(glob.glob(os.path.join(deep3d_input_dir, "*.jpg")) +
                 glob.glob(os.path.join(deep3d_input_dir, "*.png")))
  assert len(found) == 25
  return found


@pytest.fixture(scope="session")
def synthetic_model():
  from deep3dface import synthetic
  return synthetic.synthetic_model("grid")


@pytest.fixture(scope="session")
def bfm_sampling(bfm_topology_path, tmp_path_factory):
  """CoMA sampling of the real BFM front topology with synthetic face-like positions."""
  from deep3dface import synthetic
  from gcn_face import mesh_sampling
  model = synthetic.synthetic_model("bfm", bfm_topology_path)
  return mesh_sampling.load_or_build(model.mean_shape, model.triangles,
                                     directory=str(tmp_path_factory.mktemp("bfm_sampling")))


@pytest.fixture(scope="session")
def facenet_files(tmp_path_factory):
  """A FaceNet-layout checkpoint + frozen graph with random weights (tests/slim_facenet_graph.py)
  and what the graph computes on two preprocessed images: (folder, checkpoint prefix, .pb path,
  images [2, 160, 160, 3], pool [2, 1792], embeddings [2, 512])."""
  import numpy as np
  from tests import slim_facenet_graph
  folder = str(tmp_path_factory.mktemp("facenet"))
  images = np.random.default_rng(7).uniform(-1.0, 1.0, (2, 160, 160, 3)).astype(np.float32)
  prefix, pb_path, pool, embeddings = slim_facenet_graph.write(folder, images)
  return folder, prefix, pb_path, images, pool, embeddings


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """(dataset folder, checkpoint folder): a tiny synthetic_grid dataset and a 2-step GCN."""
  from tests.scripts_run import run_script
  root = tmp_path_factory.mktemp("trained")
  data, checkpoint = str(root / "data"), str(root / "gcn")
  result = run_script("make_synthetic", f"--output_dir={data}", "--model=synthetic_grid",
                      "--num_train=4", "--num_val=0",
                      "--num_test=4", "--batch_size=4")
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_script("train", f"--data_dir={data}", f"--checkpoint_dir={checkpoint}",
                      f"--sampling_dir={root / 'sampling'}", "--batch_size=2", "--max_steps=2")
  assert result.returncode == 0, result.stderr[-2000:]
  return data, checkpoint
