"""The store format: the one definition of a tessera store (arrays, grids, shard index, manifest)."""
