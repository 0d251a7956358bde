"""Training speed and memory (issue: training targets).

Generator steps per second at batch 4 on a synthetic dataset (records written
to a temporary folder and read through the trainer's input pipeline), without
and with --gan (one iteration = 5 critic steps + 1 generator step), and the
peak RSS of each configuration (each runs in its own process), for the quick start's
generator (--start=coarse --refiner_input=delit). The embedded default (the 35,709-vertex
"face" topology), the small grid model (3,315 vertices) and, when ../shared has Deep3D's
facemodel_info.mat, the real 35,709-vertex BFM topology.

  python -m bench.train_bench --output=bench/results/train.json
"""

import json
import os
import resource
import subprocess
import sys
import tempfile

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 4, "Batch size.")
flags.DEFINE_integer("repeats", 10, "Timed steps per configuration.")
flags.DEFINE_string("facemodel_info", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "deep3d",
    "BFM", "facemodel_info.mat"), "Deep3D's facemodel_info.mat for the BFM-topology run.")
flags.DEFINE_list("topologies", ["face", "grid", "bfm"], "Models to time (bfm needs the file).")
flags.DEFINE_list("critic", ["nogan", "gan"], "Without and/or with the critic.")
flags.DEFINE_integer("threads", 0, "Intra- and inter-op threads of each run (0: TensorFlow's "
                     "default, one per core).")
flags.DEFINE_string("child", None, "Internal: run one configuration 'topology:gan'.")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")


def run_child(topology, gan):
  import time  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from deep3dface import face_model, synthetic  # pylint: disable=g-import-not-at-top
  from gcn_face import (  # pylint: disable=g-import-not-at-top
      mesh_sampling, records, refinement, schedule, synthetic_data, training)
  from gcn_face.identity import encoder  # pylint: disable=g-import-not-at-top
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  model = (synthetic.synthetic_model("bfm", FLAGS.facemodel_info) if topology == "bfm" else
           synthetic.synthetic_model(topology))
  work = tempfile.mkdtemp()
  writer = records.ShardWriter(work, "train", 64, {})
  for face in synthetic_data.SyntheticRenderer(model).render(range(32)):
    writer.write(records.encode_example("f", face["image"], face["mask"], face["coeff"],
                                        face["landmarks"]))
  writer.close()
  sampling = mesh_sampling.load_or_build(model.mean_shape, model.triangles,
                                         directory=os.path.join(work, "sampling"))
  # The quick start's generator (start from the coarse texture, de-lit input).
  module = refinement.TextureRefinement(face_model.FaceModel(model), sampling,
                                        encoder.DlibEncoder(), refiner_mode="delit",
                                        start="coarse")
  config = training.Config(batch_size=FLAGS.batch_size, gan=gan, shuffle_buffer=32)
  trainer = training.Trainer(module, refinement.skin_indices(model), 8, config)
  raw = records.raw_dataset(work, "train")
  keys = ("image", "mask", "coeff", "landmarks")
  batches = (({k: b[k] for k in keys}) for e in range(1000)
             for b in training.shuffled_batches(raw, e, config))
  lambda_ren, lambda_ref = (tf.constant(v) for v in schedule.loss_weights(1))

  def iteration(step):
    if gan:
      for k in range(config.critic_steps):
        trainer.critic_step(next(batches), tf.constant([0, step * 10 + k]))
    terms = trainer.generator_step(next(batches), lambda_ren, lambda_ref)
    return float(terms["total"])

  def timed(fn):
    for _ in range(2):
      fn(0)
    times = []
    for step in range(FLAGS.repeats):
      start = time.perf_counter()
      fn(step + 3)
      times.append(time.perf_counter() - start)
    return float(np.median(times)), float(min(times))

  median, fastest = timed(iteration)
  peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  result = {"topology": topology, "num_vertices": int(model.num_vertices), "gan": gan,
            "iteration_s_median": round(median, 4), "iteration_s_min": round(fastest, 4),
            "steps_per_s": round(1.0 / median, 3), "peak_rss_gb": round(peak_gb, 3),
            "repeats": FLAGS.repeats, "threads": FLAGS.threads or os.cpu_count()}
  if not gan:
    result["parts_s_median_min"] = _parts(module, trainer, next(batches), timed,
                                          (lambda_ren, lambda_ref))
  return result


