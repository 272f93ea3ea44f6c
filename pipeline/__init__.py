"""Stage one: datasets, media decoding, encoders and text graphs -> feature caches."""
