// troupe::upcasters<E>: how a reader turns older versions of an event type into the current one
// -- for events that outlive their code (a durable topic read months after it was written).
//
//   struct order_v1 {                                       // what was written last year
//     static constexpr std::string_view troupe_wire_name = "shop.order";       // version 1
//     long id; long cents; };
//   struct order {                                          // the type as it is now
//     static constexpr std::string_view troupe_wire_name = "shop.order";
//     static constexpr unsigned troupe_wire_version = 2;    // "shop.order@2" on the wire
//     long id; long cents; std::string currency; };
//
//   troupe::upcasters<order> up;
//   up.add<order_v1>([](order_v1 o) { return order{o.id, o.cents, "EUR"}; });
//   auto orders = js.retain<order>("orders").with_upcasters(up);   // (troupe/nats/jetstream.hpp)
//
// Each step takes version N-1 to version N (checked at compile time); steps chain, so v1 -> v2 ->
// v3 needs an upcaster per step and the last step returns E itself. What a reader cannot read --
// a newer version, an older one without a step, bytes its codec rejects, a step that throws --
// is a failed read with the reason, which a durable consumer turns into a dead letter with the
// event's sequence (never a crash, never a silent skip).
#pragma once

#include <functional>
#include <map>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <troupe/codec.hpp>
#include <troupe/dead_letter_reason.hpp>
#include <troupe/error.hpp>

namespace troupe {

namespace detail {

// One address per type: tells the types of two versions apart without RTTI.
template <class T>
inline constexpr char upcast_tag = 0;

// Spelled as class templates so that a failing static_assert prints the types.
template <class OlderType, class CurrentType>
struct upcast_from_same_base_name {
  static constexpr bool value = wire_base_name_of<OlderType>() == wire_base_name_of<CurrentType>();
};
template <class OlderType, class NextType>
struct upcast_goes_one_version_up {
  static constexpr bool value = wire_version_of<NextType>() == wire_version_of<OlderType>() + 1;
};
template <class NextType, class CurrentType>
struct upcast_ends_at_the_current_type {
  static constexpr bool value = std::is_same_v<NextType, CurrentType> ||
                                wire_version_of<NextType>() < wire_version_of<CurrentType>();
};

}  // namespace detail

// The upcasters of E, one per older version (see the top of this file). Register them before
// sharing; afterwards read() is const and thread-safe. Copyable.
template <class E>
class upcasters {
 public:
  static_assert(detail::type_has_a_wire_name<E>::value,
                "troupe::upcasters<E>: the event type has no wire name (see codec.hpp)");

  // Registers how version `Old` becomes the next version: `step(Old&&)` returns E, or the type of
  // version N+1 (which needs its own step, up to E). Old and the result must share E's base wire
  // name. Throws error(invalid_argument) if Old's version already has a step.
  template <class Old, class F>
  upcasters& add(F step) {
    using Next = std::remove_cvref_t<std::invoke_result_t<F&, Old&&>>;
    static_assert(detail::upcast_from_same_base_name<Old, E>::value &&
                      detail::upcast_from_same_base_name<Next, E>::value,
                  "troupe::upcasters<E>::add<Old>: Old and what the step returns must have E's "
                  "wire name (troupe_wire_name), differing in troupe_wire_version only");
    static_assert(detail::upcast_goes_one_version_up<Old, Next>::value,
                  "troupe::upcasters<E>::add<Old>: a step takes version N-1 to version N (the "
                  "step returns a type whose troupe_wire_version is Old's + 1)");
    static_assert(detail::upcast_ends_at_the_current_type<Next, E>::value,
                  "troupe::upcasters<E>::add<Old>: the step returning E's version must return E");
    constexpr unsigned from = wire_version_of<Old>();
    if (steps_.count(from) != 0) {
      throw error(errc::invalid_argument, "an upcaster from version " + std::to_string(from) +
                                              " of " + std::string(wire_base_name_of<E>()) +
                                              " is registered already");
    }
    step_fns s;
    s.tag = &detail::upcast_tag<Old>;
    s.from_bytes = [](const upcasters& self, std::string_view codec, std::string_view bytes,
                      dead_letter_reason& why) -> decoded<E> {
      if (codec != codec_id_of<Old>()) {
        why = dead_letter_reason::wrong_codec;
        return decoded<E>::fail("'" + std::string(codec) + "' for " +
                                std::string(wire_name_of<Old>()));
      }
      decoded<Old> d = troupe::decode<Old>(bytes);
      if (!d) {
        why = dead_letter_reason::decode_failed;
        return decoded<E>::fail(std::string(wire_name_of<Old>()) + ": " + d.error());
      }
      return self.lift(wire_version_of<Old>(), &detail::upcast_tag<Old>, &d.value(), why);
    };
    s.from_value = [f = std::move(step)](const upcasters& self, void* old,
                                         dead_letter_reason& why) -> decoded<E> {
      Next next = f(std::move(*static_cast<Old*>(old)));
      if constexpr (std::is_same_v<Next, E>) {
        return decoded<E>::ok(std::move(next));
      } else {
        return self.lift(wire_version_of<Next>(), &detail::upcast_tag<Next>, &next, why);
      }
    };
    steps_.emplace(from, std::move(s));
    return *this;
  }

