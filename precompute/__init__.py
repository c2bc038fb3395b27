"""The precompute job: sharded, resumable, torchrun-aware; writes an artifacts dir (see ``precompute.job``)."""
