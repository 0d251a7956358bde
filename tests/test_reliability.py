"""Issue 24's hostile and careless inputs (docs/reliability.md): damaged datasets, checkpoints
and flags end in one line naming the file or flag, nothing hangs, nothing wrong is silent.
Each case failed (traceback, hang or silent garbage) before its fix."""

import gzip
import json
import os
import shutil

import numpy as np
import pytest

from gcn_face import records
from tests.scripts_run import assert_one_line_error, run_script


def _sampling(trained):
  return "--sampling_dir=" + os.path.join(os.path.dirname(trained[0]), "sampling")


def _dataset_copy(trained, tmp_path):
  data = str(tmp_path / "data")
  shutil.copytree(trained[0], data)
  return data


def _edit_manifest(data, edit):
  path = os.path.join(data, records.MANIFEST)
  with open(path) as f:
    manifest = json.load(f)
  edit(manifest)
  with open(path, "w") as f:
    json.dump(manifest, f)


def _first_shard(manifest, split="test"):
  return manifest["splits"][split]["shards"][0]


@pytest.mark.parametrize("edit, message", [
    (lambda m: _first_shard(m).update(count="eight"), "count must be a non-negative integer"),
    (lambda m: _first_shard(m).update(count=True), "count must be a non-negative integer"),
    (lambda m: m.update(splits=[]), "'splits' must be an object"),
    (lambda m: m["splits"]["test"].pop("shards"), "must be an object with a list of 'shards'"),
    (lambda m: m["splits"].update(test="shards"), "must be an object with a list of 'shards'"),
    (lambda m: _first_shard(m).update(file="../../etc/hostname"), "is not a file name inside"),
    (lambda m: _first_shard(m).update(file="/etc/hostname"), "is not a file name inside"),
    (lambda m: _first_shard(m).update(file=7), "is not a file name inside"),
    (lambda m: m["splits"]["test"]["shards"].append(3), "must be an object with 'file'"),
])
def test_damaged_manifest_is_one_error(trained, tmp_path, edit, message):
  data = _dataset_copy(trained, tmp_path)
  _edit_manifest(data, edit)
  with pytest.raises(records.DatasetError, match=message):
    records.split_files(data, "test")


@pytest.mark.parametrize("kind", ["fifo", "link_out", "folder"])
def test_shard_must_be_a_regular_file_in_the_folder(trained, tmp_path, kind):
  data = _dataset_copy(trained, tmp_path)
  with open(os.path.join(data, records.MANIFEST)) as f:
    shard = os.path.join(data, _first_shard(json.load(f))["file"])
  os.remove(shard)
  if kind == "fifo":
    os.mkfifo(shard)  # reading it would block forever
  elif kind == "link_out":
    (tmp_path / "elsewhere").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", shard)
  else:
    os.mkdir(shard)
  with pytest.raises(records.DatasetError, match="link out of|not a regular file"):
    records.split_files(data, "test")


