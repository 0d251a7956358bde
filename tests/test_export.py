"""scripts/export: the texture refinement's and the R-Net's SavedModels reload and run in a
process that can import nothing of this project, with the in-process outputs (1e-5); the
with_landmarks signature computes what the pipeline's TextureRefinement does; no XLA, no
custom op; earlier exports are replaced, other folders refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from deep3dface import rnet
from gcn_face import export, records
from scripts.common import load_refinement
from tests import slim_rnet_graph
from tests.scripts_run import assert_one_line_error, run_script

# Run in a fresh interpreter, outside the repository: any import of the project fails, and so
# does loading a custom op library.
_FOREIGN_PROCESS = r"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split(".")[0] in ("deep3dface", "gcn_face", "renderer", "scripts", "tests"):
      raise ImportError("this process may not import " + name)
sys.meta_path.insert(0, Refuse())
import numpy as np, tensorflow as tf
def refuse_op_library(path):
  raise RuntimeError("custom op library loaded: " + path)
tf.load_op_library = refuse_op_library
inputs = dict(np.load(sys.argv[1]))
out = {}
texture = tf.saved_model.load(sys.argv[2])
for name in ("serving_default", "with_landmarks"):
  function = texture.signatures[name]
  args = {k: tf.constant(inputs[k]) for k in function.structured_input_signature[1]}
  for key, value in function(**args).items():
    out[name + "/" + key] = value.numpy()
rnet_out = tf.saved_model.load(sys.argv[3]).signatures["serving_default"](
    input_imgs=tf.constant(inputs["input_imgs"]))
for key, value in rnet_out.items():
  out["rnet/" + key] = value.numpy()
np.savez(sys.argv[4], **out)
"""


@pytest.fixture(scope="module")
def rnet_graph(tmp_path_factory):
  return slim_rnet_graph.write(str(tmp_path_factory.mktemp("rnet") / "FaceReconModel.pb"))


@pytest.fixture(scope="module")
def exported(trained, rnet_graph, tmp_path_factory):
  """(output folder, CompletedProcess) of scripts/export on the tiny checkpoint (the texture
  refinement), with the R-Net of a slim .pb exported beside it by the same library call the
  CLI makes (the CLI's R-Net path costs a minute of conversion checks; test_rnet has them)."""
  _, checkpoint = trained
  out = str(tmp_path_factory.mktemp("export") / "export")
  result = run_script("export", f"--gcn_checkpoint={checkpoint}", f"--output_dir={out}",
                      "--rnet_path=")
  assert result.returncode == 0, result.stderr[-3000:]
  export.export_rnet(rnet.from_frozen_graph(rnet_graph, verify=False),
                     os.path.join(out, "rnet"), source=rnet_graph)
  return out, result


@pytest.fixture(scope="module")
def test_faces(trained):
  """Two faces of the dataset's test split: image uint8, mask, coefficients, landmarks."""
  data, _ = trained
  faces = list(records.dataset(data, "test").take(2).as_numpy_iterator())
  return {"image": np.stack([f["image"] for f in faces]).astype(np.uint8),
          "mask": np.stack([f["mask"] for f in faces]),
          "coefficients": np.stack([f["coeff"] for f in faces]),
          "landmarks": np.stack([f["landmarks"] for f in faces])}


@pytest.fixture(scope="module")
def serving(trained):
  """(TextureRefinementServing of the tiny checkpoint, its TextureRefinement, model)."""
  refinement, model, _ = load_refinement(trained[1])
  return export.TextureRefinementServing(refinement, model), refinement, model


