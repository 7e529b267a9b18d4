"""Data: real-format loaders, embedded-default generators, transforms, caches."""
