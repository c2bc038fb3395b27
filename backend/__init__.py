"""Parameter-space saliency dashboard: engine, model/data specs, artifacts store and HTTP API."""
