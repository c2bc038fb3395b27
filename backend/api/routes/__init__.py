"""One module per resource; ``views`` holds the per-image routes shared by samples and uploads."""
