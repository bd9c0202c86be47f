"""The one home of every default the command line shows and the Python API uses.

The API's signatures name these constants and the CLI reads them for its options and help, so a
default cannot drift between the two. Nothing heavy is imported here: `ocrnet --help` reads this
module without loading OpenCV, torch or an engine.
"""

from __future__ import annotations

# --- where and how models run -----------------------------------------------------------------
DEVICE = "cpu"
BACKEND = "openvino"
PRECISION = "fp32"
#: NxCxHxW of a static export or build from a checkpoint: one Cityscapes frame.
INPUT_SHAPE = (1, 3, 1024, 2048)
OPSET = 18
#: Graph outputs, in order: `labels` (uint8 argmax) and `logits` (float).
OUTPUTS = ("labels", "logits")
#: What `--outputs` takes: those, or `lowres` alone (the logits before the model's final resize;
#: engines compute the labels from them in bands, mmseg-exact).
OUTPUT_CHOICES = (*OUTPUTS, "lowres")

# --- preprocessing ----------------------------------------------------------------------------
#: mmseg's test `Resize(scale=(2048, 1024), keep_ratio=True)`, WIDTHxHEIGHT; a no-op for
#: Cityscapes frames.
SCALE = (2048, 1024)
#: How predictions return to the label size: bilinear logits then argmax (mmseg-exact), or
#: nearest labels.
RESIZE = "logits"

# --- evaluation and prediction ----------------------------------------------------------------
#: Images and labels whose header claims more pixels are refused before decoding: 100 MP is
#: above any real camera (a Cityscapes frame is 2 MP) and below what exhausts memory.
MAX_PIXELS = 100_000_000
SPLIT = "val"
BATCH_SIZE = 1
PREDICT_FORMAT = "trainids"
OPACITY = 0.5

# --- test modes (ocrnet.work.modes) -------------------------------------------------------------
#: mmseg's test modes: "whole" (the OCRNet Cityscapes config's), "slide" (tiles) or "aug"
#: (multi-scale + flip).
MODES = ("whole", "slide", "aug")
MODE = "whole"
#: slide's tile, HEIGHTxWIDTH, where the model has no static input: the config's training crop.
#: The default stride is two thirds of the crop (mmseg's usual overlap, e.g. crop 512, stride 341).
SLIDE_CROP = (512, 1024)
#: aug's `Resize(scale_factor=r)` ratios: mmseg's Cityscapes `tta_pipeline`.
AUG_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

# --- int8 calibration -------------------------------------------------------------------------
CALIB_SPLIT = "train"
CALIB_COUNT = 32
BIAS_CORRECTION = "fast"

# --- synthetic data ---------------------------------------------------------------------------
SYNTH_TRAIN = 8
SYNTH_VAL = 4
SYNTH_SIZE = (256, 512)  # HEIGHTxWIDTH
SYNTH_SEED = 0
