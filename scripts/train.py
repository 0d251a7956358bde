"""Trains the GCN texture-refinement module (SPEC 6) on a dataset from make_synthetic / prepare_data.

  python -m scripts.train --data_dir=data/synthetic --epoch=50
  bazel run //scripts:train -- --data_dir=data/synthetic --gan

Flags keep the release's names and defaults (--batch_size 4 --epoch 50 --lr 1e-4
--gan --adv_lambda 1e-3 --model normal --wide --nz 512 --seed 2). Checkpoints
(generator, critic, both Adam states, step) are written every
--checkpoint_every steps and at each epoch's end (the last 3 kept); --restore
continues exactly where the last one stopped. TensorBoard logs go to
<checkpoint_dir>/logs.

Data parallelism (--batch_size is the global batch, split evenly over replicas):
  --strategy=mirrored                 all local GPUs (or --cpu_devices logical CPUs)
  --strategy=multi_worker             MultiWorkerMirroredStrategy over the cluster in
                                      TF_CONFIG; start one process per worker, every one
                                      with the same flags and a --checkpoint_dir they share.
The chief (task "chief", else worker 0) writes the checkpoints and logs; the other
workers write theirs to a temporary folder that they remove at the end.
"""

import itertools
import math
import os
import re
import shutil
import tempfile
import time

from absl import app, flags, logging

