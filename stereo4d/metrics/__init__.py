"""Accuracy metrics against ground truth, one module per stage (stereo, tapvid, segmentation, tracks3d)."""
