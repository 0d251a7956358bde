"""Prepares training data from photos (or the release's CelebA_RGBA.bin): TFRecords + manifest.

  python -m scripts.prepare_data --input_dir=photos/ --output_dir=data/prepared
  python -m scripts.prepare_data --input_dir=photos/ --mask_dir=masks/   # the original's masks
  python -m scripts.prepare_data --celeba_rgba=CelebA_RGBA.bin
  python -m scripts.prepare_data --input_dir=photos/ --fit       # no R-Net: fitted coefficients

Per face: dlib detection (largest face), Deep3D 5-point alignment to 224 x 224,
68 landmarks in the crop, a skin/occlusion mask (the --mask_dir PNG's alpha
aligned like the photo, else --segmenter), and the 257 coefficients: Deep3D's R-Net
(checkpoints/FaceReconModel.pb) or, with --fit or without the R-Net, analysis-by-synthesis
(deep3dface/fitting.py, Deep3D's objective, --batch_size faces at a time, on --face_model;
from the R-Net's estimate when both). Photos are split into train/val/test by a
seeded shuffle; records go into sharded TFRecords (gcn_face/records.py).
Workers run in parallel; a killed run continues after its last complete shard;
bad inputs are skipped and listed in the manifest.
"""

import concurrent.futures
import multiprocessing
import os

from absl import app, flags, logging
import numpy as np

