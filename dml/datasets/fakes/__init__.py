"""Generated stand-ins for the image benchmarks: trees in each release's exact format,
with seeded class-dependent JPEGs, at any scale. Used by ``scripts/`` (benchmarks, the GPU
check) and the tests; no run imports them."""
