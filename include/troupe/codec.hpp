// The codec seam: how a message type becomes bytes and back, with a stable name carried beside
// the payload. Independent of any transport; the NATS bridge (troupe/nats/) sends every message
// through it. The default format, msgpack, lives in codec_msgpack.hpp, so a program that never
// serialises never includes it.
//
//   struct deposit {                                       // a plain aggregate: no boilerplate
//     static constexpr std::string_view troupe_wire_name = "bank.deposit";   // the stable name
//     long cents;
//   };
//   TROUPE_WIRE_NAME(other_lib::event, "shop.event")      // or name a type you cannot edit
//
// A type's wire name must not change while processes that use it run: it is what a receiver
// matches (never typeid, which differs between compilers). Standard types (integers by width,
// floating point, bool, std::string, vectors, optionals, maps, troupe::unit) are named already.
//
// Versions: a type that changed its fields keeps its name and declares the next version,
//   struct deposit {                                       // was { long cents; }: version 1
//     static constexpr std::string_view troupe_wire_name = "bank.deposit";
//     static constexpr unsigned troupe_wire_version = 2;   // on the wire: "bank.deposit@2"
//     long cents; std::string currency; };
// (or `static constexpr unsigned version = 2;` in a wire_name<T> specialisation). Version 1 is
// the plain name, so what was written before a type had a version reads as version 1. A reader
// turns an older version into its current type with troupe::upcasters (upcast.hpp).
//
// A type picks its codec with `using troupe_codec = my_codec;` or a specialisation of
// troupe::codec_of<T>; the default is troupe::msgpack_codec. A codec is a class with
//   static constexpr std::string_view id;                       // travels beside the payload
//   template <class T> static void encode(const T&, std::string& out);   // appends; may throw
//   template <class T> static troupe::decoded<T> decode(std::string_view bytes);  // never throws
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <exception>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe {

// The reply of a request whose handler returns nothing worth sending (and an empty message).
struct unit {
  friend bool operator==(unit, unit) noexcept = default;
};

// The result of a decode: a value, or the reason there is none. Decoding never throws: bad bytes
// from the network are a value to report (a dead letter with the reason), not a crash.
template <class T>
class decoded {
 public:
  static decoded ok(T value) { return decoded(std::move(value)); }
  static decoded fail(std::string why) {
    decoded d;
    d.error_ = std::move(why);
    return d;
  }
  [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  // The value; only when has_value().
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  // Why decoding failed (empty when it did not).
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  decoded() = default;
  explicit decoded(T value) : value_(std::move(value)) {}
  std::optional<T> value_;
  std::string error_;
};

// Names a type for the wire. Specialise it (or use TROUPE_WIRE_NAME) for a type you cannot edit:
//   template <> struct troupe::wire_name<lib::event> {
//     static constexpr std::string_view value = "lib.event"; };
template <class T>
struct wire_name {};

// The default codec (codec_msgpack.hpp); declared here so that codec_of can name it.
struct msgpack_codec;

// The codec of T: T::troupe_codec if it declares one, else msgpack_codec. Specialise to choose
// another for a type you cannot edit.
template <class T>
struct codec_of {
  using type = msgpack_codec;
};
template <class T>
requires requires {
  typename T::troupe_codec;
}
struct codec_of<T> {
  using type = typename T::troupe_codec;
};
template <class T>
using codec_of_t = typename codec_of<T>::type;

namespace detail {

template <class T>
concept member_wire_name = requires {
  { T::troupe_wire_name } -> std::convertible_to<std::string_view>;
};
template <class T>
concept specialised_wire_name = requires {
  { wire_name<T>::value } -> std::convertible_to<std::string_view>;
};

template <class T>
concept member_wire_version = requires {
  { T::troupe_wire_version } -> std::convertible_to<unsigned>;
};
template <class T>
concept specialised_wire_version = requires {
  { wire_name<T>::version } -> std::convertible_to<unsigned>;
};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};

template <class T>
constexpr bool builtin_wire_name() {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string> ||
                std::is_same_v<T, unit>) {
    return true;
  } else if constexpr (std::is_integral_v<T> || std::is_floating_point_v<T>) {
    return !std::is_same_v<T, char> && !std::is_same_v<T, wchar_t> && sizeof(T) <= 8;
  } else if constexpr (is_vector<T>::value || is_optional<T>::value) {
    return member_wire_name<typename T::value_type> ||
           specialised_wire_name<typename T::value_type> ||
           builtin_wire_name<typename T::value_type>();
  } else if constexpr (is_map<T>::value) {
    using K = typename T::key_type;
    using V = typename T::mapped_type;
    return (member_wire_name<K> || specialised_wire_name<K> || builtin_wire_name<K>()) &&
           (member_wire_name<V> || specialised_wire_name<V> || builtin_wire_name<V>());
  } else {
    return false;
  }
}

// Spelled as a class template so that a failing static_assert prints the type's name.
template <class MessageType>
struct type_has_a_wire_name {
  static constexpr bool value = member_wire_name<MessageType> ||
                                specialised_wire_name<MessageType> ||
                                builtin_wire_name<MessageType>();
};

}  // namespace detail

