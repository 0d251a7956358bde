"""Reconstructs textured 3D faces from photos: coarse 3DMM texture and the GCN-refined one.

  python -m scripts.reconstruct --input=photo.jpg --output_dir=out/reconstruct
  python -m scripts.reconstruct --input=photos/ --fit            # folders, or a .txt list
  bazel run //scripts:reconstruct -- --input=photo.jpg

Per photo (the largest face; every face with --all_faces, in <name>_face1, ...):
dlib landmarks, Deep3D alignment, the 257 coefficients from the R-Net
(checkpoints/FaceReconModel.pb) or, without it or with --fit, by analysis-by-synthesis
through the renderer (deep3dface/fitting.py), the coarse texture, and the GCN texture
when a trained checkpoint folder exists (--gcn_checkpoint, default
checkpoints/bfm09_face_normal), and with --refine_steps the texture refined on the photo
itself (gcn_face/photo_refinement.py). A seeded 20 % of the skin pixels (--holdout_fraction)
never enters a loss; result.json reports each texture's L1 on them. Files per photo in
<output_dir>/<name>/ (gcn_face.reconstruction.write_outputs): crop.png, coeff.npy,
coarse.obj, fine.obj, refined.obj (vertex colours as floats in [0, 1]), mesh.ply, mesh.glb
(glTF 2.0: one mesh per texture), skin_mask.png, holdout_mask.png, render_<texture>.png,
strip.png (labelled photo | textures | overlay), overlay.png (rendered at the photo's
resolution), turntable.gif, viewer.html (opens from file://: orbit, switch textures and the
projected photo), result.json.
A photo whose result.json exists is skipped (a killed run resumes; --overwrite
redoes it); a bad photo is reported and the run goes on; the exit status is 1 only
when no photo succeeded.
"""

import os
import time

from absl import app, flags, logging

from scripts import assets
from scripts.common import (error_line, fail, format_seconds, load_face_model, load_refinement,
                            parse_flags, Progress, quiet_tensorflow, require_compiled_ops,
                            user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A photo, a folder of photos (recursive) or a .txt list.")
flags.DEFINE_string("output_dir", "out/reconstruct", "Output folder (one subfolder per photo).")
flags.DEFINE_string("face_model", None,
                    "'synthetic', 'synthetic_grid', 'synthetic_bfm' or a BFM_model_front.mat "
                    "(default: the GCN "
                    "checkpoint's, else checkpoints/BFM/BFM_model_front.mat, else synthetic).")
flags.DEFINE_string("rnet_path", None,
                    "Deep3D's FaceReconModel.pb (default: checkpoints/FaceReconModel.pb if "
                    "present; empty: none). Without it the coefficients are fitted.")
flags.DEFINE_string("gcn_checkpoint", None,
                    "scripts/train.py checkpoint folder (default: checkpoints/bfm09_face_normal "
                    "if present; empty: none). Without one only the coarse texture is made.")
flags.DEFINE_bool("fit", False, "Fit the coefficients (from the R-Net's, when it is loaded).")
flags.DEFINE_integer("landmark_steps", 150, "Fitting: landmark-only Adam steps.", lower_bound=0)
flags.DEFINE_integer("photo_steps", 100, "Fitting: photometric Adam steps.", lower_bound=0)
flags.DEFINE_integer("refine_steps", 40,
                     "Per-photo refinement: Adam steps fine-tuning the texture on the photo "
                     "(the paper's losses; from the GCN's texture when there is a GCN); 0: none.",
                     lower_bound=0)
flags.DEFINE_float("holdout_fraction", 0.2,
                   "Skin pixels no loss sees (the fit, the GCN's input mask, the refinement); "
                   "their L1 is in result.json. 0: use every pixel.")
flags.DEFINE_integer("holdout_seed", 0, "Seed of the held-out pixels (with the photo's name).")
flags.DEFINE_float("max_photo_megapixels", 40.0,
                   "Photos with more pixels are refused before decoding (memory); 0: no limit.",
                   lower_bound=0.0)
flags.DEFINE_string("segmenter", "landmarks_colour",
                    "Skin mask: landmarks_colour, landmarks, or module:function.")
flags.DEFINE_bool("overwrite", False, "Redo photos that already have a result.json.")
flags.DEFINE_bool("turntable", True, "Write turntable.gif (coarse | most refined, +-60 degrees).")
flags.DEFINE_bool("viewer", True,
                  "Write viewer.html (a 3D viewer; needs three.js: `npm ci` in the project).")
flags.DEFINE_bool("all_faces", False,
                  "Every face of a photo (<name>, <name>_face1, ...); default: the largest.")


def list_inputs(spec):
  """[(name, path)] of a photo, a folder or a .txt list (one path per line)."""
  from gcn_face import prepare  # pylint: disable=g-import-not-at-top
  path = user_path(spec)
  if os.path.isdir(path):
    relative = prepare.list_images(path)
    return [(os.path.splitext(r)[0].replace(os.sep, "_"), os.path.join(path, r))
            for r in relative]
  if path.endswith(".txt"):
    from deep3dface import align  # pylint: disable=g-import-not-at-top
    base = os.path.dirname(path)
    lines = [line.strip() for line in align.read_text_lines(path, "photo lists")
             if not line.startswith("#")]
    paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in lines]
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [(n if names.count(n) == 1 else f"{n}_{i}", p)
            for i, (n, p) in enumerate(zip(names, paths))]
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file or folder")
  return [(os.path.splitext(os.path.basename(path))[0], path)]


