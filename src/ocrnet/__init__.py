"""ocrnet: mmsegmentation's OCRNet, from training checkpoint to fast, verified deployment."""

__version__ = "0.1.0"
