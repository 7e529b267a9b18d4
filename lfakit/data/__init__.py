"""Data: real-format loaders, embedded-default generators, transforms, caches.

* ``image_decode`` -- image files to 8-bit gray or RGB arrays, corrupt files as ``DataError``;
* ``image_cache`` -- the pre-resized uint8 image cache any data set can use (gray or RGB);
* ``chestxray_index`` / ``chestxray_embedded`` / ``chestxray`` -- NIH ChestX-ray14: index and
  splits, the generated stand-in, and the two put together with the CLAHE cache;
* ``cifar`` -- CIFAR-10 / CIFAR-10-LT python batches and the digits default;
* ``ensemble_data`` -- CF-Ensemble probability matrices; ``datasets`` -- torch datasets;
  ``transforms`` -- CLAHE and resizing.
"""