def asset_flag(flag, key):
  """The path of an asset flag: its value (empty: none), else the default when present."""
  try:
    return assets.flag_path(flag, getattr(FLAGS, flag), key)
  except ValueError as e:
    fail(str(e))


def build():
  """The Reconstructor of the flags; logs what runs without which asset."""
  from deep3dface import fitting, rnet  # pylint: disable=g-import-not-at-top
  from gcn_face import photo_refinement, reconstruction  # pylint: disable=g-import-not-at-top
  missing = []
  rnet_path, gcn = asset_flag("rnet_path", "rnet"), asset_flag("gcn_checkpoint", "gcn")
  rnet_model = None
  if rnet_path:
    rnet_model = rnet.from_frozen_graph(user_path(rnet_path))
  else:
    missing.append("rnet")
  module = model = None
  if gcn:
    module, model, run_config = load_refinement(user_path(gcn), rnet_model)
    spec = run_config["face_model"]
    if FLAGS.face_model and FLAGS.face_model != spec:
      other = load_face_model(FLAGS.face_model)
      if other.num_vertices != model.num_vertices:
        fail(f"--face_model={FLAGS.face_model} has {other.num_vertices} vertices; the GCN in "
             f"{gcn} was trained on {spec} ({model.num_vertices})")
      model = other
  else:
    missing.append("gcn")
    spec = FLAGS.face_model or (assets.ASSETS["bfm"].path if assets.present("bfm")
                                else "synthetic")
    if spec == "synthetic":
      missing.insert(0, "bfm")
    model = load_face_model(spec)
  if missing:
    logging.info("running without: %s", assets.describe(missing))
  logging.info("face model %s (%d vertices); coefficients by %s; texture %s",
               spec, model.num_vertices,
               "the R-Net" + (" + fitting" if FLAGS.fit else "") if rnet_model else "fitting",
               "coarse + GCN" if module else "coarse only")
  config = fitting.FitConfig(landmark_steps=FLAGS.landmark_steps, photo_steps=FLAGS.photo_steps)
  refine = photo_refinement.RefineConfig(steps=FLAGS.refine_steps)
  return reconstruction.Reconstructor(model, rnet_model, module, FLAGS.fit, config,
                                      FLAGS.segmenter, FLAGS.all_faces, refine,
                                      FLAGS.holdout_fraction, FLAGS.holdout_seed,
                                      max_photo_pixels=int(FLAGS.max_photo_megapixels * 1e6))


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gcn_face import prepare, reconstruction  # pylint: disable=g-import-not-at-top
  if not FLAGS.input:
    fail("--input is required (a photo, a folder or a .txt list)")
  require_compiled_ops()
  if FLAGS.landmark_steps < 0 or FLAGS.photo_steps < 0 or FLAGS.refine_steps < 0:
    fail("--landmark_steps, --photo_steps and --refine_steps must be >= 0")
  if not 0.0 <= FLAGS.holdout_fraction < 1.0:
    fail(f"--holdout_fraction={FLAGS.holdout_fraction}: must be in [0, 1)")
  try:
    items = list_inputs(FLAGS.input)
  except (ValueError, OSError, prepare.PrepareError) as e:
    fail(str(e).splitlines()[0])
  if not items:
    fail(f"{FLAGS.input}: no photos")
  output_dir = user_path(FLAGS.output_dir)
  try:
    rec = build()
  except (ValueError, OSError, tf.errors.OpError) as e:
    fail(error_line(e))
  progress = Progress(len(items), "photos", interval=10.0)
  done, failed, skipped = [], [], 0
  start = time.monotonic()
  for name, path in items:
    directory = os.path.join(output_dir, name)
    if not FLAGS.overwrite and os.path.exists(os.path.join(directory, reconstruction.RESULT_FILE)):
      skipped += 1
      progress.update()
      continue
    try:
      # The photo's own folder (its largest face) last: its result.json marks the photo done.
      for face in reversed(rec.reconstruct_all(path, name)):
        reconstruction.write_outputs(face, os.path.join(output_dir, face.name), rec.triangles,
                                     FLAGS.turntable, FLAGS.viewer)
        l1 = face.l1()
        logging.info("%s: %s (%s coefficients; held-out L1 %s; %.1f s)", face.name,
                     os.path.join(output_dir, face.name), face.source,
                     ", ".join(f"{n} {v['heldout']:.2f}" for n, v in l1.items()),
                     face.seconds["total"])
      done.append(name)
    except (prepare.PrepareError, ValueError, OSError, tf.errors.OpError) as e:
      failed.append(name)
      message = error_line(e)
      logging.error("%s", message if message.startswith(path) else f"{path}: {message}")
    progress.update()
  photos = {name for name, _ in items}
  names = sorted(n for n in os.listdir(output_dir)
                 if n in photos or n.split("_face")[0] in photos) if done or skipped else []
  if done or skipped:
    for line in reconstruction.write_summary(output_dir, names)[-4:]:
      logging.info("%s", line)
  logging.info("%d reconstructed, %d already done, %d failed%s in %s; results in %s", len(done),
               skipped, len(failed), f" ({', '.join(failed)})" if failed else "",
               format_seconds(time.monotonic() - start), output_dir)
  if not done and not skipped:
    fail(f"no photo could be reconstructed ({len(failed)} failed)")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
