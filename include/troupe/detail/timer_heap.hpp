// Internal: the binary min-heap of timers that every clock shares (the Asio timer thread's and
// the simulation's virtual clock). Written once here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::detail {

// A min-heap of pointers to timer nodes ordered by (due_, sequence_): equal deadlines keep the
// order in which they were pushed. Each node records its index (heap_index_), so that removing
// a node anywhere in the heap costs O(log n). Not thread-safe: its owner guards it (a lock, or
// a single thread). `Node` has `due_`, `sequence_` and `heap_index_` members.
template <class Node>
class timer_heap {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  [[nodiscard]] Node* top() const noexcept { return nodes_.front(); }

  // Makes room for one more push, so that push() itself cannot throw.
  // Geometric growth (reserve(size + 1) alone would reallocate on every push).
  void reserve_one() {
    if (nodes_.size() == nodes_.capacity()) [[unlikely]]
      nodes_.reserve(nodes_.size() < 8 ? 8 : 2 * nodes_.size());
  }

  // Adds `n` (its due_ already set) with the next sequence number. May throw bad_alloc unless
  // reserve_one() ran first.
  void push(Node* n) {
    n->sequence_ = next_sequence_++;
    nodes_.push_back(n);
    n->heap_index_ = nodes_.size() - 1;
    sift_up(nodes_.size() - 1);
  }

  // Removes `n`, which must be in this heap; its heap_index_ becomes npos.
  void remove(Node* n) noexcept {
    const std::size_t i = n->heap_index_;
    Node* last = nodes_.back();
    nodes_.pop_back();
    if (i < nodes_.size()) {
      place(i, last);
      sift_down(i);
      sift_up(last->heap_index_);
    }
    n->heap_index_ = npos;
  }

  // Removes and returns the earliest node.
  Node* pop() noexcept {
    Node* n = nodes_.front();
    remove(n);
    return n;
  }

  // Empties the heap, handing back its nodes (in no particular order), each with npos.
  std::vector<Node*> take_all() noexcept {
    std::vector<Node*> all;
    all.swap(nodes_);
    for (Node* n : all) n->heap_index_ = npos;
    return all;
  }

 private:
  static bool earlier(const Node* a, const Node* b) noexcept {
    return a->due_ != b->due_ ? a->due_ < b->due_ : a->sequence_ < b->sequence_;
  }
  void place(std::size_t i, Node* n) noexcept {
    nodes_[i] = n;
    n->heap_index_ = i;
  }
  void sift_up(std::size_t i) noexcept {
    Node* n = nodes_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!earlier(n, nodes_[parent])) break;
      place(i, nodes_[parent]);
      i = parent;
    }
    place(i, n);
  }
  void sift_down(std::size_t i) noexcept {
    Node* n = nodes_[i];
    const std::size_t count = nodes_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= count) break;
      if (child + 1 < count && earlier(nodes_[child + 1], nodes_[child])) ++child;
      if (!earlier(nodes_[child], n)) break;
      place(i, nodes_[child]);
      i = child;
    }
    place(i, n);
  }

  std::vector<Node*> nodes_;
  std::uint64_t next_sequence_ = 0;
};

}  // namespace troupe::detail
