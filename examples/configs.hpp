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