  // Whether version `v` of E can be read (E's own version, or one with a chain of steps).
  [[nodiscard]] bool reads(unsigned v) const noexcept {
    if (v == wire_version_of<E>()) return true;
    for (; v < wire_version_of<E>(); ++v) {
      if (steps_.count(v) == 0) return false;
    }
    return v == wire_version_of<E>();
  }

  // Reads an E from an event whose wire name is `type` and codec `codec`: E itself, or an older
  // version of it through the steps. On failure `why` says which kind (unknown_type: another
  // type, a newer version or one without a step; wrong_codec; decode_failed: bad bytes or a step
  // that threw) and the result's error() the detail. Never throws but std::bad_alloc.
  [[nodiscard]] decoded<E> read(std::string_view type, std::string_view codec,
                                std::string_view bytes, dead_letter_reason& why) const {
    const std::string_view current = wire_name_of<E>();
    constexpr unsigned now = wire_version_of<E>();
    if (type == current) {
      if (codec != codec_id_of<E>()) {
        why = dead_letter_reason::wrong_codec;
        return decoded<E>::fail("'" + std::string(codec) + "' for " + std::string(type));
      }
      decoded<E> d = troupe::decode<E>(bytes);
      if (!d) why = dead_letter_reason::decode_failed;
      return d;
    }
    why = dead_letter_reason::unknown_type;
    const wire_type t = parse_wire_name(type);
    if constexpr (detail::specialised_wire_name<E> || detail::member_wire_name<E>) {
      if (t.version != 0 && t.base == wire_base_name_of<E>()) {
        if (t.version > now) {
          return decoded<E>::fail("'" + std::string(type) + "' is version " +
                                  std::to_string(t.version) + ", newer than this reader's " +
                                  std::string(current) + " (version " + std::to_string(now) + ")");
        }
        const auto it = steps_.find(t.version);
        if (it == steps_.end()) {
          return decoded<E>::fail(
              "'" + std::string(type) + "' is version " + std::to_string(t.version) + " of " +
              std::string(current) + " (version " + std::to_string(now) +
              ") and no upcaster from version " + std::to_string(t.version) + " is registered");
        }
        try {
          return it->second.from_bytes(*this, codec, bytes, why);
        } catch (const std::bad_alloc&) {
          throw;
        } catch (const std::exception& e) {
          why = dead_letter_reason::decode_failed;
          return decoded<E>::fail("the upcaster of '" + std::string(type) + "' threw: " + e.what());
        } catch (...) {
          why = dead_letter_reason::decode_failed;
          return decoded<E>::fail("the upcaster of '" + std::string(type) + "' threw");
        }
      }
    }
    return decoded<E>::fail("'" + std::string(type) + "' where " + std::string(current) +
                            " is expected");
  }

 private:
  struct step_fns {
    const void* tag = nullptr;  // the type of this version (upcast_tag<Old>)
    decoded<E> (*from_bytes)(const upcasters&, std::string_view codec, std::string_view bytes,
                             dead_letter_reason& why) = nullptr;
    std::function<decoded<E>(const upcasters&, void* old, dead_letter_reason& why)> from_value;
  };

  // Carries a value of version `v` (its type's tag `tag`) on to E.
  decoded<E> lift(unsigned v, const void* tag, void* value, dead_letter_reason& why) const {
    const auto it = steps_.find(v);
    if (it == steps_.end()) {
      why = dead_letter_reason::unknown_type;
      return decoded<E>::fail("no upcaster from version " + std::to_string(v) + " of " +
                              std::string(wire_name_of<E>()) + " is registered");
    }
    if (it->second.tag != tag) {
      why = dead_letter_reason::unknown_type;
      return decoded<E>::fail("the upcaster from version " + std::to_string(v) + " of " +
                              std::string(wire_name_of<E>()) + " takes another type");
    }
    return it->second.from_value(*this, value, why);
  }

  std::map<unsigned, step_fns> steps_;
};

}  // namespace troupe