from scripts.common import (error_line, fail, load_face_model, parse_flags, Progress,
                            quiet_tensorflow, require_compiled_ops, user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("input_dir", None, "Folder of photos (searched recursively).")
flags.DEFINE_string("mask_dir", None,
                    "Optional skin masks: <same relative path>.png whose alpha is 255 on skin.")
flags.DEFINE_string("celeba_rgba", None,
                    "The release's CelebA_RGBA.bin (aligned RGBA crops) instead of --input_dir.")
flags.DEFINE_string("output_dir", "data/prepared", "Dataset folder.")
flags.DEFINE_string("rnet_path", "checkpoints/FaceReconModel.pb",
                    "Deep3D's R-Net frozen graph (absent: the coefficients are fitted).")
flags.DEFINE_bool("fit", False, "Fit the coefficients (from the R-Net's, when it is present).")
flags.DEFINE_string("face_model", None,
                    "Fitting: 'synthetic', 'synthetic_grid', 'synthetic_bfm' or a "
                    "BFM_model_front.mat (default: checkpoints/BFM/BFM_model_front.mat if "
                    "present, else synthetic). Train on the same model.")
flags.DEFINE_integer("landmark_steps", 150, "Fitting: landmark-only Adam steps.", lower_bound=0)
flags.DEFINE_integer("photo_steps", 100, "Fitting: photometric Adam steps.", lower_bound=0)
flags.DEFINE_float("max_photo_megapixels", 40.0,
                   "Photos with more pixels are skipped before decoding (memory); 0: no limit.",
                   lower_bound=0.0)
flags.DEFINE_string("segmenter", "landmarks_colour",
                    "Skin mask when no --mask_dir: landmarks_colour, landmarks, or module:function.")
flags.DEFINE_integer("num_val", 4096, "Validation faces (the release: 4,096), at most 10 %.",
                     lower_bound=0)
flags.DEFINE_integer("num_test", 4096, "Test faces (the release: 4,096), at most 10 %.",
                     lower_bound=0)
flags.DEFINE_integer("per_shard", 256, "Faces per shard.", lower_bound=1)
flags.DEFINE_integer("workers", 2, "Detection/alignment processes.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "R-Net / fitting batch.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the train/val/test split.")


def list_inputs():
  """[(kind, name, a, b)] in a fixed order."""
  from gcn_face import prepare  # pylint: disable=g-import-not-at-top
  if bool(FLAGS.input_dir) == bool(FLAGS.celeba_rgba):
    raise prepare.PrepareError("give exactly one of --input_dir and --celeba_rgba")
  if FLAGS.celeba_rgba:
    path = user_path(FLAGS.celeba_rgba)
    if not os.path.isfile(path):
      raise prepare.PrepareError(f"{path}: no such file")
    return [("rgba", f"{os.path.basename(path)}#{i}", path, i)
            for i in range(prepare.celeba_rgba_count(path))]
  directory = user_path(FLAGS.input_dir)
  mask_dir = user_path(FLAGS.mask_dir) if FLAGS.mask_dir else None
  items = []
  for rel in prepare.list_images(directory):
    mask = None
    if mask_dir:
      mask = os.path.join(mask_dir, os.path.splitext(rel)[0] + ".png")
      mask = mask if os.path.isfile(mask) else None
    items.append(("photo", rel, os.path.join(directory, rel), mask))
  if not items:
    raise prepare.PrepareError(f"{directory}: no images ({', '.join(prepare.IMAGE_EXTENSIONS)})")
  return items


def split(items):
  """{split: items}: a seeded shuffle; the last num_test are test, the num_val before are val."""
  order = np.random.default_rng(FLAGS.seed).permutation(len(items))
  shuffled = [items[i] for i in order]
  num_test = min(FLAGS.num_test, len(items) // 10)
  num_val = min(FLAGS.num_val, len(items) // 10)
  train_end = len(items) - num_test - num_val
  return {"train": shuffled[:train_end], "val": shuffled[train_end:train_end + num_val],
          "test": shuffled[train_end + num_val:]}


def write_split(name, items, pool, coefficients, directory, info):
  from gcn_face import prepare, records  # pylint: disable=g-import-not-at-top
  writer = records.ShardWriter(directory, name, FLAGS.per_shard, info)
  start = writer.resume_position
  if start:
    logging.info("%s: resuming at input %d of %d", name, start, len(items))
  progress = Progress(len(items), f"{name} inputs", done=start)
  pending = []

  def flush():
    if not pending:
      return
    faces = [face for _, _, face in pending]
    for (position, item_name, face), c in zip(pending, coefficients(faces)):
      writer.write(records.encode_example(item_name, face["image"], face["mask"], c,
                                          face["landmarks"], face["landmarks68"]), position)
    pending.clear()

  work = [(p, *items[p]) for p in range(start, len(items))]
  for position, item_name, result in pool.map(prepare.prepare_item, work, chunksize=4):
    if isinstance(result, str):
      flush()  # keep the output in input order
      logging.warning("skipped: %s", result)
      writer.skip(item_name, result, position)
    else:
      pending.append((position, item_name, result))
      if len(pending) == FLAGS.batch_size:
        flush()
    progress.update()
  flush()
  writer.close()
  return writer.entry.get("count", 0)


def coefficient_source():
  """(faces -> [B, 257] numpy, "rnet" / "fit" / "rnet+fit", the face model's spec, the
  manifest's num_vertices entry when the model is loaded)."""
  from deep3dface import face_model, fitting, rnet  # pylint: disable=g-import-not-at-top
  from gcn_face import refinement  # pylint: disable=g-import-not-at-top
  rnet_path = user_path(FLAGS.rnet_path) if FLAGS.rnet_path else ""
  rnet_model = rnet.from_frozen_graph(rnet_path) if os.path.isfile(rnet_path) else None
  if rnet_model is None and FLAGS.rnet_path and not FLAGS.fit:
    logging.info("%s absent: the coefficients are fitted (deep3dface/fitting.py)", rnet_path)
  spec = "checkpoints/BFM/BFM_model_front.mat"
  if FLAGS.face_model:
    spec = FLAGS.face_model
  elif rnet_model is None and not os.path.isfile(user_path(spec)):
    spec = "synthetic"
  fitter, vertices = None, {}
  if FLAGS.fit or rnet_model is None:
    model = load_face_model(spec)
    fitter = fitting.Fitter(face_model.FaceModel(model), refinement.skin_indices(model),
                            fitting.FitConfig(FLAGS.landmark_steps, FLAGS.photo_steps))
    vertices = {"num_vertices": model.num_vertices}
  source = ("rnet+fit" if fitter else "rnet") if rnet_model is not None else "fit"
  logging.info("coefficients: %s on %s", source, spec)

  def coefficients(faces):
    crops = np.stack([face["image"] for face in faces])
    init = None
    if rnet_model is not None:
      init = rnet_model(rnet.to_rnet_input(crops), training=False)[0].numpy()
    if fitter is None:
      return init
    coeff, _ = fitter.fit(crops.astype(np.float32), np.stack([f["landmarks68"] for f in faces]),
                          np.stack([f["mask"] for f in faces]).astype(np.float32), init)
    return coeff

  return coefficients, source, spec, vertices


def max_photo_pixels():
  return int(FLAGS.max_photo_megapixels * 1e6)


def main(argv):
  del argv
  from deep3dface import rnet  # pylint: disable=g-import-not-at-top
  from gcn_face import prepare, records, skin_mask  # pylint: disable=g-import-not-at-top
  require_compiled_ops()
  if FLAGS.landmark_steps < 0 or FLAGS.photo_steps < 0:
    fail("--landmark_steps and --photo_steps must be >= 0")
  if FLAGS.workers < 1 or FLAGS.per_shard < 1 or FLAGS.batch_size < 1:
    fail("--workers, --per_shard and --batch_size must be >= 1")
  try:
    skin_mask.load_segmenter(FLAGS.segmenter)
    items = list_inputs()
  except (prepare.PrepareError, ValueError) as e:
    fail(str(e))
  try:
    coefficients, source, model_spec, vertices = coefficient_source()
  except (rnet.GraphFormatError, ValueError, OSError) as e:
    fail(error_line(e))
  directory = user_path(FLAGS.output_dir)
  info = {"source": "celeba_rgba" if FLAGS.celeba_rgba else "photos",
          "input": FLAGS.celeba_rgba or FLAGS.input_dir, "mask_dir": FLAGS.mask_dir,
          "segmenter": FLAGS.segmenter, "coefficients": source, "model": model_spec,
          "seed": FLAGS.seed, "has_landmarks68": True, "has_albedo": False,
          "program": "scripts/prepare_data.py", **vertices}
  context = multiprocessing.get_context("spawn")  # TensorFlow's threads do not survive fork
  counts = {}
  with concurrent.futures.ProcessPoolExecutor(FLAGS.workers, mp_context=context,
                                              initializer=prepare.init_worker,
                                              initargs=(FLAGS.segmenter,
                                                        max_photo_pixels())) as pool:
    try:
      for name, part in split(items).items():
        if part:
          counts[name] = write_split(name, part, pool, coefficients, directory, info)
    except records.DatasetError as e:
      fail(str(e))
  skipped = len(records.read_manifest(directory)["skipped"])
  logging.info("wrote %s faces to %s; %d inputs skipped (listed in manifest.json)", counts,
               directory, skipped)
  if not sum(counts.values()):
    fail("no input gave a face")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
