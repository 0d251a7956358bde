"""Makes the synthetic training set: rendered faces with true albedo, occluders and masks.

  python -m scripts.make_synthetic --output_dir=data/synthetic --num_train=512

Same TFRecord format as scripts/prepare_data.py (gcn_face/records.py), plus the
true per-vertex albedo for evaluation. Deterministic per --seed; a killed run
continues after its last complete shard.
"""

from absl import app, flags, logging

from scripts.common import (fail, load_face_model, parse_flags, Progress, quiet_tensorflow,
                            require_compiled_ops, user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "data/synthetic", "Dataset folder (TFRecord shards + manifest).")
flags.DEFINE_string("model", "synthetic",
                    "Morphable model: 'synthetic' (the embedded 35,709-vertex model), "
                    "'synthetic_grid' (a small grid model), 'synthetic_bfm' (real BFM topology, "
                    "needs checkpoints/BFM/facemodel_info.mat) or a BFM_model_front.mat.")
flags.DEFINE_integer("num_train", 512, "Training faces.", lower_bound=0)
flags.DEFINE_integer("num_val", 32, "Validation faces.", lower_bound=0)
flags.DEFINE_integer("num_test", 32, "Test faces.", lower_bound=0)
flags.DEFINE_integer("per_shard", 128, "Faces per TFRecord shard.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Faces rendered together.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed; face i of a split always gets the same face.")

SPLIT_SEED_OFFSET = {"train": 0, "val": 10_000_000, "test": 20_000_000}


def make_split(renderer, directory, split, count, info):
  from gcn_face import records  # pylint: disable=g-import-not-at-top
  writer = records.ShardWriter(directory, split, FLAGS.per_shard, info)
  start = writer.next_index
  if start >= count:
    logging.info("%s: %d faces already written", split, start)
    writer.close()
    return
  if start:
    logging.info("%s: resuming at face %d", split, start)
  progress = Progress(count, f"{split} faces", done=start)
  base = FLAGS.seed * 100_000_000 + SPLIT_SEED_OFFSET[split]
  for first in range(start, count, FLAGS.batch_size):
    indices = range(first, min(first + FLAGS.batch_size, count))
    for i, face in zip(indices, renderer.render([base + i for i in indices])):
      writer.write(records.encode_example(
          f"synthetic-{split}-{i:07d}", face["image"], face["mask"], face["coeff"],
          face["landmarks"], face["landmarks68"], face["albedo"]))
    progress.update(len(indices))
  writer.close()


def main(argv):
  del argv
  from gcn_face import records, synthetic_data  # pylint: disable=g-import-not-at-top
  require_compiled_ops()
  for name in ("num_train", "num_val", "num_test"):
    if getattr(FLAGS, name) < 0:
      fail(f"--{name} must be >= 0")
  if FLAGS.per_shard < 1 or FLAGS.batch_size < 1:
    fail("--per_shard and --batch_size must be >= 1")
  directory = user_path(FLAGS.output_dir)
  try:
    records.check_output_folder(directory)  # before a minute of building the model
    model = load_face_model(FLAGS.model)
  except (ValueError, OSError) as e:
    fail(str(e).splitlines()[0])
  info = {"source": "synthetic", "model": FLAGS.model, "num_vertices": int(model.num_vertices),
          "seed": FLAGS.seed, "has_albedo": True, "has_landmarks68": True,
          "program": "scripts/make_synthetic.py"}
  renderer = synthetic_data.SyntheticRenderer(model)
  try:
    for split in ("train", "val", "test"):
      count = getattr(FLAGS, f"num_{split}")
      if count:
        make_split(renderer, directory, split, count, info)
  except records.DatasetError as e:
    fail(str(e))
  logging.info("synthetic dataset in %s", directory)


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
