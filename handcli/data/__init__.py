"""Dataset readers (one per dataset), the HDF5 cache, and ray batches."""
