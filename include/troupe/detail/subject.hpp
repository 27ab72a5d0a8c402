// Internal: topic subjects and patterns: their syntax, their limits, and splitting them into
// tokens; and the iterative teardown the tokens' tries need.
#pragma once

#include <cstddef>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/error.hpp>

namespace troupe::detail {

// The longest subject or pattern, in bytes, and the most tokens one may have. NATS has no hard
// limit but bounds a subject by its 4 KiB protocol line (max_control_line) and recommends at
// most 16 tokens and 256 characters; these bounds are far above any sensible subject, keep one
// within that line, and bound the work (and memory) one publish or subscribe can cost.
inline constexpr std::size_t max_subject_bytes = 1024;
inline constexpr std::size_t max_subject_tokens = 128;

// The limits a topic registry enforces; a registry built with `unlimited()` (tests only) checks
// the syntax alone.
struct subject_limits {
  std::size_t bytes = max_subject_bytes;
  std::size_t tokens = max_subject_tokens;
  [[nodiscard]] static constexpr subject_limits unlimited() noexcept {
    return {std::numeric_limits<std::size_t>::max(), std::numeric_limits<std::size_t>::max()};
  }
};

// `subject` as an error message shows it: at most 64 bytes, control bytes as \xNN.
inline std::string quote_subject(std::string_view subject) {
  constexpr std::size_t shown = 64;
  std::string out = "'";
  for (std::size_t i = 0; i < subject.size() && i < shown; ++i) {
    const auto byte = static_cast<unsigned char>(subject[i]);
    if (byte < 0x20 || byte == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned>(byte));
      out += hex;
    } else {
      out += static_cast<char>(byte);
    }
  }
  out += subject.size() > shown ? "'... (" + std::to_string(subject.size()) + " bytes)" : "'";
  return out;
}

// Splits a subject ("orders.eu.created") or, with `pattern`, a subscription pattern that may use
// `*` (exactly one token) and `>` (one or more trailing tokens, last only) into its tokens.
// Throws error(invalid_subject) for an empty subject or token, whitespace or a control byte
// (below 0x20, or 0x7F), a misplaced wildcard, or a subject beyond `limits`.
inline std::vector<std::string_view> split_subject(std::string_view subject, bool pattern,
                                                   const subject_limits& limits = {}) {
  auto invalid = [&](const std::string& why) {
    throw error(errc::invalid_subject, quote_subject(subject) + ": " + why);
  };
  if (subject.empty()) invalid("empty subject");
  if (subject.size() > limits.bytes) {
    invalid(std::to_string(subject.size()) + " bytes, more than the limit of " +
            std::to_string(limits.bytes) + " bytes (troupe::max_subject_bytes)");
  }
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = subject.find('.', start);
    const std::string_view token =
        subject.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (token.empty()) invalid("empty token");
    for (char ch : token) {
      const auto byte = static_cast<unsigned char>(ch);
      if (byte == ' ') invalid("whitespace in a token");
      if (byte < 0x20 || byte == 0x7f) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(byte));
        invalid(std::string("a control character (byte ") + hex + ") in a token");
      }
    }
    const bool wildcard = token == "*" || token == ">";
    if (!wildcard &&
        (token.find('*') != std::string_view::npos || token.find('>') != std::string_view::npos)) {
      invalid("a wildcard must be a whole token");
    }
    if (wildcard && !pattern) invalid("wildcards are for subscriptions, not for publishing");
    if (tokens.size() == limits.tokens) {
      invalid("more than the limit of " + std::to_string(limits.tokens) +
              " tokens (troupe::max_subject_tokens)");
    }
    tokens.push_back(token);
    if (dot == std::string_view::npos) break;
    if (token == ">") invalid("'>' must be the last token");
    start = dot + 1;
  }
  return tokens;
}

// Destroys the nodes below `top` without recursion: a subject of many tokens makes a trie as
// deep, and a recursive destructor would use one stack frame per level. Node::take_children
// moves a node's children out into the vector.
template <class Node>
void dismantle_below(Node& top) noexcept {
  std::vector<std::unique_ptr<Node>> pending;
  top.take_children(pending);
  while (!pending.empty()) {
    std::unique_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n->take_children(pending);
  }  // each node is destroyed here with no children left
}

}  // namespace troupe::detail
