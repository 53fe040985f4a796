// Compiled by nvcc in CI so the headers stay nvcc-clean while the CUDA backend grows.
#include "vqvae2/vqvae2.hpp"

__global__ void vqvae2_philox_probe(float* out) { out[threadIdx.x] = vqvae2::philox_normal(1, 0, threadIdx.x); }
