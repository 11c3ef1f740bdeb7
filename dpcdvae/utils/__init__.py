"""Foundation: exceptions (:mod:`.errors`), atomic file writes and the one JSON sanitiser (:mod:`.fileio`), progress
bars (:mod:`.progress`), the process pools and their start method (:mod:`.pool`) and the process tuning the entry
points apply (:mod:`.alloc`: glibc's allocator, :mod:`.openmp`: how idle OpenMP threads wait). Imports nothing: each
submodule is imported by name."""