def _damage(path, how):
  blob = open(path, "rb").read()
  if how == "truncated":
    blob = blob[:len(blob) // 2]
  elif how == "random":
    blob = np.random.default_rng(0).integers(0, 256, len(blob), dtype=np.uint8).tobytes()
  elif how == "bad_record":  # a valid GZIP stream of one TFRecord that is not an Example
    blob = gzip.compress(b"\x05" * 64)
  with open(path, "wb") as f:
    f.write(blob)


@pytest.mark.parametrize("how", ["truncated", "random", "bad_record"])
def test_damaged_shard_is_diagnosed(trained, tmp_path, how):
  data = _dataset_copy(trained, tmp_path)
  shard = records.split_files(data, "train")[0][0]
  _damage(shard, how)
  diagnosis = records.diagnose_split(data, "train")
  assert diagnosis.startswith(shard + ": ")
  assert "damaged shard" in diagnosis or "holds 0 records" in diagnosis


def test_train_on_a_damaged_shard_names_it(trained, tmp_path):
  """DataLossError traceback before."""
  data = _dataset_copy(trained, tmp_path)
  shard = records.split_files(data, "train")[0][0]
  _damage(shard, "truncated")
  result = run_script("train", f"--data_dir={data}", f"--checkpoint_dir={tmp_path / 'ckpt'}",
                      _sampling(trained), "--batch_size=2", "--max_steps=4")
  assert_one_line_error(result, os.path.basename(shard) + ": damaged shard")


def test_train_on_a_short_shard_stops(trained, tmp_path):
  """The manifest lists more faces than the shard holds: the epoch ran out and the loop
  started it again from the same step, forever."""
  data = _dataset_copy(trained, tmp_path)
  _edit_manifest(data, lambda m: m["splits"]["train"]["shards"][0].update(count=8))
  result = run_script("train", f"--data_dir={data}", f"--checkpoint_dir={tmp_path / 'ckpt'}",
                      _sampling(trained), "--batch_size=2", "--max_steps=6")
  assert_one_line_error(result, "shard holds 4 records, the manifest lists 8")


@pytest.fixture
def checkpoint_copy(trained, tmp_path):
  checkpoint = str(tmp_path / "gcn")
  shutil.copytree(trained[1], checkpoint)
  return checkpoint


def _restore(trained, checkpoint, *args):
  return run_script("train", f"--data_dir={trained[0]}", f"--checkpoint_dir={checkpoint}",
                    _sampling(trained), "--batch_size=2", "--restore", *args)


def test_restore_with_other_flags_names_the_flag(trained, checkpoint_copy):
  result = _restore(trained, checkpoint_copy, "--nz=64", "--max_steps=3")
  assert_one_line_error(result, "--nz: this run has nz 64, the checkpoint")


def test_restore_of_a_corrupt_checkpoint(trained, checkpoint_copy):
  index = os.path.join(checkpoint_copy, "ckpt-2.index")
  with open(index, "r+b") as f:
    f.truncate(os.path.getsize(index) // 2)
  result = _restore(trained, checkpoint_copy, "--max_steps=3")
  assert_one_line_error(result, "ckpt-2: cannot restore")


def test_restore_removes_what_a_killed_save_left(trained, checkpoint_copy):
  temp = os.path.join(checkpoint_copy, "ckpt-4_temp")
  os.mkdir(temp)
  with open(os.path.join(temp, "part-00000-of-00001.index"), "wb") as f:
    f.write(b"partial")
  mine = os.path.join(checkpoint_copy, "ckpt-5_temp")
  os.mkdir(mine)
  with open(os.path.join(mine, "notes.txt"), "w") as f:
    f.write("not a checkpoint part")
  result = _restore(trained, checkpoint_copy, "--max_steps=2")  # restores, then stops
  assert result.returncode == 0, result.stderr[-2000:]
  assert not os.path.exists(temp) and "interrupted checkpoint save" in result.stderr
  assert os.path.isfile(os.path.join(mine, "notes.txt"))  # not ours: kept


def _tiny_graph(path, shape, content=None, name="resnet_v1_50/conv1/weights"):
  """A ~100-byte GraphDef with one Const declaring `shape` (values repeated, or `content`)."""
  import tensorflow as tf
  graph_def = tf.compat.v1.GraphDef()
  node = graph_def.node.add(name=name, op="Const")
  node.attr["dtype"].type = tf.float32.as_datatype_enum
  tensor = node.attr["value"].tensor
  tensor.dtype = tf.float32.as_datatype_enum
  for d in shape:
    tensor.tensor_shape.dim.add(size=d)
  if content is None:
    tensor.float_val.append(1.0)
  else:
    tensor.tensor_content = content
  with open(path, "wb") as f:
    f.write(graph_def.SerializeToString())
  return str(path)


@pytest.mark.parametrize("shape, content, message", [
    ([7, 7, 3, 6_400_000_000], None, "refusing to allocate it"),
    ([7, 7, 3, 64], b"\0" * 12, "but stores 12 bytes"),
])
def test_graph_constant_bigger_than_the_file(tmp_path, shape, content, message):
  from deep3dface import frozen_graph, rnet
  from gcn_face.identity import facenet
  path = _tiny_graph(tmp_path / "FaceReconModel.pb", shape, content)
  assert os.path.getsize(path) < 200
  with pytest.raises(frozen_graph.GraphFormatError, match="FaceReconModel.pb: constant "):
    rnet.from_frozen_graph(path)
  with pytest.raises(frozen_graph.GraphFormatError, match=message):
    facenet.load(path)


def test_scalar_facenet_bottleneck(facenet_files, tmp_path):
  import tensorflow as tf
  from deep3dface import frozen_graph
  from gcn_face.identity import facenet
  from tests.graph_edits import edited_graph, node

  def scalar(graph_def):
    node(graph_def, "InceptionResnetV1/Bottleneck/weights").attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.float32(1.0)))
  path = edited_graph(facenet_files[2], tmp_path, scalar)
  with pytest.raises(frozen_graph.GraphFormatError, match=r"Bottleneck/weights' has shape \[\]"):
    facenet.load(path, verify=False)


