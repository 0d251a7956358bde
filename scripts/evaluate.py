"""The paper's comparison on a test split: coarse 3DMM texture vs the GCN texture(s).

  python -m scripts.evaluate --data_dir=data/synthetic --checkpoints=checkpoints/bfm09_face_normal
  python -m scripts.evaluate --checkpoints=full,no_gan --labels="GCN,GCN without GAN"

Per face, within the face region (render coverage x skin mask): masked L1 (0-255
levels), PSNR (dB) and SSIM between the input and the lit render, and the identity
cosine between the input and the render composited over it (O') measured by a
recogniser the training did not use (the dlib port when training used FaceNet, and
FaceNet - when its weights exist - when training used dlib). On datasets that store
the true albedo (the synthetic one) also the per-vertex albedo error. One row for the
coarse texture and one per checkpoint: the paper's ablations are checkpoints trained with
--ablation=no_decoder, --ablation=no_refiner, or without --gan.
Writes <output_dir>/results.md, results.csv and examples.png.
"""

import csv
import os

from absl import app, flags, logging
import numpy as np

from scripts.common import (fail, load_refinement, parse_flags, Progress, quiet_tensorflow,
                            require_compiled_ops, user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data/synthetic", "Dataset folder (records.py format).")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_list("checkpoints", ["checkpoints/bfm09_face_normal"],
                  "scripts/train.py checkpoint folders, one table row each.")
flags.DEFINE_list("labels", None, "Row labels for --checkpoints (default: folder names).")
flags.DEFINE_string("rnet_path", None, "FaceReconModel.pb, for checkpoints trained with it.")
flags.DEFINE_enum("identity", "auto", ["auto", "dlib", "facenet"],
                  "Evaluation recogniser (auto: the one training did not use, when available).")
