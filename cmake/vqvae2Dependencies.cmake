# Every dependency comes from the distribution (see tools/install-deps.sh).
include(GNUInstallDirs)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(dnnl REQUIRED CONFIG)
find_package(OpenMP REQUIRED)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
include(vqvae2Nifti)
include(vqvae2Stb)
