"""The HTTP backend: FastAPI app (``create_app``), settings, and the single compute worker behind it."""
