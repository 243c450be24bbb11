"""The work of solarscan, by role: ``scoring`` (scenes to panel polygons), ``pictures``, ``evaluation`` and
``training``, over shared modules at this level (scenes, tiling, normalisation, predictors, runtime, ...).
Imports point training -> {evaluation, pictures} -> scoring -> shared."""
