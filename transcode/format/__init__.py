"""The store format: the one definition of a tessera store, which the writer, the validator and the mirror verifier
all read (docs/format.md describes it for users). The ground layer: it imports no engine, legacy, validate,
mirrors or cli module.

grid        0.1° tiles, UTM zones, footprints, zone grids (10 m pixels)
keys        zone group names, chunk and shard object keys
arrays      the array declarations: dtypes, dimensions, fills, chunking, coordinates
sentinels   what a scale value means (valid, NaN water, +inf no data)
shardindex  the shard index layout: entries, the empty marker, CRC32C, location; encode and decode
attributes  root geoemb: and zone proj:/spatial: attributes; the zone grid read back from them
metadata    the builder of every zarr.json and coordinate chunk
sidecar     the `.tessera/` keys: settings, journal, manifest
manifest    the store manifest: ObjectRecord, its Parquet schema, writing and reading
"""
