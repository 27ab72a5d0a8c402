// tcp_server: a line-based key-value server on 127.0.0.1 (an ephemeral port). A listener actor
// accepts connections, each connection is an actor of its own, and one shared actor keeps the
// store, so no lock guards it. Socket I/O is awaited with troupe::async_io: the handler
// suspends (its worker runs other actors) and resumes on a worker when the I/O thread reports
// completion. The program then connects real clients, from threads, and checks every reply.
//
// Protocol, one command per line:  SET k v -> OK | GET k -> VALUE v or NOT_FOUND |
// INCR k -> VALUE n | KEYS -> VALUE n | anything else -> ERROR unknown command
#include <cstddef>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include <troupe/troupe.hpp>

using asio::ip::tcp;

// ---- the shared state: one actor, so its map needs no lock ---------------------------------

struct set_value {
  std::string key, value;
};
struct get_value {
  std::string key;
};
struct increment {
  std::string key;
};
struct count_keys {};
struct connected {};
struct store_stats {
  int connections = 0;
  int commands = 0;
  std::size_t keys = 0;
};
struct get_stats {};

class kv_store {
 public:
  void on(connected) { ++stats_.connections; }
  std::string on(const set_value& m) {
    ++stats_.commands;
    data_[m.key] = m.value;
    return "OK";
  }
  std::string on(const get_value& m) {
    ++stats_.commands;
    auto it = data_.find(m.key);
    return it == data_.end() ? "NOT_FOUND" : "VALUE " + it->second;
  }
  std::string on(const increment& m) {
    ++stats_.commands;
    std::string& v = data_[m.key];
    v = std::to_string((v.empty() ? 0 : std::stol(v)) + 1);
    return "VALUE " + v;
  }
  std::string on(count_keys) {
    ++stats_.commands;
    return "VALUE " + std::to_string(data_.size());
  }
  store_stats on(get_stats) const {
    store_stats s = stats_;
    s.keys = data_.size();
    return s;
  }

 private:
  std::map<std::string, std::string> data_;
  store_stats stats_;
};

// ---- one actor per connection ------------------------------------------------------------------

struct read_line {};

class connection {
 public:
  connection(troupe::context& ctx, tcp::socket socket, troupe::ref<kv_store> store)
      : ctx_(ctx), socket_(std::move(socket)), store_(std::move(store)) {}

  void on_start() {
    store_.send(connected{});
    ctx_.self_as<connection>().send(read_line{});
  }

  // One line per message, so the actor stays responsive between commands.
  troupe::task<void> on(read_line) {
    auto read = troupe::async_io<std::error_code, std::size_t>([this](auto done) {
      asio::async_read_until(socket_, asio::dynamic_buffer(input_), '\n', std::move(done));
    });
    auto [read_error, length] = co_await std::move(read);
    if (read_error) {  // eof: the client is done (or the connection broke)
      socket_.close();
      ctx_.stop();
      co_return;
    }
    std::string line = input_.substr(0, length - 1);
    input_.erase(0, length);

    // Each ask is built in a local before co_await (the g++ 12 quirk with string members).
    std::istringstream words(line);
    std::string verb, key, value;
    words >> verb >> key >> value;
    if (verb == "SET" && !key.empty() && !value.empty()) {
      auto reply = store_.ask(set_value{key, value});
      output_ = co_await std::move(reply);
    } else if (verb == "GET" && !key.empty()) {
      auto reply = store_.ask(get_value{key});
      output_ = co_await std::move(reply);
    } else if (verb == "INCR" && !key.empty()) {
      auto reply = store_.ask(increment{key});
      output_ = co_await std::move(reply);
    } else if (verb == "KEYS") {
      auto reply = store_.ask(count_keys{});
      output_ = co_await std::move(reply);
    } else {
      output_ = "ERROR unknown command";
    }
    output_ += '\n';
    auto write = troupe::async_io<std::error_code, std::size_t>(
        [this](auto done) { asio::async_write(socket_, asio::buffer(output_), std::move(done)); });
    auto [write_error, written] = co_await std::move(write);
    static_cast<void>(written);
    if (write_error) {
      socket_.close();
      ctx_.stop();
      co_return;
    }
    ctx_.self_as<connection>().send(read_line{});
  }

 private:
  troupe::context& ctx_;
  tcp::socket socket_;
  troupe::ref<kv_store> store_;
  std::string input_;
  std::string output_;
};

// ---- the listener ----------------------------------------------------------------------------

struct accept_next {};

class listener {
 public:
  listener(troupe::context& ctx, tcp::acceptor& acceptor, troupe::ref<kv_store> store)
      : ctx_(ctx), acceptor_(acceptor), store_(std::move(store)) {}