// T can cross a process boundary: it has a stable wire name.
template <class T>
concept WireNamed = detail::type_has_a_wire_name<std::remove_cvref_t<T>>::value;

// T's wire version: troupe_wire_version (or wire_name<T>::version), else 1.
template <class T>
[[nodiscard]] constexpr unsigned wire_version_of() noexcept {
  using type = std::remove_cvref_t<T>;
  if constexpr (detail::specialised_wire_version<type>) {
    return wire_name<type>::version;
  } else if constexpr (detail::member_wire_version<type>) {
    return type::troupe_wire_version;
  } else {
    return 1;
  }
}

namespace detail {

// Spelled as class templates so that a failing static_assert prints the type's name.
template <class VersionedType>
struct wire_version_is_at_least_1 {
  static constexpr bool value = wire_version_of<VersionedType>() >= 1;
};
template <class NamedType>
struct wire_name_has_no_at_sign {
  static constexpr bool value = [] {
    if constexpr (specialised_wire_name<NamedType>) {
      return std::string_view(wire_name<NamedType>::value).find('@') == std::string_view::npos;
    } else if constexpr (member_wire_name<NamedType>) {
      return std::string_view(NamedType::troupe_wire_name).find('@') == std::string_view::npos;
    } else {
      return true;
    }
  }();
};

}  // namespace detail

// T's wire name without its version: "bank.deposit" for "bank.deposit@2".
template <class T>
[[nodiscard]] constexpr std::string_view wire_base_name_of() noexcept {
  using type = std::remove_cvref_t<T>;
  static_assert(detail::specialised_wire_name<type> || detail::member_wire_name<type>,
                "troupe::wire_base_name_of: only a type named by troupe_wire_name or "
                "TROUPE_WIRE_NAME has a base name and a version");
  if constexpr (detail::specialised_wire_name<type>) {
    return wire_name<type>::value;
  } else {
    return type::troupe_wire_name;
  }
}

// A wire name split into its base name and version: "a.b@3" is {"a.b", 3}, "a.b" is {"a.b", 1};
// a version that is not a number >= 1 is 0.
struct wire_type {
  std::string_view base;
  unsigned version = 1;
};
[[nodiscard]] constexpr wire_type parse_wire_name(std::string_view name) noexcept {
  const auto at = name.rfind('@');
  if (at == std::string_view::npos) return {name, 1};
  const std::string_view digits = name.substr(at + 1);
  unsigned v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9' || v > 100'000'000) return {name.substr(0, at), 0};
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return {name.substr(0, at), digits.empty() ? 0 : v};
}

