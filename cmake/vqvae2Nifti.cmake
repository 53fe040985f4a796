# Debian's NIFTIConfig.cmake (nifticlib 3.0.1) points at library paths that the
# package does not install, so find the niftiio C library directly.
if(NOT TARGET vqvae2_nifti)
  find_path(VQVAE2_NIFTI_INCLUDE_DIR nifti1_io.h PATH_SUFFIXES nifti REQUIRED)
  find_library(VQVAE2_NIFTIIO_LIBRARY niftiio REQUIRED)
  find_library(VQVAE2_ZNZ_LIBRARY znz REQUIRED)
  add_library(vqvae2_nifti INTERFACE IMPORTED GLOBAL)
  set_target_properties(vqvae2_nifti PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${VQVAE2_NIFTI_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${VQVAE2_NIFTIIO_LIBRARY};${VQVAE2_ZNZ_LIBRARY};ZLIB::ZLIB;m")
endif()
