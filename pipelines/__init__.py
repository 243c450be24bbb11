"""The work of solarscan: tiling, normalisation, inference, blending, vectorising, export, training, evaluation."""
