// One exception type whose message is one sentence naming the operation and the problem.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vqvae2 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace vqvae2

// Checks a condition that user input can break; the message is streamed together.
#define VQVAE2_CHECK(cond, ...)           \
  do {                                    \
    if (!(cond)) ::vqvae2::fail(__VA_ARGS__); \
  } while (0)