@pytest.mark.parametrize("text, message", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999999\n", ":4: face index 9999"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", ":4: face index 0 out of range (OBJ indices count from 1"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 1 2\n", ":4: face index -4 out of range"),
    ("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", ":1: vertex coordinate is not finite"),
    ("v 0 0 inf\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", ":1: vertex coordinate is not finite"),
    ("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n", ": degenerate mesh"),
    ("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n", ": degenerate mesh"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", ":4: a face needs 3 or more vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nv \xff\n", ":5: not UTF-8 text"),
])
def test_bad_obj_is_one_line(tmp_path, text, message):
  from gcn_face import mesh_io
  path = tmp_path / "mesh.obj"
  path.write_bytes(text.encode("latin-1"))
  with pytest.raises(ValueError, match="mesh.obj" + _escaped(message)):
    mesh_io.read_obj(str(path))


@pytest.mark.parametrize("text, message", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", ":4: face index 0 out of range"),
    ("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n", ": degenerate mesh"),  # was: exit 0, empty
])
def test_render_mesh_of_a_bad_obj(tmp_path, text, message):
  path = tmp_path / "mesh.obj"
  path.write_text(text)
  result = run_script("render_mesh", f"--mesh={path}", f"--output={tmp_path / 'x.png'}")
  assert_one_line_error(result, message)
  assert not os.path.exists(tmp_path / "x.png")


def _escaped(text):
  import re
  return re.escape(text)


def _png_claiming(path, width, height):
  """A 64 x 64 PNG whose header says width x height (IHDR rewritten, CRC fixed)."""
  import struct
  import zlib
  import PIL.Image
  PIL.Image.new("RGB", (64, 64)).save(path)
  blob = bytearray(open(path, "rb").read())
  blob[16:24] = struct.pack(">II", width, height)
  blob[29:33] = struct.pack(">I", zlib.crc32(bytes(blob[12:29])))
  open(path, "wb").write(bytes(blob))


def test_photo_over_the_pixel_cap_is_refused_from_its_header(tmp_path):
  from deep3dface import align
  path = str(tmp_path / "huge.png")
  _png_claiming(path, 9400, 9400)
  with pytest.raises(align.InputError, match=r"huge.png: image is 9400x9400 pixels \(88.4 MP\), "
                     "more than the limit of 40 MP"):
    align.load_image(path)
  with pytest.raises(align.InputError, match="unreadable or truncated"):
    align.load_image(path, max_pixels=0)  # no cap: PIL finds the data short


def test_fifo_photo_and_landmarks_do_not_block(tmp_path):
  from deep3dface import align
  fifo = str(tmp_path / "x.jpg")
  os.mkfifo(fifo)
  with pytest.raises(align.InputError, match="x.jpg: not a regular file"):
    align.load_image(fifo)
  txt = str(tmp_path / "x.txt")
  os.mkfifo(txt)
  with pytest.raises(align.InputError, match="x.txt: not a regular file"):
    align.load_landmarks_txt(txt)


