// troupe/io.hpp: awaiting completion-callback I/O in task handlers.
#include <array>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include "support.hpp"

namespace {

// ---- a callback API completed from a thread of its own --------------------------------------

struct fetch {
  std::vector<std::thread>* completers;
  std::latch* release;  // the completion waits for it
  std::latch* done;
};
struct ping {
  std::latch* done;
};

class fetcher {
 public:
  explicit fetcher(std::vector<std::string>* log) : log_(log) {}

  troupe::task<void> on(fetch f) {
    auto op = troupe::async_io<int, std::string>([f](auto completion) {
      f.completers->emplace_back([f, c = std::move(completion)]() mutable {
        f.release->wait();
        c(7, std::string("seven"));
      });
    });
    auto [n, text] = co_await std::move(op);
    log_->push_back(
        "io " + std::to_string(n) + " " + text + " on " +
        (std::this_thread::get_id() == f.completers->back().get_id() ? "completer" : "worker"));
    f.done->count_down();
  }
  void on(ping p) {
    log_->push_back("ping");
    p.done->count_down();
  }

 private:
  std::vector<std::string>* log_;
};

}  // namespace

TEST_CASE("async_io resumes the handler as the actor, with the completion's results", "[io]") {
  std::vector<std::string> log;
  std::vector<std::thread> completers;
  {
    troupe::runtime rt(troupe::runtime_options{.workers = 2});
    auto a = rt.spawn<fetcher>(&log);
    std::latch release(1), done(2);
    a.send(fetch{&completers, &release, &done});
    a.send(ping{&done});  // waits: the actor is busy until the operation completes
    release.count_down();
    done.wait();
    for (auto& t : completers) t.join();
    rt.shutdown();
    test::require_accounted(rt.counters());
  }
  REQUIRE(log == std::vector<std::string>{"io 7 seven on worker", "ping"});
}

namespace {

struct drop_it {
  std::string* outcome;
  std::latch* done;
};
struct throw_at_start {
  std::string* outcome;
  std::latch* done;
};

class careless {
 public:
  troupe::task<void> on(drop_it m) {
    try {
      // Directly in the co_await operand: fine, as the initiation captures nothing with a
      // destructor (the g++ 12 quirk in README).
      co_await troupe::async_io<std::error_code>([](auto completion) {
        static_cast<void>(completion);  // destroyed uncalled
      });
      *m.outcome = "resumed normally";
    } catch (const troupe::error& e) {
      *m.outcome = e.code() == troupe::errc::broken_promise ? "broken promise" : e.what();
    }
    m.done->count_down();
  }
  troupe::task<void> on(throw_at_start m) {
    auto op =
        troupe::async_io<std::error_code>([](auto) { throw std::runtime_error("cannot start"); });
    try {
      co_await std::move(op);
      *m.outcome = "resumed normally";
    } catch (const std::runtime_error& e) {
      *m.outcome = e.what();
    }
    m.done->count_down();
  }
};

}  // namespace

TEST_CASE("async_io: a completion destroyed uncalled or an initiation that throws never hangs",
          "[io]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto a = rt.spawn<careless>();
  std::string dropped, thrown;
  std::latch done(2);
  a.send(drop_it{&dropped, &done});
  a.send(throw_at_start{&thrown, &done});
  done.wait();
  REQUIRE(dropped == "broken promise");
  REQUIRE(thrown == "cannot start");
  rt.shutdown();
  test::require_accounted(rt.counters());
  REQUIRE(rt.counters().failed == 0);
}

namespace {

// ---- real sockets -----------------------------------------------------------------------------

struct serve_one {
  std::latch* accepting;
};

class echo_once {
 public:
  explicit echo_once(asio::ip::tcp::acceptor& acceptor)
      : acceptor_(acceptor), socket_(acceptor.get_executor()) {}

  troupe::task<void> on(serve_one m) {
    auto accept = troupe::async_io<std::error_code>([this, m](auto done) {
      acceptor_.async_accept(socket_, std::move(done));
      m.accepting->count_down();
    });
    auto [ec] = co_await std::move(accept);
    if (ec) throw std::system_error(ec, "accept");
    auto read = troupe::async_io<std::error_code, std::size_t>(
        [this](auto done) { asio::async_read(socket_, asio::buffer(buffer_), std::move(done)); });
    auto [read_ec, n] = co_await std::move(read);
    if (read_ec) throw std::system_error(read_ec, "read");
    for (char& c : buffer_) c = static_cast<char>(c - 'a' + 'A');
    const std::size_t count = n;  // clang 14 cannot capture a structured binding
    auto write = troupe::async_io<std::error_code, std::size_t>([this, count](auto done) {
      asio::async_write(socket_, asio::buffer(buffer_, count), std::move(done));
    });
    auto [write_ec, written] = co_await std::move(write);
    if (write_ec || written != n) throw std::system_error(write_ec, "write");
    socket_.close();
  }

 private:
  asio::ip::tcp::acceptor& acceptor_;
  asio::ip::tcp::socket socket_;
  std::array<char, 5> buffer_{};
};

struct await_accept {
  asio::ip::tcp::acceptor* acceptor;
  asio::ip::tcp::socket* socket;
  std::latch* accepting;
  std::string* outcome;
  std::latch* done;
};

class abandoned {
 public:
  troupe::task<void> on(await_accept m) {
    auto accept = troupe::async_io<std::error_code>([m](auto done) {
      m.acceptor->async_accept(*m.socket, std::move(done));
      m.accepting->count_down();
    });
    try {
      auto [ec] = co_await std::move(accept);
      *m.outcome = "completed: " + ec.message();
    } catch (const troupe::error& e) {
      *m.outcome = e.code() == troupe::errc::broken_promise ? "broken promise" : e.what();
    }
    m.done->count_down();
  }
};

}  // namespace

TEST_CASE("async_io over a real loopback TCP connection, io_thread running the context",
          "[io][asio]") {
  troupe::io_thread io;
  asio::ip::tcp::acceptor acceptor(io.context(),
                                   asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto port = acceptor.local_endpoint().port();

  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto server = rt.spawn<echo_once>(acceptor);
  std::latch accepting(1);
  server.send(serve_one{&accepting});
  accepting.wait();

  asio::io_context client_io;
  asio::ip::tcp::socket client(client_io);
  client.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port));
  asio::write(client, asio::buffer(std::string("hello")));
  std::array<char, 5> reply{};
  asio::read(client, asio::buffer(reply));
  REQUIRE(std::string(reply.data(), reply.size()) == "HELLO");
  std::error_code ec;
  std::array<char, 1> more{};
  client.read_some(asio::buffer(more), ec);  // the server closed its end
  REQUIRE(ec == asio::error::eof);

  rt.shutdown();
  test::require_accounted(rt.counters());
  REQUIRE(rt.counters().failed == 0);
}

TEST_CASE("destroying the io_thread wakes a handler still awaiting I/O with broken_promise",
          "[io][asio]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto io = std::make_unique<troupe::io_thread>();
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(
      io->context(), asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  auto socket = std::make_unique<asio::ip::tcp::socket>(io->context());
  std::latch accepting(1), done(1);
  std::string outcome;
  rt.spawn<abandoned>().send(
      await_accept{acceptor.get(), socket.get(), &accepting, &outcome, &done});
  accepting.wait();
  io->stop();  // the accept stays pending: nothing runs its completion
  socket.reset();
  acceptor.reset();
  io.reset();  // destroys the pending completion uncalled
  done.wait();
  REQUIRE(outcome == "broken promise");
  rt.shutdown();
  test::require_accounted(rt.counters());
}
