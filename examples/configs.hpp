// The model configurations the programs know, selected by name or by a
// checkpoint's fingerprint: one list, shared by every program.
#pragma once

#include <string>

#include "vqvae2/core/error.hpp"
#include "vqvae2/models/configs.hpp"

namespace cli {

// Calls f.template operator()<Config>() for the configuration whose name (or, with
// by_fingerprint, whose full fingerprint) equals key.
template <class F>
int with_config(const std::string& key, bool by_fingerprint, F&& f) {
  using namespace vqvae2::models;
  auto matches = [&]<class Config>() {
    return by_fingerprint ? key == config_fingerprint<Config>() : key == Config::name;
  };
  if (matches.template operator()<Oasis256>()) return f.template operator()<Oasis256>();
  if (matches.template operator()<Small>()) return f.template operator()<Small>();
  if (matches.template operator()<Tiny>()) return f.template operator()<Tiny>();
  vqvae2::fail(by_fingerprint ? "the checkpoint's configuration '" : "unknown configuration '", key,
               "' (known: oasis256, small, tiny).");
}

}  // namespace cli

#include "vqvae2/models/pixelsnail_configs.hpp"
#include "vqvae2/train/checkpoint.hpp"

namespace cli {

// The prior configurations come in families, a top and a bottom configuration each:
// reference (the paper's priors), small (minutes on 2 CPU cores), tiny (tests).
// Calls f.template operator()<TopConfig, BottomConfig>() for the family named `family`.
template <class F>
int with_prior_family(const std::string& family, F&& f) {
  using namespace vqvae2::models;
  if (family == "reference") return f.template operator()<TopReference, BottomReference>();
  if (family == "small") return f.template operator()<TopSmall, BottomSmall>();
  if (family == "tiny") return f.template operator()<TopTiny, BottomTiny>();
  vqvae2::fail("unknown prior configuration '", family, "' (known: reference, small, tiny).");
}

// The family of the prior checkpoint at `path`, which must hold a `hier` (top or bottom) prior.
inline std::string prior_family_of(const std::string& path, const std::string& hier) {
  const vqvae2::train::Checkpoint c = vqvae2::train::Checkpoint::load(path);
  VQVAE2_CHECK(c.has_meta("kind") && c.get_string("kind") == "pixelsnail", "Checkpoint '", path,
               "' is not a PixelSNAIL prior checkpoint.");
  VQVAE2_CHECK(c.has_meta("hier") && c.get_string("hier") == hier, "Checkpoint '", path, "' holds a ",
               c.has_meta("hier") ? c.get_string("hier") : std::string("unknown"), " prior, but a ", hier,
               " prior is needed here.");
  for (const char* family : {"reference", "small", "tiny"}) {
    const bool match = with_prior_family(family, [&]<class Top, class Bottom>() {
      using vqvae2::models::pixelsnail_config_fingerprint;
      return static_cast<int>(c.fingerprint() == "pixelsnail/" + pixelsnail_config_fingerprint<Top>() ||
                              c.fingerprint() == "pixelsnail/" + pixelsnail_config_fingerprint<Bottom>());
    });
    if (match) return family;
  }
  vqvae2::fail("Checkpoint '", path, "' holds a prior of an unknown configuration '", c.fingerprint(), "'.");
}

}  // namespace cli
