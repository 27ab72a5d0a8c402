// troupe::msgpack_codec: the default codec (see codec.hpp), MessagePack through msgpack-cxx
// (header-only, used without Boost; CMake target troupe::msgpack).
//
// With no per-type code it encodes: bool, integers, floating point, enums (as their underlying
// integer), std::string, std::vector, std::optional, std::map / std::unordered_map, troupe::unit,
// and plain aggregates of those (nested too; up to 16 fields, as a MessagePack array in field
// order). A type with msgpack-cxx's own adaptor (MSGPACK_DEFINE) uses it. Decoding checks every
// type and range, the field count, bounds every size by the input and rejects trailing bytes: bad
// input is a failed troupe::decoded<T>, never a crash.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST  // troupe never needs msgpack's Boost adaptors
#endif

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <troupe/codec.hpp>
#include <troupe/detail/reflect.hpp>

namespace troupe {

namespace detail::mp {

// Bad input while reading; caught by msgpack_codec::decode and turned into its reason.
struct bad_input : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct string_sink {
  std::string* out;
  void write(const char* data, std::size_t size) { out->append(data, size); }
};
using packer = msgpack::packer<string_sink>;

template <class T>
concept msgpack_native = requires(const T& value, packer& p, const msgpack::object& o, T& out) {
  value.msgpack_pack(p);
  out.msgpack_unpack(o);
};

template <class T>
concept encodable = std::is_same_v<T, bool> || std::is_arithmetic_v<T> || std::is_enum_v<T> ||
    std::is_same_v<T, std::string> || std::is_same_v<T, unit> || is_vector<T>::value ||
    is_optional<T>::value || is_map<T>::value || msgpack_native<T> || reflectable<T>;

// Spelled as a class template so that a failing static_assert prints the type's name.
template <class FieldOrMessageType>
struct msgpack_codec_can_encode {
  static constexpr bool value = encodable<FieldOrMessageType>;
};

template <class T>
void write(packer& p, const T& value) {
  static_assert(msgpack_codec_can_encode<T>::value,
                "troupe::msgpack_codec: cannot encode this type: use standard types, plain "
                "aggregates of them (at most 16 fields, no base classes), a msgpack-cxx adaptor "
                "(MSGPACK_DEFINE), or another codec (troupe_codec / troupe::codec_of)");
  if constexpr (std::is_same_v<T, bool>) {
    p.pack(value);
  } else if constexpr (std::is_enum_v<T>) {
    write(p, static_cast<std::underlying_type_t<T>>(value));
  } else if constexpr (std::is_integral_v<T>) {
    if constexpr (std::is_signed_v<T>) {
      p.pack_int64(static_cast<std::int64_t>(value));
    } else {
      p.pack_uint64(static_cast<std::uint64_t>(value));
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if constexpr (sizeof(T) <= 4) {
      p.pack_float(static_cast<float>(value));
    } else {
      p.pack_double(static_cast<double>(value));
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (value.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw std::length_error("troupe::msgpack_codec: string longer than 4 GiB");
    }
    p.pack_str(static_cast<std::uint32_t>(value.size()));
    p.pack_str_body(value.data(), static_cast<std::uint32_t>(value.size()));
  } else if constexpr (std::is_same_v<T, unit>) {
    p.pack_nil();
  } else if constexpr (is_optional<T>::value) {
    if (value) {
      write(p, *value);
    } else {
      p.pack_nil();
    }
  } else if constexpr (is_vector<T>::value) {
    if (value.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw std::length_error("troupe::msgpack_codec: vector longer than 2^32 elements");
    }
    p.pack_array(static_cast<std::uint32_t>(value.size()));
    for (const auto& element : value) write(p, static_cast<const typename T::value_type&>(element));
  } else if constexpr (is_map<T>::value) {
    if (value.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw std::length_error("troupe::msgpack_codec: map larger than 2^32 entries");
    }
    p.pack_map(static_cast<std::uint32_t>(value.size()));
    for (const auto& [k, v] : value) {
      write(p, k);
      write(p, v);
    }
  } else if constexpr (msgpack_native<T>) {
    p.pack(value);
  } else {
    const auto fields = fields_of(value);
    p.pack_array(static_cast<std::uint32_t>(std::tuple_size_v<decltype(fields)>));
    std::apply([&p](const auto&... f) { (write(p, f), ...); }, fields);
  }
}

inline const char* kind_name(msgpack::type::object_type t) noexcept {
  switch (t) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
      return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "string";
    case msgpack::type::BIN:
      return "binary";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "extension";
  }
  return "unknown";
}

[[noreturn]] inline void mismatch(const char* wanted, const msgpack::object& o) {
  throw bad_input(std::string("expected ") + wanted + ", found " + kind_name(o.type));
}

template <class T>
void read(const msgpack::object& o, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (o.type != msgpack::type::BOOLEAN) mismatch("bool", o);
    out = o.via.boolean;
  } else if constexpr (std::is_enum_v<T>) {
    std::underlying_type_t<T> raw{};
    read(o, raw);
    out = static_cast<T>(raw);
  } else if constexpr (std::is_integral_v<T>) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
        throw bad_input("integer " + std::to_string(o.via.u64) + " out of range");
      }
      out = static_cast<T>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      if constexpr (std::is_unsigned_v<T>) {
        throw bad_input("negative integer for an unsigned field");
      } else {
        if (o.via.i64 < static_cast<std::int64_t>(std::numeric_limits<T>::min())) {
          throw bad_input("integer " + std::to_string(o.via.i64) + " out of range");
        }
        out = static_cast<T>(o.via.i64);
      }
    } else {
      mismatch("integer", o);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (o.type == msgpack::type::FLOAT32 || o.type == msgpack::type::FLOAT64) {
      out = static_cast<T>(o.via.f64);
    } else if (o.type == msgpack::type::POSITIVE_INTEGER) {
      out = static_cast<T>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      out = static_cast<T>(o.via.i64);
    } else {
      mismatch("float", o);
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (o.type != msgpack::type::STR) mismatch("string", o);
    out.assign(o.via.str.ptr, o.via.str.size);
  } else if constexpr (std::is_same_v<T, unit>) {
    if (o.type != msgpack::type::NIL) mismatch("nil", o);
  } else if constexpr (is_optional<T>::value) {
    if (o.type == msgpack::type::NIL) {
      out.reset();
    } else {
      typename T::value_type v{};
      read(o, v);
      out = std::move(v);
    }
  } else if constexpr (is_vector<T>::value) {
    if (o.type != msgpack::type::ARRAY) mismatch("array", o);
    out.clear();
    out.reserve(o.via.array.size);  // bounded by the input: unpack_limit
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      typename T::value_type v{};
      read(o.via.array.ptr[i], v);
      out.push_back(std::move(v));
    }
  } else if constexpr (is_map<T>::value) {
    if (o.type != msgpack::type::MAP) mismatch("map", o);
    out.clear();
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
      typename T::key_type k{};
      typename T::mapped_type v{};
      read(o.via.map.ptr[i].key, k);
      read(o.via.map.ptr[i].val, v);
      if (!out.emplace(std::move(k), std::move(v)).second) throw bad_input("duplicate map key");
    }
  } else if constexpr (msgpack_native<T>) {
    o.convert(out);  // msgpack's type_error is caught by decode
  } else {
    auto fields = fields_of(out);
    constexpr std::size_t n = std::tuple_size_v<decltype(fields)>;
    if (o.type != msgpack::type::ARRAY) mismatch("array (a struct's fields)", o);
    if (o.via.array.size != n) {
      throw bad_input("expected " + std::to_string(n) + " fields, found " +
                      std::to_string(o.via.array.size));
    }
    std::size_t i = 0;
    std::apply([&](auto&... f) { (read(o.via.array.ptr[i++], f), ...); }, fields);
  }
}

}  // namespace detail::mp