def _parts(module, trainer, batch, timed, lambdas):
  """Where a generator step's time goes: the GCN alone (forward + backward), the update on
  real training gradients (the trainer's fused clip + check + Adam, and beside it the plain
  formulation: tf.clip_by_norm, an entry-wise finite check, Keras' Adam), the forward pass of
  the whole module, the identity network."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import optimizer, schedule  # pylint: disable=g-import-not-at-top
  out = module(batch)
  generator = module.generator
  size, vertices = out["fine_albedo"].shape[:2]
  inputs = (out["embedding"], tf.random.uniform([size, vertices, module.channels], -1, 1))
  variables = generator.trainable_variables
  clip = trainer.config.clip_norm

  @tf.function
  def gcn(inputs):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.abs(generator(inputs, training=True)))
    return tape.gradient(loss, variables)

  @tf.function
  def training_gradients(batch):
    with tf.GradientTape() as tape:
      total = trainer._objective(trainer.terms(module(batch, training=True)), *lambdas)  # pylint: disable=protected-access
    return tape.gradient(total, variables)

  grads = training_gradients(batch)
  plain_adam = keras.optimizers.Adam(schedule.StepLearningRate(trainer.schedule, trainer.step),
                                     beta_1=0.9, beta_2=0.999, epsilon=1e-8)
  plain_adam.build(variables)

  @tf.function
  def fused_update(grads):
    clipped, finite = optimizer.clip_and_check(grads, clip)
    trainer.g_optimizer.apply_gradients(zip(clipped, variables))
    return finite

  @tf.function
  def plain_update(grads):
    clipped = [tf.clip_by_norm(g, clip) for g in grads]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    plain_adam.apply_gradients(zip(clipped, variables))
    return finite

  forward = tf.function(lambda b: module(b, training=True)["composite_255"])
  embed = tf.function(lambda images: module.encoder.embed(images, batch["landmarks"]))
  parts = {"gcn_forward_backward": lambda _: gcn(inputs),
           "clip_check_adam": lambda _: fused_update(grads),
           "clip_check_adam_plain": lambda _: plain_update(grads),
           "module_forward": lambda _: forward(batch),
           "identity_embedding": lambda _: embed(out["composite_255"])}
  return {name: [round(t, 4) for t in timed(fn)] for name, fn in parts.items()}


def main(argv):
  del argv
  if FLAGS.child:
    topology, gan = FLAGS.child.split(":")
    print("RESULT " + json.dumps(run_child(topology, gan == "gan")))
    return
  from bench.timing import report_json  # pylint: disable=g-import-not-at-top
  topologies = [t for t in FLAGS.topologies
                if t != "bfm" or os.path.isfile(FLAGS.facemodel_info)]
  results = []
  for topology in topologies:
    for gan in FLAGS.critic:
      out = subprocess.run([sys.executable, "-m", "bench.train_bench", f"--child={topology}:{gan}",
                            f"--batch_size={FLAGS.batch_size}", f"--repeats={FLAGS.repeats}",
                            f"--threads={FLAGS.threads}",
                            f"--facemodel_info={FLAGS.facemodel_info}"],
                           capture_output=True, text=True, check=False)
      line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
      if not line:
        raise SystemExit(f"error: {topology}:{gan} failed: {out.stderr[-2000:]}")
      results.append(json.loads(line[0][len("RESULT "):]))
      logging.info("%s", results[-1])
  report_json({"benchmark": "train", "batch_size": FLAGS.batch_size,
               "targets": {"steps_per_s_without_critic": 0.8, "peak_rss_gb": 6.0,
                           "face_step_s_median_2_threads": 0.35,
                           "face_clip_check_adam_s_median_1_thread": 0.04,
                           "face_gcn_forward_backward_s_median_1_thread": 0.35},
               "results": results}, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
