// troupe-bench: troupe's workloads (the files bench/*.cpp) under the shared driver (driver.hpp).
//
//   troupe-bench [--quick] [--repeats N] [--size N] [--workers N] [--json FILE] [--list]
//                [workload|group...]
//
// Exit status: 0 if every selected workload ran and verified its counts, 1 if one failed,
// 2 on a usage error.
#include <vector>

#include "bench.hpp"
#include "driver.hpp"

int main(int argc, char** argv) {
  using namespace troupe_bench;
  std::vector<workload> all;
  add_actor_workloads(all);
  add_ask_workloads(all);
  add_ring_workloads(all);
  add_latency_workloads(all);
  add_restart_workloads(all);
  add_topic_workloads(all);
  add_queue_workloads(all);
  add_keyed_workloads(all);
  add_mailbox_workloads(all);
  add_queue_store_workloads(all);
  add_metrics_workloads(all);
  add_simulation_workloads(all);
  add_scale_workloads(all);
  return driver::run(argc, argv, "troupe-bench", all);
}
