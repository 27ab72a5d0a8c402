// Tests of the codec seam (include/troupe/codec.hpp) and its default, msgpack
// (include/troupe/codec_msgpack.hpp): stable wire names, round trips of plain aggregates with no
// per-type code, a user codec, and bad input reported as a value (never a crash).
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <catch2/catch.hpp>

#include <troupe/codec.hpp>
#include <troupe/codec_msgpack.hpp>
#include <troupe/upcast.hpp>

namespace shop {

enum class tier : std::uint8_t { basic, gold };

struct address_line {
  std::string street;
  int number = 0;
};

struct order {
  static constexpr std::string_view troupe_wire_name = "shop.order";
  long id = 0;
  std::string customer;
  std::vector<int> items;
  std::optional<double> discount;
  address_line ship_to;
  std::map<std::string, int> tags;
  tier level = tier::basic;
  bool paid = false;
  std::optional<address_line> bill_to;
  std::vector<std::string> notes;
  std::unordered_map<int, std::string> extra;
  unsigned long long big = 0;
  float ratio = 0;
  std::int8_t small = 0;
  std::vector<std::optional<long>> sparse;
  char16_t symbol = 0;
};

struct ping {
  static constexpr std::string_view troupe_wire_name = "shop.ping";
};

struct legacy {  // a type we pretend we cannot edit
  int value = 0;
};

// A user format: the number as decimal text.
struct decimal_codec {
  static constexpr std::string_view id = "decimal";
  template <class T>
  static void encode(const T& v, std::string& out) {
    out += std::to_string(v.value);
  }
  template <class T>
  static troupe::decoded<T> decode(std::string_view bytes) {
    if (bytes.empty() || bytes.size() > 9) return troupe::decoded<T>::fail("decimal: bad length");
    int n = 0;
    for (char c : bytes) {
      if (c < '0' || c > '9') return troupe::decoded<T>::fail("decimal: not a digit");
      n = n * 10 + (c - '0');
    }
    return troupe::decoded<T>::ok(T{n});
  }
};

struct counted {
  static constexpr std::string_view troupe_wire_name = "shop.counted";
  using troupe_codec = decimal_codec;
  int value = 0;
};

}  // namespace shop

TROUPE_WIRE_NAME(shop::legacy, "shop.legacy")