def test_non_utf8_text_inputs_name_the_file(tmp_path):
  from deep3dface import align
  path = tmp_path / "photo.txt"
  path.write_bytes(b"\xff\xfe\x00 1 2\n3 4\n")
  with pytest.raises(align.InputError, match="photo.txt: not a UTF-8 text file"):
    align.load_landmarks_txt(str(path))
  result = run_script("reconstruct", f"--input={path}", f"--output_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "photo.txt: not a UTF-8 text file")


def test_large_photo_is_searched_downscaled(deep3d_photos):
  """Detection on a 3.6x enlarged photo (6.5 MP, above DETECTION_MAX_PIXELS) finds the face
  where the original's landmarks say, at full resolution."""
  import PIL.Image
  from deep3dface import align, landmarks
  detector = landmarks.LandmarkDetector()
  small = align.load_image(deep3d_photos[0])
  factor = (6.5e6 / (small.shape[0] * small.shape[1])) ** 0.5
  big = np.asarray(PIL.Image.fromarray(small).resize(
      (round(small.shape[1] * factor), round(small.shape[0] * factor)), PIL.Image.BICUBIC))
  assert big.shape[0] * big.shape[1] > landmarks.DETECTION_MAX_PIXELS
  expected = detector.detect(small)[0].landmarks * factor
  found = detector.detect(big)[0].landmarks
  face_width = np.ptp(expected[:, 0])
  assert np.abs(found - expected).mean() < 0.05 * face_width


def _tampered_cache(tmp_path, name, tamper):
  """A sampling cache with `name` tampered and its SHA-256 in the manifest rewritten."""
  import hashlib
  import scipy.sparse
  from gcn_face import mesh_sampling
  from tests.meshes import wavy_grid
  cache = str(tmp_path / "sampling")
  mesh_sampling.load_or_build(*wavy_grid(12), (4, 4), cache)
  path = os.path.join(cache, name)
  tamper(path, scipy.sparse)
  manifest_path = os.path.join(cache, "manifest.json")
  manifest = json.load(open(manifest_path))
  manifest["files"][name] = hashlib.sha256(open(path, "rb").read()).hexdigest()
  json.dump(manifest, open(manifest_path, "w"))
  return cache


def _zero_bytes(path, sparse):
  open(path, "wb").close()


def _truncate(path, sparse):
  blob = open(path, "rb").read()
  open(path, "wb").write(blob[:len(blob) // 2])


def _nan_laplacian(path, sparse):
  matrix = sparse.load_npz(path).tocsr()
  matrix.data[0] = np.nan
  sparse.save_npz(path, matrix)


def _faces_out_of_range(path, sparse):
  with np.load(path) as mesh:
    vertices, faces = mesh["vertices"], mesh["faces"].copy()
  faces[0, 0] = len(vertices) + 5
  np.savez(path, vertices=vertices, faces=faces)


def _wrong_shape(path, sparse):
  sparse.save_npz(path, sparse.identity(7, format="csr", dtype=np.float32))


@pytest.mark.parametrize("name, tamper, message", [
    ("laplacians0.npz", _zero_bytes, "unreadable cache file"),
    ("laplacians1.npz", _truncate, "unreadable cache file"),
    ("laplacians0.npz", _nan_laplacian, r"laplacians\[0\] is not a finite"),
    ("mesh1.npz", _faces_out_of_range, "level 1 faces are not"),
    ("downsamp_trans0.npz", _wrong_shape, "cache file|down"),
])
def test_tampered_sampling_cache(tmp_path, name, tamper, message):
  from gcn_face import mesh_sampling
  cache = _tampered_cache(tmp_path, name, tamper)
  with pytest.raises(mesh_sampling.CacheError, match=message):
    mesh_sampling.load(cache)


@pytest.mark.parametrize("scale", [9e18, 1e19, 1.2e19, 3e19])
def test_extreme_finite_coordinates_cover_with_barycentrics_summing_to_one(scale):
  """At 1e19 the edge values' sum overflowed to inf: pixels were covered with barycentrics
  0, 0, 0."""
  import renderer
  v = np.array([[[-scale, -scale, 0, 1], [scale, -scale, 0, 1], [0, scale, 0, 1]]], np.float32)
  raster = renderer.rasterize(v, np.array([[0, 1, 2]], np.int32), 8, 8)
  covered = raster.triangle_ids.numpy()[0] >= 0
  sums = raster.barycentrics.numpy()[0].sum(-1)
  np.testing.assert_allclose(sums[covered], 1.0, atol=1e-5)
  np.testing.assert_array_equal(sums[~covered], 0.0)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.uint32])
def test_triangle_indices_beyond_int32_are_refused(dtype):
  """2^32 + 2 used to wrap to 2 in the cast to int32 and draw the wrong triangle."""
  import renderer
  import tensorflow as tf
  v = np.array([[[0, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]]], np.float32)
  big = 2**32 + 2 if dtype != np.uint32 else 2**31 + 2
  with pytest.raises(ValueError, match="triangles has indices outside the int32 range"):
    renderer.rasterize(v, np.array([[0, 1, big]], dtype), 8, 8)
  graph = tf.function(lambda t: renderer.rasterize(v, t, 8, 8).triangle_ids)
  with pytest.raises(tf.errors.InvalidArgumentError, match="outside int32"):
    graph(tf.constant([[0, 1, big]], tf.as_dtype(dtype)))
  ok = renderer.rasterize(v, np.array([[0, 1, 2]], dtype), 8, 8)
  assert (ok.triangle_ids.numpy() >= 0).any()


@pytest.mark.parametrize("script, args, message", [
    ("render_mesh", ["--image_size=0"], "flag --image_size=0: 0 is not an integer in the range"),
    ("render_mesh", ["--image_size=40000"], "--image_size=40000: 40000 is not an integer in"),
    ("render_mesh", ["--angles=a,b,c"], "must be 3 comma-separated finite numbers"),
    ("render_mesh", ["--angles=0.1,0.2"], "must be 3 comma-separated finite numbers"),
    ("render_mesh", ["--fov_y=nan"], "--fov_y=nan: must be a finite number"),
    ("render_mesh", ["--camera_distance=-1"], "--camera_distance=-1: -1.0 is not number >= 0.001"),
    ("build_sampling", ["--factors=nan"], "--factors=['nan']: must be comma-separated finite"),
    ("build_sampling", ["--factors=4,0.5"], "each >= 1"),
    ("make_synthetic", ["--num_train=-1"], "--num_train=-1"),
    ("make_synthetic", ["--per_shard=0"], "--per_shard=0"),
    ("train", ["--lr=inf"], "--lr=inf: must be a finite number"),
    ("train", ["--batch_size=0"], "--batch_size=0"),
    ("train", ["--lambda_sym=nan"], "--lambda_sym=nan: must be a finite number"),
    ("reconstruct", ["--refine_steps=-3"], "--refine_steps=-3"),
    ("reconstruct", ["--max_photo_megapixels=nan"], "must be a finite number"),
    ("prepare_data", ["--workers=0"], "--workers=0"),
    ("evaluate", ["--batch_size=0"], "--batch_size=0"),
    ("export", ["--verify_batch=0"], "--verify_batch=0"),
    ("convert_bfm", ["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
])
def test_bad_flags_are_one_line(script, args, message):
  assert_one_line_error(run_script(script, *args), message)


def test_make_synthetic_into_a_file(tmp_path):
  target = tmp_path / "taken"
  target.write_text("mine")
  result = run_script("make_synthetic", f"--output_dir={target}", "--model=synthetic_grid")
  assert_one_line_error(result, "taken: exists and is not a folder")
  assert target.read_text() == "mine"


def test_render_mesh_out_of_memory_is_one_line(tmp_path):
  import resource
  import subprocess
  import sys
  from tests.scripts_run import ROOT

  def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
  result = subprocess.run(
      [sys.executable, "-m", "scripts.render_mesh", "--image_size=8192",
       f"--output={tmp_path / 'big.png'}"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, preexec_fn=limit_memory, check=False)
  assert_one_line_error(result, "--image_size=8192: out of memory rendering 8192x8192")
  assert not os.path.exists(tmp_path / "big.png")


@pytest.mark.parametrize("key, value, message", [
    ("nz", "big", "nz must be a positive integer, got 'big'"),
    ("nz", True, "nz must be a positive integer, got True"),
    ("wide", "yes", "wide must be true or false"),
    ("face_model", 5, "face_model must be a model name"),
])
def test_damaged_run_config_names_the_key(trained, tmp_path, key, value, message):
  """A train_config.json edited by hand: one line naming the file and the key (was a Keras
  message without either, e.g. "Received an invalid value for `units`")."""
  from gcn_face import training
  checkpoint = str(tmp_path / "gcn")
  os.mkdir(checkpoint)
  config = json.load(open(os.path.join(trained[1], "train_config.json")))
  config[key] = value
  json.dump(config, open(os.path.join(checkpoint, "train_config.json"), "w"))
  with pytest.raises(ValueError, match="train_config.json: " + _escaped(message)):
    training.read_run_config(checkpoint)


def test_export_of_a_damaged_run_config_is_one_line(trained, checkpoint_copy, tmp_path):
  path = os.path.join(checkpoint_copy, "train_config.json")
  config = json.load(open(path))
  config["nz"] = "big"
  json.dump(config, open(path, "w"))
  result = run_script("export", f"--gcn_checkpoint={checkpoint_copy}",
                      f"--output_dir={tmp_path / 'out'}", "--rnet_path=")
  assert_one_line_error(result, "train_config.json: nz must be a positive integer, got 'big'")
