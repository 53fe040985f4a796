#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "support/skip.hpp"

// doctest's main, except that a run in which a case skipped (support/skip.hpp) and
// nothing failed exits with kSkipReturnCode, which ctest reports as skipped.
int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  if (rc == 0 && vqvae2::test::any_test_skipped()) return vqvae2::test::kSkipReturnCode;
  return rc;
}