from scripts.common import (SYNTHETIC_MODELS, error_line, fail, format_seconds, load_face_model,
                            parse_flags, Progress, quiet_tensorflow, require_compiled_ops,
                            user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data/synthetic", "Dataset folder (records.py format).")
flags.DEFINE_string("checkpoint_dir", None,
                    "Checkpoints and logs (default: checkpoints/bfm09_face_<model>[_gan]).")
flags.DEFINE_string("face_model", None,
                    "Morphable model: 'synthetic', 'synthetic_grid', 'synthetic_bfm' or a "
                    "BFM_model_front.mat (default: the dataset manifest's).")
flags.DEFINE_string("sampling_dir", None, "Mesh-sampling cache (default: data/params/<face_model>).")
flags.DEFINE_enum("identity", "auto", ["auto", "dlib", "facenet"],
                  "Identity encoder (auto: FaceNet when checkpoints/facenet/ has it, else dlib).")
flags.DEFINE_string("rnet_path", None,
                    "Deep3D's FaceReconModel.pb: adds R-Net pool5 to the embedding (the release).")
flags.DEFINE_integer("batch_size", 4, "Batch size.", lower_bound=1)
flags.DEFINE_integer("epoch", 50, "Epochs.", lower_bound=1)
flags.DEFINE_integer("max_steps", 0, "Stop after this many generator steps (0: all epochs).",
                     lower_bound=0)
flags.DEFINE_float("lr", 1e-4, "Adam learning rate (x0.98 after every schedule epoch).",
                   lower_bound=0.0)
flags.DEFINE_integer("schedule_epoch_steps", 0,
                     "Generator steps per schedule epoch, the unit of the lambda ramps and the lr "
                     "decay (0: one pass over the training set, the release; the release's "
                     "epoch on CelebA is gcn_face/schedule.py's RELEASE_EPOCH_STEPS).",
                     lower_bound=0)
flags.DEFINE_integer("schedule_start_epoch", 0,
                     "Schedule epoch at step 0: 0 is the release (epoch 0 refine-only, then "
                     "lambda_ren +0.2 per epoch); 5 uses the full weights from the first step.",
                     lower_bound=0)
flags.DEFINE_enum("start", "release", ["release", "coarse"],
                  "Generator output: release (tanh of the Combine Net) or coarse (a residual on "
                  "the coarse albedo, exactly the coarse texture at step 0).")
flags.DEFINE_float("residual_gain", 1.0, "Gain of the residual branch with --start=coarse.")
flags.DEFINE_float("lambda_sym", 0.5, "Weight of the symmetry loss L_sym (the release's 0.5).",
                   lower_bound=0.0)
flags.DEFINE_float("lambda_id", 0.2,
                   "Weight of the identity loss L_id (the release's 0.2; 0: the ablation).",
                   lower_bound=0.0)
flags.DEFINE_bool("exact_sampling", False,
                  "Sample photo colours where the vertices project (bilinear) instead of the "
                  "release's rounding, half a pixel off.")
flags.DEFINE_bool("gan", False, "Train with the WGAN-GP critic (SPEC 6.3).")
flags.DEFINE_float("adv_lambda", 1e-3, "Weight of the adversarial losses.", lower_bound=0.0)
flags.DEFINE_integer("critic_steps", 5, "Critic updates per generator update with --gan.",
                     lower_bound=1)
flags.DEFINE_bool("per_sample_eps", True,
                  "One WGAN-GP interpolation weight per sample (false: one per batch, the release).")
flags.DEFINE_enum("model", "normal", ["normal", "resnet"], "Generator variant (SPEC 3.7).")
flags.DEFINE_bool("wide", False, "Wide GCN decoder.")
flags.DEFINE_integer("nz", 512, "Refiner bottleneck width.", lower_bound=1)
flags.DEFINE_enum("objective", "release", ["release", "paper"],
                  "release: per-vertex projection loss; paper: image-space pixel loss.")
flags.DEFINE_enum("refiner_input", "code", ["code", "paper", "delit"],
                  "Refiner input: 7 channels (code), the coarse albedo only (paper), or the 7 "
                  "and the de-lit photo residual (delit, 10 channels).")
flags.DEFINE_enum("ablation", "none", ["none", "no_decoder", "no_refiner"],
                  "Leave the GCN Decoder or Refiner out (the paper's ablations).")
flags.DEFINE_integer("seed", 2, "Random seed (data order, initialisation, WGAN-GP).")
flags.DEFINE_integer("shuffle_buffer", 10, "Shuffle buffer (the release's 10).", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every N steps (and at epoch ends).",
                     lower_bound=1)
flags.DEFINE_integer("summary_every", 20, "TensorBoard scalars every N steps.", lower_bound=1)
flags.DEFINE_bool("mesh_summaries", True,
                  "TensorBoard meshes (mesh plugin) of the first validation face at each "
                  "validation: input-coloured (the photo under the vertices), coarse, fine.")
flags.DEFINE_bool("restore", False, "Continue from the latest checkpoint in --checkpoint_dir.")
flags.DEFINE_bool("deterministic", True, "Deterministic TensorFlow ops (same --seed, same run).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy: one device, all local devices, or the workers of "
                  "TF_CONFIG.")
flags.DEFINE_integer("cpu_devices", 1,
                     "Split the CPU into this many logical devices (--strategy=mirrored on a "
                     "machine without GPUs).")

MODEL_INPUTS = ("image", "mask", "coeff", "landmarks")


def _inputs(batch):
  return {k: batch[k] for k in MODEL_INPUTS}


def build(manifest):
  """(TextureRefinement, skin vertex indices) for the flags and the dataset."""
  from deep3dface import face_model, rnet  # pylint: disable=g-import-not-at-top
  from gcn_face import mesh_sampling, refinement  # pylint: disable=g-import-not-at-top
  from gcn_face.identity import encoder  # pylint: disable=g-import-not-at-top
  spec = FLAGS.face_model or manifest["info"].get("model", "synthetic")
  model = load_face_model(spec)
  if manifest["info"].get("num_vertices", model.num_vertices) != model.num_vertices:
    raise ValueError(f"the dataset was made for a {manifest['info']['num_vertices']}-vertex model, "
                     f"--face_model={spec} has {model.num_vertices}")
  name = os.path.splitext(os.path.basename(spec))[0]
  sampling_dir = os.path.abspath(
      user_path(FLAGS.sampling_dir or os.path.join("data", "params", name)))
  sampling = mesh_sampling.load_or_build(model.mean_shape, model.triangles,
                                         directory=sampling_dir, name=name)
  identity = encoder.load_encoder(FLAGS.identity, checkpoint_dir=user_path("checkpoints"))
  rnet_model = rnet.from_frozen_graph(user_path(FLAGS.rnet_path)) if FLAGS.rnet_path else None
  module = refinement.TextureRefinement(
      face_model.FaceModel(model), sampling, identity, FLAGS.model,
      FLAGS.wide, FLAGS.nz, FLAGS.refiner_input, rnet_model, FLAGS.ablation, FLAGS.start,
      FLAGS.residual_gain, FLAGS.exact_sampling)
  if spec not in SYNTHETIC_MODELS:
    spec = os.path.abspath(user_path(spec))
  run_config = {"face_model": spec, "sampling_dir": sampling_dir,
                "num_vertices": model.num_vertices, "model": FLAGS.model, "wide": FLAGS.wide,
                "nz": FLAGS.nz, "refiner_input": FLAGS.refiner_input, "ablation": FLAGS.ablation,
                "start": FLAGS.start, "residual_gain": FLAGS.residual_gain,
                "exact_sampling": FLAGS.exact_sampling,
                "identity": identity.kind, "rnet": bool(FLAGS.rnet_path)}
  return module, refinement.skin_indices(model), run_config


# train_config.json key -> the flag that sets it (what --restore must keep).
_RUN_CONFIG_FLAGS = {"face_model": "face_model", "num_vertices": "face_model", "model": "model",
                     "wide": "wide", "nz": "nz", "refiner_input": "refiner_input",
                     "ablation": "ablation", "start": "start", "residual_gain": "residual_gain",
                     "exact_sampling": "exact_sampling", "identity": "identity",
                     "rnet": "rnet_path"}
_TEMP_CHECKPOINT = re.compile(r"^ckpt-\d+_temp$")
_CHECKPOINT_PART = re.compile(r"^part-\d+-of-\d+(\.index|\.data-\d+-of-\d+)$")


def restore(trainer, latest, checkpoint_dir, run_config):
  """--restore: the flags must rebuild the checkpoint's network (one line naming the flag
  that differs), the checkpoint must read; a temporary folder a killed save left is removed."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import training  # pylint: disable=g-import-not-at-top
  try:
    saved = training.read_run_config(checkpoint_dir)
  except ValueError:
    saved = {}
  for key, flag in _RUN_CONFIG_FLAGS.items():
    ours, theirs = run_config[key], saved.get(key, run_config[key])
    if key in training.path_keys(saved):  # resolved against the checkpoint folder
      ours = os.path.abspath(ours) if isinstance(ours, str) else ours
    if ours != theirs:
      fail(f"--{flag}: this run has {key} {run_config[key]!r}, the checkpoint {latest} has "
           f"{saved[key]!r} ({training.RUN_CONFIG}); pass the checkpoint's value to --restore")
  remove_temporary_checkpoints(checkpoint_dir)
  try:
    trainer.checkpoint.restore(latest).assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    fail(f"{latest}: cannot restore ({error_line(e)})")
  logging.info("restored %s (step %d)", latest, int(trainer.step.numpy()))


def remove_temporary_checkpoints(checkpoint_dir):
  """Removes the ckpt-N_temp folders a save killed midway leaves, when they hold nothing but
  checkpoint parts."""
  for name in os.listdir(checkpoint_dir):
    path = os.path.join(checkpoint_dir, name)
    if not _TEMP_CHECKPOINT.match(name) or os.path.islink(path) or not os.path.isdir(path):
      continue
    parts = os.listdir(path)
    if all(_CHECKPOINT_PART.match(p) and os.path.isfile(os.path.join(path, p)) for p in parts):
      for part in parts:
        os.remove(os.path.join(path, part))
      os.rmdir(path)
      logging.info("removed %s (left by an interrupted checkpoint save)", path)


def make_strategy():
  """The tf.distribute strategy of --strategy (and --cpu_devices)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if FLAGS.cpu_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
  if FLAGS.strategy == "default":
    return tf.distribute.get_strategy()
  if FLAGS.strategy == "mirrored":
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if not os.environ.get("TF_CONFIG"):
    fail("--strategy=multi_worker needs TF_CONFIG: the cluster's workers and this process's "
         'task, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
         '"task": {"type": "worker", "index": 0}}')
  try:
    return tf.distribute.MultiWorkerMirroredStrategy()
  except (ValueError, KeyError, TypeError, RuntimeError) as e:
    fail(f"TF_CONFIG: {str(e).splitlines()[0]}")


def is_chief(strategy):
  """Whether this process writes the checkpoints and logs (task "chief", else worker 0)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0 and
          "chief" not in resolver.cluster_spec().as_dict())


def epoch_batches(strategy, raw, epoch, config, skip=0):
  """One epoch of training batches, distributed over the strategy's replicas."""
  from gcn_face import training  # pylint: disable=g-import-not-at-top
  if FLAGS.strategy == "default":
    return training.shuffled_batches(raw, epoch, config, skip)
  return strategy.distribute_datasets_from_function(
      lambda context: training.shuffled_batches(raw, epoch, config, skip, input_context=context))


def critic_batches(strategy, raw, config, steps_per_epoch, consumed):
  """Endless critic batches (their own epochs and order), after `consumed` of them."""
  first_epoch, within = divmod(consumed, steps_per_epoch)
  for e in itertools.count(first_epoch):
    yield from epoch_batches(strategy, raw, 1_000_000 + e, config,
                             within if e == first_epoch else 0)


def readable(batches, split):
  """The batches of a split; a damaged shard ends the program with one line naming it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  iterator = iter(batches)
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      fail(_diagnosis(split) or f"{user_path(FLAGS.data_dir)}: the {split} split is unreadable "
           f"({error_line(e)})")
    yield batch


def _diagnosis(split):
  from gcn_face import records  # pylint: disable=g-import-not-at-top
  try:
    return records.diagnose_split(user_path(FLAGS.data_dir), split)
  except records.DatasetError as e:
    return str(e)


def train(trainer, manager, raw, val, config, steps_per_epoch, total_steps, writer):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import training  # pylint: disable=g-import-not-at-top
  strategy = trainer.strategy
  step = int(trainer.step.numpy())
  progress = Progress(total_steps, "steps", done=step, interval=10.0)
  critic_iter = None
  if config.gan:
    first = trainer.schedule.first_render_step(training.CRITIC_MIN_LAMBDA)
    critic_done = max(0, step - first) * config.critic_steps
    critic_iter = iter(readable(critic_batches(strategy, raw, config, steps_per_epoch,
                                               critic_done), "train"))
  weights = None
  while step < total_steps:
    epoch, in_epoch = divmod(step, steps_per_epoch)
    logging.info("data epoch %d from step %d", epoch, step)
    for batch in readable(epoch_batches(strategy, raw, epoch, config, in_epoch), "train"):
      if trainer.schedule.weights(step) != weights:
        weights = trainer.schedule.weights(step)
        logging.info("step %d: schedule epoch %d, lambda_ren %.1f, lambda_ref %.1f, lr %.3g",
                     step, trainer.schedule.epoch(step), *weights,
                     trainer.schedule.learning_rate(step))
      lambda_ren, lambda_ref = weights
      if critic_iter is not None and lambda_ren > training.CRITIC_MIN_LAMBDA:
        for k in range(config.critic_steps):
          stats = trainer.critic_step(_inputs(next(critic_iter)),
                                      tf.constant([config.seed, step * config.critic_steps + k]))
      terms = trainer.generator_step(_inputs(batch), tf.constant(lambda_ren),
                                     tf.constant(lambda_ref))
      step += 1
      if step % FLAGS.summary_every == 0 or step == total_steps:
        with writer.as_default(step=step):
          for name, value in terms.items():
            tf.summary.scalar(f"train/{name}", value)
          if critic_iter is not None and lambda_ren > training.CRITIC_MIN_LAMBDA:
            for name, value in stats.items():
              tf.summary.scalar(f"critic/{name}", value)
          tf.summary.scalar("train/lr", trainer.schedule.learning_rate(step - 1))
          tf.summary.scalar("train/lambda_ren", lambda_ren)
      if not all(math.isfinite(float(v)) for v in terms.values()):
        logging.warning("step %d: a loss is not finite (%d updates skipped so far)", step,
                        int(trainer.skipped_updates.numpy()))
      progress.update()
      if step % FLAGS.checkpoint_every == 0:
        manager.save(checkpoint_number=step)
      if step >= total_steps:
        break
    if step < total_steps and step % steps_per_epoch:
      # Short of faces, the next epoch would start again from this step, forever.
      fail(_diagnosis("train") or
           f"{user_path(FLAGS.data_dir)}: the train split holds fewer faces than its manifest "
           f"lists (epoch {epoch} ended at step {step})")
    if step % steps_per_epoch == 0 or step >= total_steps:
      manager.save(checkpoint_number=step)
      logging.info("step %d: loss %.4f, skipped updates %d; checkpoint %s", step,
                   float(terms["total"]), int(trainer.skipped_updates.numpy()),
                   manager.latest_checkpoint)
      if val is not None:
        validate(trainer, val, writer, step)


def validate(trainer, val, writer, step):
  """Mean loss terms on the validation split and a strip of its first faces."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import losses, refinement, training  # pylint: disable=g-import-not-at-top
  history, strip, meshes = [], None, None
  for batch in readable(val, "val"):
    terms, out = trainer.evaluate(_inputs(batch))
    history.append(terms)
    if meshes is None:
      meshes = {name: out[key][:1] for name, key in (
          ("input", "image_colors"), ("coarse", "coarse_albedo"), ("fine", "fine_albedo"))}
      meshes["shape"] = out["shape"][:1]
    if strip is None:
      coarse = losses.composite(refinement.to_255(tf.clip_by_value(out["render_coarse"], -1, 1)),
                                out["image_255"], out["render_alpha"] * out["mask"])
      strip = tf.concat([out["image_255"], coarse, out["composite_255"]], axis=2) / 255.0
  means = training.mean_terms(history)
  logging.info("validation at step %d: %s", step,
               ", ".join(f"{k} {v:.4f}" for k, v in sorted(means.items())))
  with writer.as_default(step=step):
    for name, value in means.items():
      tf.summary.scalar(f"val/{name}", value)
    tf.summary.image("val/input_coarse_fine", strip, max_outputs=4)
    if FLAGS.mesh_summaries and meshes is not None:
      write_mesh_summaries(meshes, trainer.refinement.triangles)
  return means


def write_mesh_summaries(meshes, triangles):
  """val/mesh_<input|coarse|fine>: the first validation face's shape with per-vertex colours
  (uint8) in TensorBoard's mesh plugin, at the writer's current step."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.mesh import summary_v2  # pylint: disable=g-import-not-at-top
  from gcn_face import refinement  # pylint: disable=g-import-not-at-top
  faces = tf.cast(tf.convert_to_tensor(triangles)[None], tf.int32)
  for name in ("input", "coarse", "fine"):
    colors = tf.cast(tf.round(refinement.to_255(tf.clip_by_value(meshes[name], -1.0, 1.0))),
                     tf.uint8)
    summary_v2.mesh(f"val/mesh_{name}", meshes["shape"], faces=faces, colors=colors,
                    description=f"{name} colours on the face's canonical shape (dm)")


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import records, training  # pylint: disable=g-import-not-at-top
  require_compiled_ops()
  if FLAGS.batch_size < 1 or FLAGS.epoch < 1 or FLAGS.critic_steps < 1:
    fail("--batch_size, --epoch and --critic_steps must be >= 1")
  if FLAGS.cpu_devices < 1:
    fail("--cpu_devices must be >= 1")
  strategy = make_strategy()
  chief = is_chief(strategy)
  tf.keras.utils.set_random_seed(FLAGS.seed)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  data_dir = user_path(FLAGS.data_dir)
  try:
    _, count, manifest = records.split_files(data_dir, "train")
    raw = records.raw_dataset(data_dir, "train")
    val = None
    if "val" in manifest["splits"]:
      val = records.dataset(data_dir, "val").batch(FLAGS.batch_size)
  except records.DatasetError as e:
    fail(f"{e} (make the default dataset with: python -m scripts.make_synthetic)")
  steps_per_epoch = count // FLAGS.batch_size
  if steps_per_epoch < 1:
    fail(f"{data_dir}: {count} training faces, fewer than one batch of {FLAGS.batch_size}")
  if FLAGS.schedule_epoch_steps < 0 or FLAGS.schedule_start_epoch < 0:
    fail("--schedule_epoch_steps and --schedule_start_epoch must be >= 0")
  config = training.Config(batch_size=FLAGS.batch_size, lr=FLAGS.lr,
                           schedule_epoch_steps=FLAGS.schedule_epoch_steps,
                           schedule_start_epoch=FLAGS.schedule_start_epoch,
                           gan=FLAGS.gan, adv_lambda=FLAGS.adv_lambda,
                           critic_steps=FLAGS.critic_steps, per_sample_eps=FLAGS.per_sample_eps,
                           objective=FLAGS.objective, lambda_sym=FLAGS.lambda_sym,
                           lambda_id=FLAGS.lambda_id,
                           seed=FLAGS.seed,
                           shuffle_buffer=FLAGS.shuffle_buffer)
  checkpoint_dir = user_path(FLAGS.checkpoint_dir or os.path.join(
      "checkpoints", f"bfm09_face_{FLAGS.model}{'_gan' if FLAGS.gan else ''}"))
  try:
    training.check_batch_split(FLAGS.batch_size, strategy.num_replicas_in_sync)
    with strategy.scope():
      module, skin, run_config = build(manifest)
    trainer = training.Trainer(module, skin, steps_per_epoch, config, strategy)
  except (ValueError, OSError) as e:
    fail(str(e).splitlines()[0])
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  if latest:
    if not FLAGS.restore:
      fail(f"{checkpoint_dir} already has checkpoints; pass --restore to continue, or choose "
           "another --checkpoint_dir")
    restore(trainer, latest, checkpoint_dir, run_config)
  if chief:
    training.write_run_config(checkpoint_dir, run_config)
  # Every worker saves (saving may synchronise them); only the chief's copy is kept.
  own_dir = checkpoint_dir if chief else tempfile.mkdtemp(prefix="train-worker-")
  manager = tf.train.CheckpointManager(trainer.checkpoint, own_dir, max_to_keep=3)
  total_steps = FLAGS.epoch * steps_per_epoch
  if FLAGS.max_steps:
    total_steps = min(total_steps, FLAGS.max_steps)
  writer = (tf.summary.create_file_writer(os.path.join(checkpoint_dir, "logs")) if chief
            else tf.summary.create_noop_writer())
  logging.info("training on %d faces (%d steps/epoch) to step %d over %d replica(s) (%s); "
               "identity encoder %s (%d-d); checkpoints in %s", count, steps_per_epoch,
               total_steps, strategy.num_replicas_in_sync, FLAGS.strategy,
               module.encoder.kind, module.encoder.feature_dim, checkpoint_dir)
  start = time.monotonic()
  try:
    train(trainer, manager, raw, val if chief else None, config, steps_per_epoch, total_steps,
          writer)
  finally:
    if not chief:
      shutil.rmtree(own_dir, ignore_errors=True)
  logging.info("done in %s; checkpoints in %s", format_seconds(time.monotonic() - start),
               checkpoint_dir)


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
