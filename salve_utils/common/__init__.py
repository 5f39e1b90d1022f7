"""What every layer may import: files, caches, hashes, devices, progress and result tables.

Imports nothing of ``salve_utils``; needs only the standard library, torch, numpy and pandas.

=============  ===================================================================
``runtime``    atomic writes, checksummed artifacts, the cache folder, hashes, devices, progress
``tables``     result tables on disk: CSV or Parquet, read alike
=============  ===================================================================
"""
