// Compile-time PixelSNAIL configurations (the priors over the VQ-VAE-2's top and
// bottom codes). Batch size is run-time; everything that shapes parameters, and the
// code-map size the positional background is built for, is a constant here.
//
// Constants: height, width (the code map), n_class (code-book size), channel (the
// residual stream), kernel (causal kernel; the input stem uses kernel rounded up to
// odd), n_block pixel blocks of n_res_block gated residual blocks with res_channel
// channels, attention (and its heads, channel/2 channels in all), dropout,
// conditioned (bottom prior: on the top codes, height/2 x width/2) with a conditioning
// network of n_cond_res_block 3x3 gated blocks of cond_res_channel channels, and
// n_out_res_block 1x1 gated blocks before the head.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

namespace vqvae2::models {

// The reference priors (REFERENCE.md): rosinality's defaults for 256x256 images.
// 84,873,280 parameters.
struct TopReference {
  static constexpr const char* name = "top_reference";
  static constexpr int height = 32, width = 32, n_class = 512;
  static constexpr int channel = 256, kernel = 5, n_block = 4, n_res_block = 4, res_channel = 256;
  static constexpr bool attention = true;
  static constexpr int heads = 8;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = false;
  static constexpr int n_cond_res_block = 0, cond_res_channel = 0;
  static constexpr int n_out_res_block = 0;
};

// 89,762,816 parameters.
struct BottomReference {
  static constexpr const char* name = "bottom_reference";
  static constexpr int height = 64, width = 64, n_class = 512;
  static constexpr int channel = 256, kernel = 5, n_block = 4, n_res_block = 4, res_channel = 256;
  static constexpr bool attention = false;
  static constexpr int heads = 8;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = true;
  static constexpr int n_cond_res_block = 3, cond_res_channel = 256;
  static constexpr int n_out_res_block = 0;
};

// Small priors for CPU runs of a few minutes on 2 cores. The reference's structure
// (kernel 5, attention in every top block, 3x3 conditioning) at a quarter of the
// channels and a quarter of the residual blocks: a convolution's cost scales with
// channel^2, so the top prior's forward is about 1.9 GFLOP per image (about 6 with
// backward) against the reference's 176, i.e. a batch-16 step of roughly 0.1 TFLOP,
// a few hundred steps in a few minutes at oneDNN's speed on 2 cores. Depth stays
// useful: 2 blocks x 2 residual blocks are 8 causal 5x5 convolutions, which reach
// 32 rows up (the whole top map), and attention sees the whole prefix. 4 heads x 8
// channels (channel/2 = 32 in all); 512 classes, as the VQ-VAE-2 code books.
struct TopSmall {
  static constexpr const char* name = "top_small";
  static constexpr int height = 32, width = 32, n_class = 512;
  static constexpr int channel = 64, kernel = 5, n_block = 2, n_res_block = 2, res_channel = 64;
  static constexpr bool attention = true;
  static constexpr int heads = 4;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = false;
  static constexpr int n_cond_res_block = 0, cond_res_channel = 0;
  static constexpr int n_out_res_block = 0;
};

// The bottom map has 4x the positions, so the same width costs 4x per image; the
// conditioning network (2 gated blocks at 32x32) sees a 11x11 neighbourhood of top codes.
struct BottomSmall {
  static constexpr const char* name = "bottom_small";
  static constexpr int height = 64, width = 64, n_class = 512;
  static constexpr int channel = 64, kernel = 5, n_block = 2, n_res_block = 2, res_channel = 64;
  static constexpr bool attention = false;
  static constexpr int heads = 4;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = true;
  static constexpr int n_cond_res_block = 2, cond_res_channel = 64;
  static constexpr int n_out_res_block = 0;
};

// Tiny priors for double-precision gradient checks, causality tests and goldens
// (tests/golden/gen_pixelsnail.py builds the same two). TopTiny also has an output
// residual block so that path is covered.
struct TopTiny {
  static constexpr const char* name = "top_tiny";
  static constexpr int height = 8, width = 8, n_class = 16;
  static constexpr int channel = 8, kernel = 5, n_block = 2, n_res_block = 2, res_channel = 8;
  static constexpr bool attention = true;
  static constexpr int heads = 2;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = false;
  static constexpr int n_cond_res_block = 0, cond_res_channel = 0;
  static constexpr int n_out_res_block = 1;
};

struct BottomTiny {
  static constexpr const char* name = "bottom_tiny";
  static constexpr int height = 8, width = 8, n_class = 16;
  static constexpr int channel = 8, kernel = 5, n_block = 2, n_res_block = 2, res_channel = 8;
  static constexpr bool attention = false;
  static constexpr int heads = 2;
  static constexpr double dropout = 0.1;
  static constexpr bool conditioned = true;
  static constexpr int n_cond_res_block = 1, cond_res_channel = 6;
  static constexpr int n_out_res_block = 0;
};

// Names the configuration and every constant, so that a checkpoint from another
// configuration is recognised even when two configurations share a name.
template <class Config>
std::string pixelsnail_config_fingerprint() {
  std::ostringstream os;
  os << Config::name << "/h" << Config::height << "/w" << Config::width << "/nc" << Config::n_class << "/ch"
     << Config::channel << "/k" << Config::kernel << "/nb" << Config::n_block << "/nr" << Config::n_res_block << "/rc"
     << Config::res_channel << "/att" << (Config::attention ? 1 : 0) << "/hd" << Config::heads << "/do"
     << Config::dropout << "/cond" << (Config::conditioned ? 1 : 0) << "/ncr" << Config::n_cond_res_block << "/crc"
     << Config::cond_res_channel << "/nor" << Config::n_out_res_block;
  return os.str();
}

}  // namespace vqvae2::models