// MessagePack (see the top of this file). Thread-safe: stateless.
struct msgpack_codec {
  static constexpr std::string_view id = "msgpack";

  // Appends `value`'s encoding to `out`. Throws std::length_error for a string or container
  // beyond MessagePack's 32-bit sizes, std::bad_alloc.
  template <class T>
  static void encode(const T& value, std::string& out) {
    detail::mp::string_sink sink{&out};
    detail::mp::packer p(sink);
    detail::mp::write(p, value);
  }

  // Decodes exactly one T from `bytes`; any malformed, truncated, mistyped or trailing input is
  // a failed decoded<T> with the reason. Never throws but std::bad_alloc.
  template <class T>
  static decoded<T> decode(std::string_view bytes) {
    static_assert(detail::mp::msgpack_codec_can_encode<T>::value,
                  "troupe::msgpack_codec: cannot decode this type (see encode)");
    static_assert(std::is_default_constructible_v<T>,
                  "troupe::msgpack_codec: a decoded type must be default-constructible");
    // Every element, entry or byte claimed must be present: no count can exceed the input's
    // size, so a lying header cannot make the decoder allocate more than the input justifies.
    const std::size_t n = bytes.size();
    const msgpack::unpack_limit limit(n, n, n, n, n, 64);
    try {
      std::size_t offset = 0;
      msgpack::object_handle handle =
          msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
      if (offset != bytes.size()) {
        return decoded<T>::fail("msgpack: " + std::to_string(bytes.size() - offset) +
                                " trailing bytes after the value");
      }
      T value{};
      detail::mp::read(handle.get(), value);
      return decoded<T>::ok(std::move(value));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const msgpack::insufficient_bytes&) {
      return decoded<T>::fail("msgpack: truncated input");
    } catch (const msgpack::depth_size_overflow&) {
      return decoded<T>::fail("msgpack: nested deeper than 64 levels");
    } catch (const msgpack::size_overflow& e) {
      return decoded<T>::fail(std::string("msgpack: a length claims more than the input holds "
                                          "(truncated or forged): ") +
                              e.what());
    } catch (const std::exception& e) {
      return decoded<T>::fail(std::string("msgpack: ") + e.what());
    }
  }
};

}  // namespace troupe
