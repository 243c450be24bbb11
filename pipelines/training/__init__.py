"""Training a detector bundle on a catalog (``loop.train``): its configuration, samples, mosaics and losses."""
