"""The feature cache: HDF5 shards plus a manifest, the contract between the two stages."""
