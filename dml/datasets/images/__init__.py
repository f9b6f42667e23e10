"""Image files as a dataset: the list of a split's files, lazy decoding, the cheap
load-time check, crop boxes, and the base class of every image source."""
