// Compile-time VQ-VAE-2 configurations. Image size and batch are run-time;
// everything that shapes parameters is a constant here, so an architecture is a type.
#pragma once

#include <cstdint>
#include <string>

namespace vqvae2::models {

// The reference architecture (REFERENCE.md): 1.38 M parameters at 1 input channel.
struct Oasis256 {
  static constexpr const char* name = "oasis256";
  static constexpr int in_channels = 1;
  static constexpr int channels = 128;
  static constexpr int res_blocks = 2;
  static constexpr int res_channels = 32;
  static constexpr int embed_dim = 64;
  static constexpr int num_codes = 512;
};

// Half the channels: about 4x fewer FLOPs, for fast CPU runs and the README's demo.
struct Small {
  static constexpr const char* name = "small";
  static constexpr int in_channels = 1;
  static constexpr int channels = 64;
  static constexpr int res_blocks = 2;
  static constexpr int res_channels = 32;
  static constexpr int embed_dim = 64;
  static constexpr int num_codes = 512;
};

// Tiny: for whole-model gradient checks in double and smoke tests.
struct Tiny {
  static constexpr const char* name = "tiny";
  static constexpr int in_channels = 1;
  static constexpr int channels = 8;
  static constexpr int res_blocks = 1;
  static constexpr int res_channels = 4;
  static constexpr int embed_dim = 4;
  static constexpr int num_codes = 16;
};

// Names the configuration and every constant, so a checkpoint from another
// configuration is recognised even when two configurations share a name.
template <class Config>
std::string config_fingerprint() {
  return std::string(Config::name) + "/in" + std::to_string(Config::in_channels) + "/ch" +
         std::to_string(Config::channels) + "/rb" + std::to_string(Config::res_blocks) + "/rc" +
         std::to_string(Config::res_channels) + "/ed" + std::to_string(Config::embed_dim) + "/nc" +
         std::to_string(Config::num_codes);
}

}  // namespace vqvae2::models
