// Internal: reflection of plain aggregates for the default codec: how many fields a struct has,
// and a tuple of references to them (structured bindings), up to reflect_max_fields fields.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace troupe::detail {

inline constexpr std::size_t reflect_max_fields = 16;

// Converts to any field type; only named in unevaluated contexts.
struct any_field {
  template <class T>
  operator T() const noexcept;  // NOLINT: implicit by design
};
template <std::size_t>
using any_field_for = any_field;

template <class T, std::size_t... I>
constexpr bool brace_initialisable(std::index_sequence<I...>) noexcept {
  return requires { T{any_field_for<I>{}...}; };
}

// The number of fields of aggregate T: the most initialisers T{...} accepts.
template <class T, std::size_t N = reflect_max_fields>
constexpr std::size_t field_count() noexcept {
  if constexpr (N == 0) {
    return 0;
  } else if constexpr (brace_initialisable<T>(std::make_index_sequence<N>{})) {
    return N;
  } else {
    return field_count<T, N - 1>();
  }
}

// A plain aggregate the codec can reflect: a non-union aggregate class, no more fields than the
// limit (one more than the limit would also be brace-initialisable from the limit's count).
template <class T>
concept reflectable = std::is_aggregate_v<T> && std::is_class_v<T> && !std::is_union_v<T> &&
                      !brace_initialisable<T>(std::make_index_sequence<reflect_max_fields + 1>{});

// The fields of `value` as a tuple of references (const or not, as `value` is).
template <class T>
constexpr auto fields_of(T& value) noexcept {
  constexpr std::size_t n = field_count<std::remove_const_t<T>>();
  // clang-format off
  if constexpr (n == 0) { return std::tie(); }
  else if constexpr (n == 1) { auto& [a] = value; return std::tie(a); }
  else if constexpr (n == 2) { auto& [a, b] = value; return std::tie(a, b); }
  else if constexpr (n == 3) { auto& [a, b, c] = value; return std::tie(a, b, c); }
  else if constexpr (n == 4) { auto& [a, b, c, d] = value; return std::tie(a, b, c, d); }
  else if constexpr (n == 5) { auto& [a, b, c, d, e] = value; return std::tie(a, b, c, d, e); }
  else if constexpr (n == 6) {
    auto& [a, b, c, d, e, f] = value; return std::tie(a, b, c, d, e, f); }
  else if constexpr (n == 7) {
    auto& [a, b, c, d, e, f, g] = value; return std::tie(a, b, c, d, e, f, g); }
  else if constexpr (n == 8) {
    auto& [a, b, c, d, e, f, g, h] = value; return std::tie(a, b, c, d, e, f, g, h); }
  else if constexpr (n == 9) {
    auto& [a, b, c, d, e, f, g, h, i] = value; return std::tie(a, b, c, d, e, f, g, h, i); }
  else if constexpr (n == 10) {
    auto& [a, b, c, d, e, f, g, h, i, j] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j); }
  else if constexpr (n == 11) {
    auto& [a, b, c, d, e, f, g, h, i, j, k] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k); }
  else if constexpr (n == 12) {
    auto& [a, b, c, d, e, f, g, h, i, j, k, l] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k, l); }
  else if constexpr (n == 13) {
    auto& [a, b, c, d, e, f, g, h, i, j, k, l, m] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m); }
  else if constexpr (n == 14) {
    auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o); }
  else if constexpr (n == 15) {
    auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o, p] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p); }
  else {
    static_assert(n == 16);
    auto& [a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q] = value;
    return std::tie(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q); }
  // clang-format on
}

}  // namespace troupe::detail
