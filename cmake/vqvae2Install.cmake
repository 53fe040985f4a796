include(CMakePackageConfigHelpers)
install(DIRECTORY include/vqvae2 DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS vqvae2 EXPORT vqvae2Targets)
install(EXPORT vqvae2Targets NAMESPACE vqvae2:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vqvae2)
configure_package_config_file(cmake/vqvae2Config.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/vqvae2Config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vqvae2)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/vqvae2ConfigVersion.cmake COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/vqvae2Config.cmake ${CMAKE_CURRENT_BINARY_DIR}/vqvae2ConfigVersion.cmake
  cmake/vqvae2FindDependencies.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vqvae2)
