// The message shared by the JetStream tests and their peer process (jetstream_peer.cpp).
#pragma once

#include <string_view>

namespace durable {

struct order {
  static constexpr std::string_view troupe_wire_name = "durable.order";
  long id = 0;
};

}  // namespace durable