flags.DEFINE_integer("max_faces", 0, "Evaluate at most this many faces (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 4, "Batch size.", lower_bound=1)
flags.DEFINE_integer("examples", 4, "Faces in examples.png (0: no examples.png).", lower_bound=0)
flags.DEFINE_string("output_dir", "out/evaluate", "Where the table, CSV and grid go.")

METRICS = ("l1", "psnr", "ssim", "identity", "albedo_l1")
HEADERS = {"l1": "L1 ↓", "psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "identity": "identity cos ↑",
           "albedo_l1": "albedo L1 ↓"}


def evaluation_encoder(trained_with):
  """The recogniser for the identity column and whether it is independent of training."""
  from gcn_face.identity import encoder  # pylint: disable=g-import-not-at-top
  kind = FLAGS.identity
  if kind == "auto":
    kind = "dlib" if trained_with == "facenet" else "facenet"
  try:
    chosen = encoder.load_encoder(kind, checkpoint_dir=user_path("checkpoints"))
  except encoder.EncoderUnavailable:
    chosen = encoder.load_encoder("dlib")
  independent = chosen.kind != trained_with
  if not independent:
    logging.warning("identity column: %s, the recogniser the GCN was trained with (put FaceNet "
                    "in checkpoints/facenet/ for an independent one)", chosen.kind)
  return chosen, independent


def face_metrics(image, render, region, features_in, features_out):
  from gcn_face import metrics  # pylint: disable=g-import-not-at-top
  return {"l1": metrics.masked_l1(image, render, region),
          "psnr": metrics.masked_psnr(image, render, region),
          "ssim": metrics.masked_ssim(image, render, region),
          "identity": float(metrics.cosine(features_in[None], features_out[None])[0])}


def evaluate_checkpoint(module, data, recogniser, has_albedo, with_coarse):
  """Per-face metric dicts of the GCN (and the coarse texture), and the first
  `--examples` faces' images {"gcn", and with the coarse also "coarse" and "input"}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import losses, refinement  # pylint: disable=g-import-not-at-top
  rows = {"gcn": [], "coarse": []}
  panels = {"gcn": [], "coarse": [], "input": []}
  shown = 0
  for batch in data:
    out = module({k: batch[k] for k in ("image", "mask", "coeff", "landmarks")})
    image = out["image_255"].numpy()
    if with_coarse and shown < FLAGS.examples:
      panels["input"].append(image)
    region = (tf.round(out["render_alpha"]) * out["mask"]).numpy()
    kinds = [("gcn", "render_fine", "fine_albedo")]
    if with_coarse:
      kinds.append(("coarse", "render_coarse", "coarse_albedo"))
    features_in = recogniser.embed(out["image_255"], batch["landmarks"]).numpy()
    for kind, render_key, albedo_key in kinds:
      render = refinement.to_255(tf.clip_by_value(out[render_key], -1.0, 1.0))
      composite = losses.composite(render, out["image_255"], out["render_alpha"] * out["mask"])
      features_out = recogniser.embed(composite, batch["landmarks"]).numpy()
      render = render.numpy()
      for i in range(image.shape[0]):
        row = face_metrics(image[i], render[i], region[i], features_in[i], features_out[i])
        if has_albedo:
          albedo = refinement.to_255(out[albedo_key][i]).numpy()
          row["albedo_l1"] = float(np.mean(np.abs(albedo - batch["albedo"][i].numpy())))
        rows[kind].append(row)
      if shown < FLAGS.examples:
        panels[kind].append(composite.numpy())
    shown += image.shape[0]
  return rows, {k: np.concatenate(v)[:FLAGS.examples] for k, v in panels.items() if v}


def summarise(rows):
  return {m: float(np.nanmean([r[m] for r in rows])) if rows and m in rows[0] else None
          for m in METRICS}


def write_table(output_dir, table, count, independent):
  from gcn_face import atomic_file  # pylint: disable=g-import-not-at-top
  columns = [m for m in METRICS if any(r[m] is not None for _, r in table)]
  lines = ["| texture | " + " | ".join(HEADERS[m] for m in columns) + " |",
           "| --- |" + " --- |" * len(columns)]
  for label, row in table:
    lines.append(f"| {label} | " + " | ".join(f"{row[m]:.4f}" for m in columns) + " |")
  note = ("" if independent else
          "\nThe identity column uses the recogniser the GCN was trained with.\n")
  with atomic_file.atomic_path(os.path.join(output_dir, "results.md")) as tmp, \
      open(tmp, "w") as f:
    f.write(f"Faces: {count}; L1 and PSNR on 0-255 levels within the face region.\n\n")
    f.write("\n".join(lines) + "\n" + note)
  with atomic_file.atomic_path(os.path.join(output_dir, "results.csv")) as tmp, \
      open(tmp, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["texture", *columns])
    for label, row in table:
      writer.writerow([label, *(row[m] for m in columns)])
  return "\n".join(lines)


def write_grid(output_dir, inputs, columns, labels):
  """examples.png: input | coarse | each checkpoint's GCN, one face per row, a label row on
  top."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  from gcn_face import atomic_file, panels  # pylint: disable=g-import-not-at-top
  rows = [np.concatenate([inputs[i]] + [c[i] for c in columns], axis=1)
          for i in range(len(inputs))]
  grid = np.clip(np.round(np.concatenate(rows, axis=0)), 0, 255).astype(np.uint8)
  grid = np.concatenate([panels.label_row(labels, inputs.shape[2]), grid], axis=0)
  with atomic_file.atomic_path(os.path.join(output_dir, "examples.png")) as tmp:
    PIL.Image.fromarray(grid).save(tmp, "PNG")


def main(argv):
  del argv
  from gcn_face import records  # pylint: disable=g-import-not-at-top
  require_compiled_ops()
  labels = FLAGS.labels or [os.path.basename(os.path.normpath(c)) for c in FLAGS.checkpoints]
  if len(labels) != len(FLAGS.checkpoints):
    fail(f"--labels has {len(labels)} names for {len(FLAGS.checkpoints)} --checkpoints")
  data_dir = user_path(FLAGS.data_dir)
  try:
    _, count, manifest = records.split_files(data_dir, FLAGS.split)
  except records.DatasetError as e:
    fail(str(e))
  has_albedo = bool(manifest["info"].get("has_albedo"))
  if FLAGS.max_faces:
    count = min(count, FLAGS.max_faces)
  data = records.dataset(data_dir, FLAGS.split, False, has_albedo).take(count).batch(
      FLAGS.batch_size)
  rnet_model = None
  if FLAGS.rnet_path:
    from deep3dface import rnet  # pylint: disable=g-import-not-at-top
    rnet_model = rnet.from_frozen_graph(user_path(FLAGS.rnet_path))
  output_dir = user_path(FLAGS.output_dir)
  os.makedirs(output_dir, exist_ok=True)
  table, grid_columns, inputs, independent = [], [], None, True
  progress = Progress(len(FLAGS.checkpoints), "checkpoints", interval=0.0)
  for index, (label, checkpoint) in enumerate(zip(labels, FLAGS.checkpoints)):
    try:
      module, _, run_config = load_refinement(user_path(checkpoint), rnet_model)
    except (ValueError, OSError) as e:
      fail(str(e).splitlines()[0])
    recogniser, independent_here = evaluation_encoder(run_config["identity"])
    independent = independent and independent_here
    rows, panels = evaluate_checkpoint(module, data, recogniser, has_albedo, index == 0)
    if index == 0:
      table.append(("coarse 3DMM (PCA)", summarise(rows["coarse"])))
    table.append((f"GCN ({label})", summarise(rows["gcn"])))
    if FLAGS.examples:
      if index == 0:
        grid_columns.append(panels["coarse"])
        inputs = panels["input"].astype(np.float64)
      grid_columns.append(panels["gcn"])
    progress.update()
  text = write_table(output_dir, table, count, independent)
  if FLAGS.examples:
    write_grid(output_dir, inputs, grid_columns, ["photo", "coarse"] + list(labels))
  logging.info("%d faces of %s/%s:\n%s", count, data_dir, FLAGS.split, text)
  logging.info("results in %s (results.md, results.csv, examples.png)", output_dir)


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
