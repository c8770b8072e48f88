"""Pure numpy stages: tracks, crop choice, similarity, motion, stitching, calibration, clustering, gap filling.

Nothing here reads a file, a video or a model; every function takes and returns plain data.
"""
