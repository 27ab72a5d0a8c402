// libFuzzer target of the decode path (include/troupe/codec_msgpack.hpp): any bytes decode to a
// value or to a reason, never a crash, a hang or an unbounded allocation; what decodes encodes
// back to bytes that decode to the same value.
//
// Built with clang (-fsanitize=fuzzer,address,undefined) as decode_fuzz; ctest runs it briefly
// (tests/fuzz/CMakeLists.txt). By hand, longer: build/<dir>/tests/fuzz/decode_fuzz
// -max_total_time=600
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/codec_msgpack.hpp>

namespace {

enum class kind : std::uint8_t { a, b };
struct inner {
  std::string name;
  std::optional<std::int16_t> small;
  bool operator==(const inner&) const = default;
};
struct message {
  std::int64_t id = 0;
  std::uint32_t count = 0;
  double ratio = 0;
  std::string text;
  std::vector<inner> items;
  std::map<std::string, std::vector<std::int8_t>> tags;
  kind k = kind::a;
  bool flag = false;
  bool operator==(const message& o) const {
    // NaN != NaN: compare the bits of the double.
    return id == o.id && count == o.count && std::memcmp(&ratio, &o.ratio, sizeof ratio) == 0 &&
           text == o.text && items == o.items && tags == o.tags && k == o.k && flag == o.flag;
  }
};

template <class T>
void round_trip(std::string_view bytes) {
  auto d = troupe::decode<T>(bytes);
  if (!d) {
    if (d.error().empty()) std::abort();  // a failure always says why
    return;
  }
  std::string again;
  troupe::encode(d.value(), again);
  auto e = troupe::decode<T>(again);
  if (!e || !(e.value() == d.value())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  round_trip<message>(bytes);
  round_trip<std::vector<std::string>>(bytes);
  round_trip<std::int64_t>(bytes);
  return 0;
}
