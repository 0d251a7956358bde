"""Helpers shared by the command-line programs."""

import logging as pylogging
import math
import os
import re
import sys
import threading


def user_path(path):
  """Paths given to `bazel run` are relative to the workspace, not the runfiles tree."""
  base = os.environ.get("BUILD_WORKSPACE_DIRECTORY", "")
  return path if os.path.isabs(path) or not base else os.path.join(base, path)


def fail(message):
  """Ends the program with one line on stderr and exit status 1 (no usage dump, no trace)."""
  raise SystemExit(f"error: {message}")


def parse_flags(argv):
  """absl's flag parsing for `app.run(main, flags_parser=parse_flags)`: a bad flag (a
  validator's or a bound's failure, an unknown flag, a NaN or infinite float) ends the program
  with one `error:` line naming it, exit status 1 (absl's own prints two lines)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  for name, flag in flags.FLAGS._flags().items():  # pylint: disable=protected-access
    if isinstance(flag.value, float) and not math.isfinite(flag.value):
      fail(f"flag --{name}={flag.value}: must be a finite number")
  return rest


def require_numbers(name, count=None, low=None):
  """Registers an absl validator: list flag --name holds finite numbers (`count` of them,
  each >= `low`)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  def check(values):
    try:
      numbers = [float(v) for v in values]
    except (TypeError, ValueError):
      return False
    return ((count is None or len(numbers) == count) and all(map(math.isfinite, numbers)) and
            (low is None or all(n >= low for n in numbers)))

  what = f"{count} " if count else ""
  bound = f", each >= {low:g}" if low is not None else ""
  flags.register_validator(name, check, f"must be {what}comma-separated finite numbers{bound}")


_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[\[\{\{node [^]]*\]\]|"
                       r"\s*\[Op:[^]]*\].*$|\s*name:\s*$")
_TF_HEADERS = ("Graph execution error", "Detected at node", "File ", "[[", "Node:")


def error_line(error):
  """One line for an exception: the message of a TensorFlow op error without the traced
  function's stack, `{{function_node ...}}` prefix or node suffix; else the first line."""
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  lines = [line for line in lines if not line.startswith(_TF_HEADERS)] or lines or [repr(error)]
  return _TF_NOISE.sub("", lines[0]).strip() or lines[0]


def require_compiled_ops():
  """Loads the project's C++ op libraries now (they load lazily, and a missing one would
  otherwise surface as a long StagingError at the first traced step); fail() with one line."""
  try:
    from renderer import _op_library  # pylint: disable=g-import-not-at-top
    from deep3dface import face_ops  # pylint: disable=g-import-not-at-top
    _op_library.ops()
    face_ops.ops()
  except ImportError as e:
    fail(str(e).splitlines()[0])


class Progress:
  """Logs `done/total`, rate and ETA through absl at most every `interval` seconds."""

  def __init__(self, total, what, interval=5.0, done=0):
    import time  # pylint: disable=g-import-not-at-top
    self._time = time.monotonic
    self.total, self.what, self.interval = total, what, interval
    self.start_done = self.done = done
    self.start = self.last = self._time()

  def update(self, count=1, force=False):
    from absl import logging  # pylint: disable=g-import-not-at-top
    self.done += count
    now = self._time()
    if not force and now - self.last < self.interval and self.done < self.total:
      return
    self.last = now
    rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    logging.info("%s: %d/%d (%.1f/s, ETA %s)", self.what, self.done, self.total, rate,
                 format_seconds(eta))


def format_seconds(seconds):
  if seconds == float("inf"):
    return "unknown"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# Morphable-model names the programs take besides a BFM_model_front.mat path.
SYNTHETIC_MODELS = {"synthetic": "face", "synthetic_grid": "grid", "synthetic_bfm": "bfm"}


def load_face_model(spec):
  """A MorphableModel from 'synthetic' (the embedded default, 35,709 vertices),
  'synthetic_grid' (the small grid model), 'synthetic_bfm' (real BFM topology from
  checkpoints/BFM/facemodel_info.mat) or a BFM_model_front.mat path."""
  from deep3dface import bfm, synthetic  # pylint: disable=g-import-not-at-top
  if spec == "synthetic_bfm":
    info = user_path("checkpoints/BFM/facemodel_info.mat")
    if not os.path.isfile(info):
      raise ValueError(f"{info}: needed for --model=synthetic_bfm (Deep3D's BFM/ folder)")
    return synthetic.synthetic_model("bfm", info)
  if spec in SYNTHETIC_MODELS:
    return synthetic.synthetic_model(SYNTHETIC_MODELS[spec])
  return bfm.load_model(user_path(spec))


