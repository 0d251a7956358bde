"""make_synthetic + train end to end: a short run, determinism, resume after kill -9 equal to an
uninterrupted run, restore refusal, bad data folders, and data-parallel runs (two logical CPU
devices; two worker processes over loopback) that match the one-device run."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from gcn_face import records
from tests.scripts_run import ROOT, assert_one_line_error, run_script

COMMON = ["--batch_size=2", "--shuffle_buffer=4", "--summary_every=1"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("synthetic"))
  result = run_script("make_synthetic", f"--output_dir={directory}", "--model=synthetic_grid",
                      "--num_train=12",
                      "--num_val=4", "--num_test=0", "--per_shard=8", "--batch_size=8")
  assert result.returncode == 0, result.stderr[-2000:]
  return directory


@pytest.fixture(scope="module")
def sampling_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("sampling"))


def _train(dataset_dir, sampling_dir, checkpoint_dir, *args):
  return run_script("train", f"--data_dir={dataset_dir}", f"--sampling_dir={sampling_dir}",
                    f"--checkpoint_dir={checkpoint_dir}", *COMMON, *args)


def _weights(checkpoint_dir, step=None):
  path = (os.path.join(checkpoint_dir, f"ckpt-{step}") if step
          else tf.train.latest_checkpoint(checkpoint_dir))
  reader = tf.train.load_checkpoint(path)
  names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("generator/"))
  assert len(names) > 10
  return {n: reader.get_tensor(n) for n in names}


def test_dataset_manifest(dataset_dir):
  files, count, manifest = records.split_files(dataset_dir, "train")
  assert count == 12 and len(files) == 2 and manifest["info"]["has_albedo"]
  first = next(iter(records.dataset(dataset_dir, "train", True, True)))
  assert first["image"].shape == (224, 224, 3) and first["albedo"].shape == (3315, 3)
  assert 0.05 < float(tf.reduce_mean(first["mask"])) < 0.9


@pytest.fixture(scope="module")
def straight(dataset_dir, sampling_dir, tmp_path_factory):
  """An uninterrupted one-device run: 6 steps per epoch, 2 epochs, so the schedule changes and
  the lr decays once."""
  directory = str(tmp_path_factory.mktemp("straight"))
  result = _train(dataset_dir, sampling_dir, directory, "--epoch=2", "--checkpoint_every=100")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "validation at step 12" in result.stderr
  assert "Sharding callback" not in result.stderr  # TensorFlow's per-checkpoint info line
  assert os.listdir(os.path.join(directory, "logs"))
  return directory


def test_short_run_is_deterministic_and_resumes_after_kill(dataset_dir, sampling_dir, straight,
                                                           tmp_path):
  # Killed hard after its checkpoint at step 4, then restored: a second process whose weights
  # must equal the uninterrupted run's bit for bit (which also makes runs deterministic).
  killed = str(tmp_path / "killed")
  args = [sys.executable, "-m", "scripts.train", f"--data_dir={dataset_dir}",
          f"--sampling_dir={sampling_dir}", f"--checkpoint_dir={killed}", *COMMON, "--epoch=2",
          "--checkpoint_every=4"]
  process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
  deadline = time.time() + 300
  # A checkpoint counts once the manager has recorded it (the `checkpoint` file is written
  # after the data and index files).
  while time.time() < deadline and not str(tf.train.latest_checkpoint(killed)).endswith("ckpt-4"):
    assert process.poll() is None, process.stderr.read()[-3000:]
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert tf.train.latest_checkpoint(killed).endswith("ckpt-4")
  refused = _train(dataset_dir, sampling_dir, killed, "--epoch=2")
  assert_one_line_error(refused, "pass --restore")
  resumed = _train(dataset_dir, sampling_dir, killed, "--epoch=2", "--restore",
                   "--checkpoint_every=4")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "restored" in resumed.stderr and "(step 4)" in resumed.stderr

  expected, actual = _weights(straight), _weights(killed)
  for name, value in expected.items():
    np.testing.assert_array_equal(actual[name], value, err_msg=name)


@pytest.mark.parametrize("setup,message", [
    ("missing", "no manifest"),
    ("no_train", "no 'train' split"),
    ("tiny", "fewer than one batch"),
])
def test_bad_data_folders(tmp_path, setup, message):
  directory = tmp_path / "data"
  directory.mkdir()
  if setup != "missing":
    writer = records.ShardWriter(str(directory), "val" if setup == "no_train" else "train", 8, {})
    if setup == "tiny":
      image = np.zeros((224, 224, 3), np.uint8)
      writer.write(records.encode_example("a", image, image[..., 0], np.zeros(257),
                                          np.zeros((5, 2))))
    writer.close()
  result = run_script("train", f"--data_dir={directory}", "--batch_size=4")
  assert_one_line_error(result, message)


def _assert_close_to(expected_dir, actual_dir, step=None):
  # Gradients summed over replicas differ from one batch's by rounding only; a replica on the
  # wrong rows, or a gradient not all-reduced, moves weights by the lr (1e-4) per step.
  expected, actual = _weights(expected_dir, step), _weights(actual_dir, step)
  assert expected.keys() == actual.keys()
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=0, atol=1e-5, err_msg=name)


def test_mirrored_over_two_cpu_devices_matches_one_device(dataset_dir, sampling_dir, straight,
                                                          tmp_path):
  mirrored = str(tmp_path / "mirrored")
  # The first epoch (6 steps) against the one-device run's checkpoint at step 6.
  result = _train(dataset_dir, sampling_dir, mirrored, "--epoch=2", "--max_steps=6",
                  "--strategy=mirrored", "--cpu_devices=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "over 2 replica(s) (mirrored)" in result.stderr
  _assert_close_to(straight, mirrored, step=6)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_local_workers_match_one_device(dataset_dir, sampling_dir, straight, tmp_path):
  shared = str(tmp_path / "multi_worker")
  cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    workers.append(subprocess.Popen(
        [sys.executable, "-m", "scripts.train", f"--data_dir={dataset_dir}",
         f"--sampling_dir={sampling_dir}", f"--checkpoint_dir={shared}", *COMMON, "--epoch=2",
         "--max_steps=6", "--strategy=multi_worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True))
  try:
    logs = [w.communicate(timeout=540)[1] for w in workers]
  finally:
    for w in workers:
      w.kill()
  for w, log in zip(workers, logs):
    assert w.returncode == 0, log[-3000:]
  assert "over 2 replica(s) (multi_worker)" in logs[0]
  # Worker 0 is the chief: the shared folder holds its checkpoints and logs, worker 1's
  # temporary checkpoints are gone.
  assert "validation at step 6" in logs[0] and "validation" not in logs[1]
  temporary = logs[1].split("checkpoint ")[-1].split("/ckpt-")[0]
  assert temporary != shared and not os.path.exists(temporary)
  _assert_close_to(straight, shared, step=6)


@pytest.mark.parametrize("args,env,message", [
    (["--strategy=multi_worker"], {}, "needs TF_CONFIG"),
    (["--strategy=multi_worker"], {"TF_CONFIG": "{not json"}, "TF_CONFIG"),
    (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=3"], {},
     "--batch_size 3 does not split evenly over 2 replicas"),
])
def test_strategy_errors(dataset_dir, tmp_path, args, env, message):
  result = subprocess.run(
      [sys.executable, "-m", "scripts.train", f"--data_dir={dataset_dir}",
       f"--checkpoint_dir={tmp_path}", *args], cwd=ROOT, capture_output=True, text=True,
      timeout=300, env={**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, **env},
      check=False)
  assert_one_line_error(result, message)


def test_validation_writes_mesh_summaries(straight):
  """TensorBoard's mesh plugin gets the first validation face, input-coloured, coarse and
  fine, with per-vertex colours, at each validation."""
  seen = {}
  for path in glob.glob(os.path.join(straight, "logs", "*tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.startswith("val/mesh_"):
          seen[(value.tag, event.step)] = tf.make_ndarray(value.tensor)
  steps = sorted({step for _, step in seen})
  assert steps and steps[-1] == 12
  vertices = seen[("val/mesh_fine_VERTEX", 12)]
  faces = seen[("val/mesh_fine_FACE", 12)]
  assert vertices.ndim == 3 and vertices.shape[0] == 1 and vertices.shape[2] == 3
  assert faces.max() < vertices.shape[1] and faces.shape[2] == 3
  colors = {n: seen[(f"val/mesh_{n}_COLOR", 12)].astype(np.float64)
            for n in ("input", "coarse", "fine")}
  for name, value in colors.items():
    assert value.shape == vertices.shape and value.std() > 1.0, name
  assert np.abs(colors["input"] - colors["coarse"]).mean() > 1.0