// T's wire name, e.g. "bank.deposit", "bank.deposit@2" (version 2), "i64", "vector<string>".
// Thread-safe; the view lives as long as the program.
template <class T>
[[nodiscard]] std::string_view wire_name_of() {
  using type = std::remove_cvref_t<T>;
  static_assert(detail::type_has_a_wire_name<type>::value,
                "troupe: this type crosses the wire but has no wire name: give it a member "
                "`static constexpr std::string_view troupe_wire_name = \"app.name\";` or write "
                "TROUPE_WIRE_NAME(type, \"app.name\") at global scope (see codec.hpp)");
  static_assert(detail::wire_name_has_no_at_sign<type>::value,
                "troupe: a wire name may not contain '@' (it separates the version on the wire): "
                "declare `static constexpr unsigned troupe_wire_version = N;` instead");
  static_assert(detail::wire_version_is_at_least_1<type>::value,
                "troupe: troupe_wire_version starts at 1 (1 is the plain name)");
  if constexpr ((detail::specialised_wire_name<type> ||
                 detail::member_wire_name<type>)&&wire_version_of<type>() > 1) {
    static const std::string name =
        std::string(wire_base_name_of<type>()) + "@" + std::to_string(wire_version_of<type>());
    return name;
  } else if constexpr (detail::specialised_wire_name<type>) {
    return wire_name<type>::value;
  } else if constexpr (detail::member_wire_name<type>) {
    return type::troupe_wire_name;
  } else if constexpr (std::is_same_v<type, bool>) {
    return "bool";
  } else if constexpr (std::is_same_v<type, std::string>) {
    return "string";
  } else if constexpr (std::is_same_v<type, unit>) {
    return "unit";
  } else if constexpr (std::is_floating_point_v<type>) {
    return sizeof(type) == 4 ? "f32" : "f64";
  } else if constexpr (std::is_integral_v<type>) {
    // By width and signedness, so `long` on one platform and `long long` on another agree.
    constexpr std::array<std::string_view, 9> s{"", "i8", "i16", "", "i32", "", "", "", "i64"};
    constexpr std::array<std::string_view, 9> u{"", "u8", "u16", "", "u32", "", "", "", "u64"};
    return std::is_signed_v<type> ? s[sizeof(type)] : u[sizeof(type)];
  } else {
    // Composite names are built once (a function-local static: thread-safe initialisation).
    static const std::string name = [] {
      if constexpr (detail::is_vector<type>::value) {
        return "vector<" + std::string(wire_name_of<typename type::value_type>()) + ">";
      } else if constexpr (detail::is_optional<type>::value) {
        return "optional<" + std::string(wire_name_of<typename type::value_type>()) + ">";
      } else {
        return "map<" + std::string(wire_name_of<typename type::key_type>()) + "," +
               std::string(wire_name_of<typename type::mapped_type>()) + ">";
      }
    }();
    return name;
  }
}

// C is a codec for T (see the top of this file).
template <class C, class T>
concept CodecFor = requires(const T& value, std::string& out, std::string_view bytes) {
  { C::id } -> std::convertible_to<std::string_view>;
  C::template encode<T>(value, out);
  { C::template decode<T>(bytes) } -> std::same_as<decoded<T>>;
};

// Encodes `value` with its codec, appending to `out`. Throws what the codec throws.
template <class T>
void encode(const T& value, std::string& out) {
  codec_of_t<T>::template encode<T>(value, out);
}

// Decodes a T from `bytes` with its codec. Bad bytes are a failed decoded<T>, never an
// exception (a codec that throws anyway is caught here); only std::bad_alloc may escape.
template <class T>
[[nodiscard]] decoded<T> decode(std::string_view bytes) {
  try {
    return codec_of_t<T>::template decode<T>(bytes);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    return decoded<T>::fail(std::string("the decoder threw: ") + e.what());
  } catch (...) {
    return decoded<T>::fail("the decoder threw");
  }
}

// The id of T's codec, as it travels beside the payload.
template <class T>
[[nodiscard]] constexpr std::string_view codec_id_of() noexcept {
  return codec_of_t<T>::id;
}

}  // namespace troupe

// Names a type you cannot edit for the wire; use at global scope:
//   TROUPE_WIRE_NAME(lib::event, "lib.event")
#define TROUPE_WIRE_NAME(type, name)                  \
  template <>                                         \
  struct troupe::wire_name<type> {                    \
    static constexpr std::string_view value = (name); \
  };
