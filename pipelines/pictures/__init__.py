"""Pictures of results: contact sheets and scene pictures of scored panels, quicklooks, training curves, the demo."""
