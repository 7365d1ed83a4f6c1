"""Convention metadata (geoemb:, proj:, spatial:, multiscales): build and validate; no I/O, no transcode imports."""
