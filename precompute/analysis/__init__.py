"""Analysis artifacts of issue 12: per-filter reference samples, class and confusion fingerprints, maps of the
mistakes, failure modes, the per-sample export table, and the evidence measures for docs/results.md.

Every streaming part (``TopK``, ``Fingerprints``) accepts shards in any order and split and merges across
ranks to exactly the answer of one pass over all rows, so the precompute job can keep it in its shard files.
"""
