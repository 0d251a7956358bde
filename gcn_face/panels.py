"""Labelled image panels: the strips and grids people look at (strip.png, examples.png)."""

import numpy as np
import PIL.Image
import PIL.ImageDraw

LABEL_HEIGHT = 18  # pixels of the label row above the panels


def label_row(labels, width, height=LABEL_HEIGHT):
  """A white strip `[height, width * len(labels), 3]` uint8 with each label centred over its
  column."""
  strip = PIL.Image.new("RGB", (width * len(labels), height), (255, 255, 255))
  draw = PIL.ImageDraw.Draw(strip)
  for i, label in enumerate(labels):
    text = label if draw.textlength(label) <= width - 4 else label[:max(1, (width - 4) // 6)]
    draw.text((i * width + (width - draw.textlength(text)) / 2, 3), text, fill=(0, 0, 0))
  return np.asarray(strip)


def labelled_strip(panels, labels):
  """Panels `[H, W, 3]` (any scale 0-255) side by side under a label row: uint8
  `[LABEL_HEIGHT + H, W * len(panels), 3]`."""
  if len(panels) != len(labels):
    raise ValueError(f"{len(panels)} panels for {len(labels)} labels")
  row = np.clip(np.round(np.concatenate(panels, axis=1)), 0, 255).astype(np.uint8)
  return np.concatenate([label_row(labels, panels[0].shape[1]), row], axis=0)
