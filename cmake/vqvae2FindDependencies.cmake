# Finds every dependency of vqvae2 (all from Debian's packages: tools/install-deps.sh).
# Used by the source tree (cmake/vqvae2Dependencies.cmake) and by the installed
# vqvae2Config.cmake. Nothing here fails on its own: a missing dependency sets
# VQVAE2_MISSING_DEPENDENCY to one sentence naming it and the Debian package
# that provides it, and the caller decides how to report it (a fatal error in
# the source tree, vqvae2_FOUND FALSE for find_package(vqvae2)).
unset(VQVAE2_MISSING_DEPENDENCY)

macro(_vqvae2_missing what debian_package)
  if(NOT DEFINED VQVAE2_MISSING_DEPENDENCY)
    set(VQVAE2_MISSING_DEPENDENCY
        "vqvae2 needs ${what}, which was not found: install the Debian package '${debian_package}' (apt-get install ${debian_package}; tools/install-deps.sh in the vqvae2 sources installs every dependency).")
  endif()
endmacro()

macro(_vqvae2_find_package package debian_package)
  if(NOT DEFINED VQVAE2_MISSING_DEPENDENCY)
    find_package(${package} ${ARGN} QUIET)
    if(NOT ${package}_FOUND)
      _vqvae2_missing("${package}" "${debian_package}")
    endif()
  endif()
endmacro()

_vqvae2_find_package(Eigen3 libeigen3-dev 3.4 NO_MODULE)

# Debian's libdnnl-dev is built with the OpenCL GPU runtime: its dnnl-config.cmake
# calls find_package(OpenCL REQUIRED), which would stop configuration with a message
# about OpenCL_LIBRARY that names no package. Look at that config first.
if(NOT DEFINED VQVAE2_MISSING_DEPENDENCY AND NOT TARGET DNNL::dnnl)
  find_file(VQVAE2_DNNL_CONFIG NAMES dnnl-config.cmake dnnlConfig.cmake
            HINTS "${dnnl_DIR}"
            PATH_SUFFIXES "lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/dnnl" lib/cmake/dnnl lib64/cmake/dnnl
            NO_CACHE)
  if(NOT VQVAE2_DNNL_CONFIG)
    # find_file looks under <prefix>/include; search the prefixes themselves as well.
    foreach(prefix IN LISTS CMAKE_PREFIX_PATH CMAKE_SYSTEM_PREFIX_PATH)
      foreach(sub "lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/dnnl" lib/cmake/dnnl lib64/cmake/dnnl)
        if(NOT VQVAE2_DNNL_CONFIG AND EXISTS "${prefix}/${sub}/dnnl-config.cmake")
          set(VQVAE2_DNNL_CONFIG "${prefix}/${sub}/dnnl-config.cmake")
        endif()
      endforeach()
    endforeach()
  endif()
  if(NOT VQVAE2_DNNL_CONFIG)
    _vqvae2_missing("oneDNN (dnnl-config.cmake)" libdnnl-dev)
  else()
    file(STRINGS "${VQVAE2_DNNL_CONFIG}" _vqvae2_dnnl_gpu REGEX "set\\(DNNL_GPU_RUNTIME \"OCL\"\\)")
    if(_vqvae2_dnnl_gpu)
      find_package(OpenCL QUIET)
      if(NOT OpenCL_FOUND)
        _vqvae2_missing("the OpenCL headers and libOpenCL.so (Debian's oneDNN is built with its OpenCL runtime)"
                        ocl-icd-opencl-dev)
      endif()
    endif()
  endif()
endif()
_vqvae2_find_package(dnnl libdnnl-dev CONFIG)
_vqvae2_find_package(OpenMP libomp-dev)
_vqvae2_find_package(Threads libc6-dev)
_vqvae2_find_package(ZLIB zlib1g-dev)

# Debian's NIFTIConfig.cmake (nifticlib 3.0.1) points at library paths that the
# package does not install, so find the niftiio C library directly.
if(NOT DEFINED VQVAE2_MISSING_DEPENDENCY AND NOT TARGET vqvae2_nifti)
  find_path(VQVAE2_NIFTI_INCLUDE_DIR nifti1_io.h PATH_SUFFIXES nifti)
  find_library(VQVAE2_NIFTIIO_LIBRARY niftiio)
  find_library(VQVAE2_ZNZ_LIBRARY znz)
  if(NOT VQVAE2_NIFTI_INCLUDE_DIR OR NOT VQVAE2_NIFTIIO_LIBRARY OR NOT VQVAE2_ZNZ_LIBRARY)
    _vqvae2_missing("nifticlib (nifti1_io.h, libniftiio, libznz)" libnifti2-dev)
  else()
    add_library(vqvae2_nifti INTERFACE IMPORTED GLOBAL)
    set_target_properties(vqvae2_nifti PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${VQVAE2_NIFTI_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${VQVAE2_NIFTIIO_LIBRARY};${VQVAE2_ZNZ_LIBRARY};ZLIB::ZLIB;m")
  endif()
endif()

# stb ships headers (and a Debian libstb with the implementations) but no CMake
# package; wrap it in an imported target so consumers get it through find_package(vqvae2).
if(NOT DEFINED VQVAE2_MISSING_DEPENDENCY AND NOT TARGET vqvae2_stb)
  find_path(VQVAE2_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
  find_library(VQVAE2_STB_LIBRARY stb)
  if(NOT VQVAE2_STB_INCLUDE_DIR OR NOT VQVAE2_STB_LIBRARY)
    _vqvae2_missing("stb (stb_image.h and libstb)" libstb-dev)
  else()
    add_library(vqvae2_stb UNKNOWN IMPORTED GLOBAL)
    set_target_properties(vqvae2_stb PROPERTIES
      IMPORTED_LOCATION "${VQVAE2_STB_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${VQVAE2_STB_INCLUDE_DIR}")
  endif()
endif()
