// Loading a trained prior for sampling: the weights of a PriorTrainer checkpoint,
// after checking that it is a prior of the wanted level and configuration and that
// it was trained on codes of the VQ-VAE-2 it will be decoded with (its configuration
// fingerprint and weight hash, which the code file recorded at extraction).
#pragma once

#include <cstdint>
#include <string>

#include "vqvae2/data/code_file.hpp"
#include "vqvae2/train/checkpoint.hpp"
#include "vqvae2/train/prior_trainer.hpp"

namespace vqvae2::sample {

template <class Model>
void load_prior_weights(const std::string& path, const std::string& hier, const std::string& vqvae_fingerprint,
                        std::uint64_t vqvae_weight_hash, Model& model) {
  using Config = typename Model::ConfigType;
  const train::Checkpoint c = train::Checkpoint::load(path);
  VQVAE2_CHECK(c.has_meta("kind") && c.get_string("kind") == "pixelsnail", "Checkpoint '", path,
               "' is not a PixelSNAIL prior checkpoint.");
  const auto info = train::PriorTrainer<Config>::read_info(c, path);
  VQVAE2_CHECK(info.hier == hier, "Checkpoint '", path, "' holds a ", info.hier, " prior, but a ", hier,
               " prior is needed here.");
  VQVAE2_CHECK(info.fingerprint == Model::fingerprint(), "Checkpoint '", path, "' holds a prior of configuration '",
               info.fingerprint, "', expected '", Model::fingerprint(), "'.");
  VQVAE2_CHECK(info.code_fingerprint == vqvae_fingerprint && info.code_weight_hash == vqvae_weight_hash, "The ", hier,
               " prior '", path, "' was trained on the codes of another VQ-VAE-2 (", info.code_fingerprint,
               ", weight hash ", data::CodeSet::hex(info.code_weight_hash), ") than the one given (", vqvae_fingerprint,
               ", weight hash ", data::CodeSet::hex(vqvae_weight_hash), ").");
  c.apply_to(model, Model::fingerprint());
}

}  // namespace vqvae2::sample
