# Every dependency comes from the distribution (see tools/install-deps.sh).
include(GNUInstallDirs)
include(vqvae2FindDependencies)
if(DEFINED VQVAE2_MISSING_DEPENDENCY)
  message(FATAL_ERROR "${VQVAE2_MISSING_DEPENDENCY}")
endif()
