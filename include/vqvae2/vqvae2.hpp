// Umbrella header: the whole library.
#pragma once

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
