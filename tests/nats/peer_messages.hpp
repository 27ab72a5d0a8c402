// The messages and interfaces shared by the multi-process tests and their peer process
// (nats_peer.cpp): what two separately built programs agree on, by wire name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace peer {

struct entry {
  static constexpr std::string_view troupe_wire_name = "peer.entry";
  int sender = 0;
  long seq = 0;
  long cents = 0;
};
struct audit {
  static constexpr std::string_view troupe_wire_name = "peer.audit";
  int sender = 0;
};
struct report {
  static constexpr std::string_view troupe_wire_name = "peer.report";
  long count = 0;
  long cents = 0;
  bool in_order = true;
};
struct job {
  static constexpr std::string_view troupe_wire_name = "peer.job";
  long id = 0;
};
struct how_many {
  static constexpr std::string_view troupe_wire_name = "peer.how_many";
};

// The ledger's interface, as a client compiles it.
struct ledger_api {
  void on(entry);
  report on(audit);
};
// A queue-group worker's interface.
struct worker_api {
  long on(how_many);
};

}  // namespace peer
