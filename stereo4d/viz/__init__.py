"""Visualisations drawn with OpenCV/numpy (no per-frame matplotlib figures)."""
