// Catch2's main for the NATS tests: they need the nats-server that the CTest fixture started
// (its URL in the file named by TROUPE_NATS_URL_FILE). Without one the test says why and exits
// with 77, which CTest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <cstdio>
#include <cstdlib>

#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  const char* url_file = std::getenv("TROUPE_NATS_URL_FILE");
  if (url_file == nullptr || *url_file == '\0') {
    std::fprintf(stderr,
                 "SKIPPED: no nats-server (TROUPE_NATS_URL_FILE unset: nats-server was not found "
                 "when configuring; install Debian's nats-server and reconfigure)\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
