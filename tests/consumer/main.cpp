// Uses the installed headers and dependencies end to end: one Philox draw and
// the library's umbrella header.
#include <cstdio>

#include <vqvae2/vqvae2.hpp>

int main() {
  vqvae2::Context<vqvae2::Cpu> ctx(1);
  vqvae2::Tensor<float> t(vqvae2::nchw(1, 1, 4, 4));
  vqvae2::Generator g(1);
  g.normal(t, 0.0f, 1.0f);
  std::printf("consumer: vqvae2 found, %lld elements, first %f, %d threads\n", static_cast<long long>(t.numel()),
              static_cast<double>(t[0]), ctx.threads());
  return t.numel() == 16 ? 0 : 1;
}
