"""The convert engine: plan, shard builder, journal, executors, and the convert/extend runs."""