def load_refinement(checkpoint_dir, rnet_model=None):
  """(TextureRefinement with trained weights, MorphableModel, its train_config.json dict) of a
  scripts/train.py checkpoint folder."""
  from deep3dface import face_model  # pylint: disable=g-import-not-at-top
  from gcn_face import mesh_sampling, refinement, training  # pylint: disable=g-import-not-at-top
  from gcn_face.identity import encoder  # pylint: disable=g-import-not-at-top
  config = training.read_run_config(checkpoint_dir)
  keys = ("face_model", "sampling_dir", "model", "wide", "nz", "refiner_input", "identity")
  absent = [k for k in keys if k not in config]
  if absent:
    raise ValueError(f"{checkpoint_dir}/{training.RUN_CONFIG}: missing {', '.join(absent)}")
  model = load_face_model(config["face_model"])
  if config.get("rnet") and rnet_model is None:
    raise ValueError(f"{checkpoint_dir} was trained with the R-Net's pool5 in the embedding; "
                     "it needs --rnet_path (checkpoints/FaceReconModel.pb)")
  sampling = mesh_sampling.load_or_build(model.mean_shape, model.triangles,
                                         directory=config["sampling_dir"])
  identity = encoder.load_encoder(config["identity"], checkpoint_dir=user_path("checkpoints"))
  module = refinement.TextureRefinement(
      face_model.FaceModel(model), sampling, identity, config["model"], config["wide"],
      config["nz"], config["refiner_input"], rnet_model if config.get("rnet") else None,
      config.get("ablation", "none"), config.get("start", "release"),
      config.get("residual_gain", 1.0), config.get("exact_sampling", False))
  latest = training.restore_generator(module.generator, checkpoint_dir)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.info("GCN texture refinement from %s", latest)
  return module, model, config


TF_LOGS_ENV = "GCN_FACE_TF_LOGS"  # 1: keep TensorFlow's C++ start-up and info lines
# TensorFlow's C++ info/warning lines (glog prefix: I1202 12:00:00.1 123 file.cc:45]), the
# abseil notice that precedes them, and the CPU-feature banner's second line.
_TF_LINE = re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]|^WARNING: All log messages before "
                      r"absl::InitializeLog|^To enable the following instructions")


def _verbose(argv):
  """Whether absl's --verbosity / -v asks for 1 or more."""
  for i, arg in enumerate(argv):
    for flag in ("--verbosity", "-v"):
      value = (arg[len(flag) + 1:] if arg.startswith(flag + "=")
               else argv[i + 1] if arg == flag and i + 1 < len(argv) else None)
      if value is not None and value.lstrip("-").isdigit() and int(value) >= 1:
        return True
  return False


_TF_PACKAGE = os.sep + "tensorflow" + os.sep


def _not_tensorflow_info(record):
  return record.levelno >= pylogging.WARNING or _TF_PACKAGE not in record.pathname


def quiet_tensorflow(argv=None):
  """Keeps TensorFlow's C++ start-up banner, oneDNN notice and info lines (e.g. a
  'Sharding callback duration' line per checkpoint) out of a program's stderr unless
  --verbosity >= 1 or $GCN_FACE_TF_LOGS=1. Call before TensorFlow is imported, from a
  program's `__main__` block only (it redirects file descriptor 2).

  TF_CPP_MIN_LOG_LEVEL=2 (unless set) silences most; the lines TensorFlow prints before it
  reads that variable are dropped by a filter on the C-level stderr, while Python's own
  writes (absl logging, error messages) go straight to the terminal."""
  argv = sys.argv if argv is None else argv
  if os.environ.get(TF_LOGS_ENV) == "1" or _verbose(argv):
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.stderr.flush()
  terminal = os.dup(2)
  sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, errors="backslashreplace")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().python_handler.stream = sys.stderr
  # TensorFlow's Python modules log info lines through absl too, e.g. "Sharding callback
  # duration" at every checkpoint: drop those below WARNING, keep the programs' own.
  logging.get_absl_handler().addFilter(_not_tensorflow_info)
  read, write = os.pipe()
  os.dup2(write, 2)
  os.close(write)

  def forward():
    with os.fdopen(read, "rb") as lines:
      for line in lines:
        if not _TF_LINE.match(line.decode("utf-8", "replace")):
          os.write(terminal, line)

  threading.Thread(target=forward, name="tf-log-filter", daemon=True).start()
