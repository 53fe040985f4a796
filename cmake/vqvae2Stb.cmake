# stb ships headers (and a Debian libstb with the implementations) but no CMake
# package; wrap it in an imported target so consumers get it through find_dependency.
if(NOT TARGET vqvae2_stb)
  find_path(VQVAE2_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb REQUIRED)
  find_library(VQVAE2_STB_LIBRARY stb REQUIRED)
  add_library(vqvae2_stb UNKNOWN IMPORTED GLOBAL)
  set_target_properties(vqvae2_stb PROPERTIES
    IMPORTED_LOCATION "${VQVAE2_STB_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${VQVAE2_STB_INCLUDE_DIR}")
endif()