namespace {

template <class T>
std::string bytes_of(const T& value) {
  std::string out;
  troupe::encode(value, out);
  return out;
}

std::string raw(std::initializer_list<unsigned> bytes) {
  std::string s;
  for (unsigned b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

}  // namespace

TEST_CASE("wire names are stable and declared, not typeid", "[codec]") {
  CHECK(troupe::wire_name_of<shop::order>() == "shop.order");
  CHECK(troupe::wire_name_of<const shop::ping&>() == "shop.ping");
  CHECK(troupe::wire_name_of<shop::legacy>() == "shop.legacy");
  CHECK(troupe::wire_name_of<std::string>() == "string");
  CHECK(troupe::wire_name_of<bool>() == "bool");
  CHECK(troupe::wire_name_of<troupe::unit>() == "unit");
  CHECK(troupe::wire_name_of<double>() == "f64");
  // Integers by width and signedness: long and long long agree wherever they are 64-bit.
  CHECK(troupe::wire_name_of<std::int64_t>() == "i64");
  CHECK(troupe::wire_name_of<long long>() == "i64");
  CHECK(troupe::wire_name_of<std::uint16_t>() == "u16");
  CHECK(troupe::wire_name_of<std::vector<std::optional<long long>>>() == "vector<optional<i64>>");
  CHECK(troupe::wire_name_of<std::map<std::string, shop::order>>() == "map<string,shop.order>");
  STATIC_REQUIRE(troupe::WireNamed<shop::order>);
  STATIC_REQUIRE(!troupe::WireNamed<shop::address_line>);  // a field type needs no name
  STATIC_REQUIRE(!troupe::WireNamed<std::vector<shop::address_line>>);
  CHECK(troupe::codec_id_of<shop::order>() == "msgpack");
  CHECK(troupe::codec_id_of<shop::counted>() == "decimal");
}

TEST_CASE("a plain aggregate round-trips with no per-type code", "[codec][msgpack]") {
  STATIC_REQUIRE(troupe::detail::field_count<shop::order>() == 16);
  shop::order o;
  o.id = -42;
  o.customer = "Ada";
  o.items = {1, 2, 3};
  o.discount = 0.25;
  o.ship_to = {"Main St", 7};
  o.tags = {{"a", 1}, {"b", 2}};
  o.level = shop::tier::gold;
  o.paid = true;
  o.bill_to = shop::address_line{"Side St", 9};
  o.notes = {"", "x"};
  o.extra = {{3, "three"}};
  o.big = std::numeric_limits<unsigned long long>::max();
  o.ratio = 1.5F;
  o.small = -128;
  o.sparse = {std::nullopt, 5L};
  o.symbol = u'Z';
  auto d = troupe::decode<shop::order>(bytes_of(o));
  REQUIRE(d.has_value());
  const shop::order& r = d.value();
  CHECK(r.id == -42);
  CHECK(r.customer == "Ada");
  CHECK(r.items == std::vector<int>{1, 2, 3});
  CHECK(r.discount == 0.25);
  CHECK(r.ship_to.street == "Main St");
  CHECK(r.ship_to.number == 7);
  CHECK(r.tags == o.tags);
  CHECK(r.level == shop::tier::gold);
  CHECK(r.paid);
  REQUIRE(r.bill_to.has_value());
  CHECK(r.bill_to->street == "Side St");
  CHECK(r.notes == o.notes);
  CHECK(r.extra == o.extra);
  CHECK(r.big == o.big);
  CHECK(r.ratio == 1.5F);
  CHECK(r.small == -128);
  CHECK(r.sparse == o.sparse);
  CHECK(r.symbol == u'Z');

  auto empty = troupe::decode<shop::ping>(bytes_of(shop::ping{}));
  CHECK(empty.has_value());
  auto u = troupe::decode<troupe::unit>(bytes_of(troupe::unit{}));
  CHECK(u.has_value());
  auto s = troupe::decode<std::string>(bytes_of(std::string("reply")));
  REQUIRE(s.has_value());
  CHECK(s.value() == "reply");
}

TEST_CASE("a type chooses its own codec", "[codec]") {
  CHECK(bytes_of(shop::counted{1234}) == "1234");
  auto d = troupe::decode<shop::counted>("987");
  REQUIRE(d.has_value());
  CHECK(d.value().value == 987);
  auto bad = troupe::decode<shop::counted>("9x7");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == "decimal: not a digit");
}

TEST_CASE("bad input is a decode failure with a reason, never a crash", "[codec][msgpack]") {
  const std::string good = bytes_of(shop::order{});
  struct row {
    const char* what;
    std::string bytes;
    const char* reason;  // a substring of the error
  };
  const row rows[] = {
      {"empty input", "", "truncated"},
      {"truncated", good.substr(0, good.size() / 2), "truncated"},
      {"trailing bytes", good + raw({0x01}), "trailing"},
      {"garbage", raw({0xc1, 0xc1, 0xc1}), "msgpack"},  // 0xc1 is never used by MessagePack
      {"not an array", bytes_of(std::string("order")), "expected array"},
      {"wrong field count", raw({0x92, 0x01, 0x02}), "expected 16 fields, found 2"},
      // An array header claiming 2^32-1 elements in a 5-byte input: refused by the size bound,
      // not allocated.
      {"lying array length", raw({0xdd, 0xff, 0xff, 0xff, 0xff}), "truncated or forged"},
      {"lying string length", raw({0xdb, 0xff, 0xff, 0xff, 0xff}), "truncated"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto d = troupe::decode<shop::order>(r.bytes);
    REQUIRE_FALSE(d.has_value());
    CHECK_THAT(d.error(), Catch::Contains(r.reason));
  }
  // Wrong types and ranges in fields.
  auto text_for_int = troupe::decode<int>(bytes_of(std::string("1")));
  REQUIRE_FALSE(text_for_int.has_value());
  CHECK_THAT(text_for_int.error(), Catch::Contains("expected integer, found string"));
  auto too_big = troupe::decode<std::int8_t>(bytes_of(300));
  REQUIRE_FALSE(too_big.has_value());
  CHECK_THAT(too_big.error(), Catch::Contains("out of range"));
  auto negative = troupe::decode<unsigned>(bytes_of(-1));
  REQUIRE_FALSE(negative.has_value());
  CHECK_THAT(negative.error(), Catch::Contains("negative"));
  // Nesting deeper than the decoder's bound.
  std::string deep(100, static_cast<char>(0x91));
  deep.push_back(0x01);
  auto too_deep = troupe::decode<std::vector<int>>(deep);
  REQUIRE_FALSE(too_deep.has_value());
  CHECK_THAT(too_deep.error(), Catch::Contains("deeper"));
  // Every prefix of a valid encoding fails cleanly.
  for (std::size_t n = 0; n < good.size(); ++n) {
    CHECK_FALSE(troupe::decode<shop::order>(good.substr(0, n)).has_value());
  }
}

// ---- versions and upcasters (include/troupe/upcast.hpp) --------------------------------------

namespace bank {

struct deposit_v1 {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  long cents = 0;
};
struct deposit_v2 {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  static constexpr unsigned troupe_wire_version = 2;
  long cents = 0;
  std::string currency;
};
struct deposit {  // version 3: the current type
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  static constexpr unsigned troupe_wire_version = 3;
  long cents = 0;
  std::string currency;
  std::string memo;
};

}  // namespace bank

TEST_CASE("a versioned wire name; upcasters chain older versions up to the current type",
          "[codec][versions]") {
  CHECK(troupe::wire_name_of<bank::deposit_v1>() == "bank.deposit");
  CHECK(troupe::wire_name_of<bank::deposit_v2>() == "bank.deposit@2");
  CHECK(troupe::wire_name_of<bank::deposit>() == "bank.deposit@3");
  STATIC_REQUIRE(troupe::wire_version_of<shop::order>() == 1);
  STATIC_REQUIRE(troupe::parse_wire_name("bank.deposit@3").base == "bank.deposit");

  troupe::upcasters<bank::deposit> up;
  up.add<bank::deposit_v1>([](bank::deposit_v1 d) { return bank::deposit_v2{d.cents, "EUR"}; });
  up.add<bank::deposit_v2>([](bank::deposit_v2 d) {
    if (d.cents < 0) throw std::invalid_argument("negative deposit");
    return bank::deposit{d.cents, d.currency, "migrated"};
  });
  CHECK(up.reads(1));
  CHECK(up.reads(3));
  CHECK_FALSE(up.reads(4));

  auto bytes = [](const auto& v) {
    std::string out;
    troupe::encode(v, out);
    return out;
  };
  troupe::dead_letter_reason why{};
  auto v1 = up.read("bank.deposit", "msgpack", bytes(bank::deposit_v1{250}), why);
  REQUIRE(v1.has_value());
  CHECK(v1.value().cents == 250);
  CHECK(v1.value().currency == "EUR");
  CHECK(v1.value().memo == "migrated");
  auto v3 = up.read("bank.deposit@3", "msgpack", bytes(bank::deposit{7, "USD", "x"}), why);
  REQUIRE(v3.has_value());
  CHECK(v3.value().memo == "x");

  auto newer = up.read("bank.deposit@4", "msgpack", "", why);
  CHECK(why == troupe::dead_letter_reason::unknown_type);
  CHECK_THAT(newer.error(), Catch::Contains("newer"));
  auto other = up.read("bank.withdrawal", "msgpack", "", why);
  CHECK(why == troupe::dead_letter_reason::unknown_type);
  CHECK_THAT(other.error(), Catch::Contains("where bank.deposit@3 is expected"));
  auto garbage = up.read("bank.deposit@2", "msgpack", "\xc1", why);
  CHECK(why == troupe::dead_letter_reason::decode_failed);
  auto codec = up.read("bank.deposit@2", "json", bytes(bank::deposit_v2{1, "EUR"}), why);
  CHECK(why == troupe::dead_letter_reason::wrong_codec);
  auto threw = up.read("bank.deposit@2", "msgpack", bytes(bank::deposit_v2{-1, "EUR"}), why);
  CHECK(why == troupe::dead_letter_reason::decode_failed);
  CHECK_THAT(threw.error(), Catch::Contains("negative deposit"));

  troupe::upcasters<bank::deposit> only_v2;
  only_v2.add<bank::deposit_v2>([](bank::deposit_v2 d) { return bank::deposit{d.cents, "", ""}; });
  auto missing = only_v2.read("bank.deposit", "msgpack", bytes(bank::deposit_v1{1}), why);
  CHECK(why == troupe::dead_letter_reason::unknown_type);
  CHECK_THAT(missing.error(), Catch::Contains("no upcaster from version 1"));
  CHECK_THROWS_AS(only_v2.add<bank::deposit_v2>([](bank::deposit_v2) { return bank::deposit{}; }),
                  troupe::error);
}
