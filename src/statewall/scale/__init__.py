"""Scale-out: one capture's replay spread over processes and machines (``statewall replay --workers``).

``shardkey`` decides which shard owns a packet (its inside host); ``replay`` drives the shards on Dask
distributed and merges their outputs. docs/scale.md holds the design.
"""