def _foreign_outputs(inputs, texture_path, rnet_path, tmp_path):
  np.savez(tmp_path / "inputs.npz", **inputs)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(
      [sys.executable, "-c", _FOREIGN_PROCESS, str(tmp_path / "inputs.npz"), texture_path,
       rnet_path, str(tmp_path / "outputs.npz")], cwd=tmp_path, env=env, capture_output=True,
      text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(np.load(tmp_path / "outputs.npz"))


def test_exports_run_without_the_project(exported, serving, test_faces, rnet_graph, tmp_path):
  out, result = exported
  texture_path, rnet_path = os.path.join(out, "texture_refinement"), os.path.join(out, "rnet")
  assert "outputs equal the in-process model's" in result.stderr
  images_bgr = np.random.default_rng(3).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
  foreign = _foreign_outputs({**test_faces, "input_imgs": images_bgr}, texture_path, rnet_path,
                             tmp_path)

  serving, _, model = serving
  plain = {k: test_faces[k] for k in ("image", "mask", "coefficients")}
  expected = {"serving_default": serving.serve(**plain),
              "with_landmarks": serving.serve_with_landmarks(**test_faces)}
  for name, outputs in expected.items():
    assert outputs["fine_albedo"].shape == (2, model.num_vertices, 3)
    for key, value in outputs.items():
      np.testing.assert_allclose(foreign[f"{name}/{key}"], value.numpy(), rtol=0, atol=1e-5,
                                 err_msg=f"{name}/{key}")
  # The served texture is the GCN's, not the coarse one, and the two signatures differ only
  # by where the identity encoder's face chip is placed.
  coarse = np.clip(serving.face_model(test_faces["coefficients"]).albedo.numpy(), 0, 255)
  assert np.abs(foreign["with_landmarks/fine_albedo"] - coarse).mean() > 0.1
  np.testing.assert_array_equal(foreign["serving_default/vertices"],
                                foreign["with_landmarks/vertices"])

  coeff, pool5 = rnet.FrozenGraphRNet(rnet_graph)(images_bgr)
  for key, value in (("coeff", coeff), ("pool5", pool5)):
    scale = np.abs(value.numpy()).max()
    np.testing.assert_allclose(foreign[f"rnet/{key}"], value.numpy(), rtol=0, atol=2e-5 * scale)


def test_with_landmarks_is_the_pipelines_texture(serving, test_faces):
  """Standard ops (matmul formation, no XLA) vs the training/reconstruction module (C++ ops)."""
  serving, refinement, _ = serving
  served = serving.serve_with_landmarks(**test_faces)
  batch = {"image": test_faces["image"].astype(np.float32), "mask": test_faces["mask"],
           "coeff": test_faces["coefficients"], "landmarks": test_faces["landmarks"]}
  pipeline = refinement(batch)
  np.testing.assert_allclose(served["fine_albedo"], (pipeline["fine_albedo"].numpy() + 1) * 127.5,
                             atol=0.05)
  np.testing.assert_allclose(served["vertices"], pipeline["shape"], atol=1e-4)


def test_export_holds_no_xla_and_no_custom_op(exported):
  out, _ = exported
  meta = saved_model_pb2.SavedModel()
  with open(os.path.join(out, "texture_refinement", "saved_model.pb"), "rb") as f:
    meta.ParseFromString(f.read())
  graph = meta.meta_graphs[0].graph_def
  functions = list(graph.library.function)
  ops = {n.op for n in graph.node} | {n.op for f in functions for n in f.node_def}
  assert "SparseMatrixMatMul" in ops  # the GCN's Chebyshev products are in there
  assert not [op for op in ops if op.startswith(("Renderer", "Deep3d"))]
  assert not [f.signature.name for f in functions if f.attr["_XlaMustCompile"].b]
  manifest = json.load(open(os.path.join(out, "texture_refinement", export.MANIFEST)))
  assert manifest["kind"] == "texture_refinement" and manifest["vertices"] == 3315


def test_save_replaces_an_earlier_export_and_refuses_other_folders(tmp_path):
  module = tf.Module()
  module.v = tf.Variable(1.0)
  module.serve = tf.function(lambda x: {"y": x * module.v},
                             input_signature=[tf.TensorSpec([None], tf.float32, "x")])
  path = str(tmp_path / "model")
  export.save(module, path, {"serving_default": module.serve}, {"kind": "test"})
  module.v.assign(2.0)
  export.save(module, path, {"serving_default": module.serve}, {"kind": "test"})
  loaded = tf.saved_model.load(path).signatures["serving_default"]
  assert float(loaded(x=tf.constant([3.0]))["y"][0]) == 6.0
  assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary folder left

  with open(os.path.join(path, "notes.txt"), "w") as f:
    f.write("mine")
  with pytest.raises(export.ExportError, match="model: folder holds files that are not"):
    export.save(module, path, {"serving_default": module.serve}, {"kind": "test"})
  assert open(os.path.join(path, "notes.txt")).read() == "mine"
  assert os.path.isfile(os.path.join(path, "saved_model.pb"))
  user = tmp_path / "user"
  user.mkdir()
  (user / "photo.jpg").write_bytes(b"x")
  with pytest.raises(export.ExportError, match="user: folder holds files"):
    export.save(module, str(user), {"serving_default": module.serve}, {"kind": "test"})
  assert os.listdir(user) == ["photo.jpg"]


@pytest.mark.parametrize("args, text", [
    (["--gcn_checkpoint=/nonexistent"], "--gcn_checkpoint=/nonexistent: not found"),
    (["--gcn_checkpoint=", "--rnet_path="], "--gcn_checkpoint: no checkpoint given"),
])
def test_export_bad_flags(args, text, tmp_path):
  result = run_script("export", f"--output_dir={tmp_path / 'out'}", *args)
  assert_one_line_error(result, text)
  assert not os.path.exists(tmp_path / "out")


def test_export_refuses_a_user_folder(trained, tmp_path):
  target = tmp_path / "out" / "texture_refinement"
  target.mkdir(parents=True)
  (target / "keep.txt").write_text("mine")
  result = run_script("export", f"--gcn_checkpoint={trained[1]}", f"--output_dir={tmp_path / 'out'}",
                      "--rnet_path=")
  assert_one_line_error(result, "texture_refinement: folder holds files that are not an earlier")
  assert (target / "keep.txt").read_text() == "mine"