  troupe::task<void> on(accept_next) {
    auto accept = troupe::async_io<std::error_code, tcp::socket>([this](auto done) {
      // main() closes the acceptor from the I/O thread; starting the accept there too means
      // only that thread ever touches the acceptor.
      asio::post(acceptor_.get_executor(), [this, done = std::move(done)]() mutable {
        acceptor_.async_accept(std::move(done));
      });
    });
    auto [error, socket] = co_await std::move(accept);
    if (error) {  // the acceptor was closed: the server is shutting down
      ctx_.stop();
      co_return;
    }
    ctx_.spawn<connection>(std::move(socket), store_);
    ctx_.self_as<listener>().send(accept_next{});  // a message per accept keeps it stoppable
  }

 private:
  troupe::context& ctx_;
  tcp::acceptor& acceptor_;
  troupe::ref<kv_store> store_;
};

// ---- clients: plain blocking Asio sockets on threads of their own ----------------------------

class client {
 public:
  explicit client(unsigned short port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  }
  std::string call(const std::string& command) {
    asio::write(socket_, asio::buffer(command + "\n"));
    const std::size_t n = asio::read_until(socket_, asio::dynamic_buffer(input_), '\n');
    std::string reply = input_.substr(0, n - 1);
    input_.erase(0, n);
    return reply;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  std::string input_;
};

struct client_result {
  int checked = 0;
  std::vector<std::string> wrong;
  long hits = 0;  // this client's INCR reply: which one it was is up to the scheduler
};

client_result run_client(unsigned short port, int id) {
  client_result r;
  client c(port);
  const std::string key = "user:" + std::to_string(id);
  const std::string name = "name-" + std::to_string(id);
  auto expect = [&](const std::string& command, const std::string& wanted) {
    const std::string got = c.call(command);
    ++r.checked;
    if (got != wanted) r.wrong.push_back(command + " -> " + got + " (wanted " + wanted + ")");
    return got;
  };
  expect("SET " + key + " " + name, "OK");
  expect("GET " + key, "VALUE " + name);
  expect("GET missing", "NOT_FOUND");
  expect("BOGUS", "ERROR unknown command");
  const std::string hits = c.call("INCR hits");
  ++r.checked;
  if (hits.rfind("VALUE ", 0) == 0) {
    r.hits = std::stol(hits.substr(6));
  } else {
    r.wrong.push_back("INCR hits -> " + hits);
  }
  return r;
}

int main() {
  constexpr int clients = 4;
  troupe::io_thread io;  // declared first: outlives the runtime and its sockets
  tcp::acceptor acceptor(io.context(), tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const unsigned short port = acceptor.local_endpoint().port();

  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto store = rt.spawn<kv_store>();
  rt.spawn<listener>(acceptor, store).send(accept_next{});
  std::cout << "listening on 127.0.0.1:" << port << "\n";

  std::vector<client_result> results(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&results, port, i] { results[i] = run_client(port, i + 1); });
  }
  for (auto& t : threads) t.join();

  bool ok = true;
  std::vector<bool> seen(clients + 1, false);
  for (int i = 0; i < clients; ++i) {
    const client_result& r = results[i];
    std::cout << "client " << i + 1 << ": " << r.checked << " replies, "
              << (r.wrong.empty() ? "all as expected" : "WRONG") << "\n";
    for (const auto& w : r.wrong) std::cout << "  " << w << "\n";
    ok = ok && r.wrong.empty();
    if (r.hits >= 1 && r.hits <= clients) seen[r.hits] = true;
  }
  // The store serialised the increments: the clients saw 1..4, each once, in some order.
  bool distinct = true;
  for (int n = 1; n <= clients; ++n) distinct = distinct && seen[n];
  std::cout << "increments seen by the clients: " << (distinct ? "1..4, each once" : "WRONG")
            << "\n";

  std::string hits, keys;
  {
    client last(port);  // closed at the end of the scope: its connection actor then stops
    hits = last.call("GET hits");
    keys = last.call("KEYS");
  }
  std::cout << "final: hits " << hits << ", keys " << keys << "\n";
  ok = ok && distinct && hits == "VALUE 4" && keys == "VALUE 5";

  const store_stats s = store.ask(get_stats{}).get();
  std::cout << "store: " << s.connections << " connections, " << s.commands << " commands, "
            << s.keys << " keys\n";

  // Stop accepting (on the I/O thread, where the accepts run), then shut down.
  asio::post(io.context(), [&acceptor] { acceptor.close(); });
  rt.shutdown();
  const auto c = rt.counters();
  std::cout << "runtime: " << c.spawned << " actors spawned, dead letters " << c.dead_lettered
            << ", failures " << c.failed << "\n";
  std::cout << (ok ? "all replies checked" : "SOME REPLIES WERE WRONG") << "\n";
  return ok ? 0 : 1;
}
