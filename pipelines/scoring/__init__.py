"""Scoring: scenes in, georeferenced panel polygons, per-image CSV and probability masks out (``job.score``)."""
