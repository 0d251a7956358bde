"""Converts the raw Basel Face Model 2009 to Deep3D's front-face model (SPEC 2.4).

  python -m scripts.convert_bfm                       # reads and writes under checkpoints/BFM
  bazel run //scripts:convert_bfm -- --bfm_dir=/data/BFM --output=/data/BFM/BFM_model_front.mat

Needs 01_MorphableModel.mat (BFM09, licensed) and Exp_Pca.bin (Guo et al.) plus
Deep3D's public index files (BFM_front_idx.mat, BFM_exp_idx.mat, std_exp.txt,
facemodel_info.mat); see checkpoints/README.md.
"""

import os
import time

from absl import app, flags, logging

from scripts.common import fail, parse_flags, quiet_tensorflow, user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("bfm_dir", "checkpoints/BFM", "Folder holding the inputs (Deep3D's BFM/).")
flags.DEFINE_string("raw_model", "01_MorphableModel.mat", "BFM09 model, relative to --bfm_dir.")
flags.DEFINE_string("exp_basis", "Exp_Pca.bin", "Expression basis, relative to --bfm_dir.")
flags.DEFINE_string("std_exp", "std_exp.txt", "Expression standard deviations.")
flags.DEFINE_string("exp_idx", "BFM_exp_idx.mat", "trimIndex: expression -> BFM09 vertices.")
flags.DEFINE_string("front_idx", "BFM_front_idx.mat", "idx: front -> expression vertices.")
flags.DEFINE_string("info", "facemodel_info.mat", "Topology and masks of the front face.")
flags.DEFINE_string("select_id", "select_vertex_id.mat",
                    "Optional cross-check (front -> BFM09 vertices); skipped when absent.")
flags.DEFINE_string("output", "checkpoints/BFM/BFM_model_front.mat", "File to write (atomically).")


def main(argv):
  del argv
  from deep3dface import bfm, bfm_convert

  def in_dir(name):
    return user_path(os.path.join(FLAGS.bfm_dir, name))

  select_id = in_dir(FLAGS.select_id) if FLAGS.select_id else None
  if select_id and not os.path.isfile(select_id):
    logging.info("%s not found; skipping the select_id cross-check", select_id)
    select_id = None
  start = time.time()
  try:
    arrays = bfm_convert.convert(in_dir(FLAGS.raw_model), in_dir(FLAGS.exp_basis),
                                 in_dir(FLAGS.std_exp), in_dir(FLAGS.exp_idx),
                                 in_dir(FLAGS.front_idx), in_dir(FLAGS.info), select_id)
  except bfm.ModelFormatError as e:  # ConversionError included
    fail(f"{e} (see checkpoints/README.md)")
  output = user_path(FLAGS.output)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  bfm.save_mat_atomic(output, arrays)
  logging.info("converted in %.1f s", time.time() - start)
  print(f"Wrote {output} ({arrays['meanshape'].shape[1] // 3} vertices, "
        f"{arrays['tri'].shape[0]} triangles)")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
