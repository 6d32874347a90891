// A CPU allocator for large tensors: each block of at least `min_bytes` is its own anonymous
// mapping, and a freed block is kept for the next request of the same size instead of being
// unmapped. Smaller requests go to the allocator that was in place before (glibc malloc).
//
// Why. Training a block-recomputing model allocates and frees the same few large sizes in every
// block (activations of (B, E, L), (B, L, D), ...), while long-lived tensors (the residual stream
// kept for backward, parameter gradients) are allocated between them. glibc serves blocks below
// its mmap threshold (which climbs to 32 MiB after the first large frees) from one heap that only
// shrinks from its top, so the freed space stays charged to the process, split into holes: the
// heap of a 64-frame VideoMamba-Ti step grew to several times the live tensors. A low fixed mmap
// threshold (VIDEOMAMBA_MALLOC_TUNE) frees every block back to the system, but then every large
// tensor is mapped and faulted in again, which costs time. Here a block is mapped once and
// reused: no fragmentation, few page faults.
//
// Footprint rule: mapped bytes (in use + cached) stay under 1 + `slack` times the most bytes ever
// in use at once. A request that cannot reuse a cached block first unmaps the least recently
// freed cached blocks until the new mapping fits under that mark. So a workload that repeats its
// sizes (every training step, every inference pass) reuses its blocks, and one whose sizes change
// does not keep the old ones on top of the new. The slack lets a few blocks of the sizes one
// phase uses wait through another (a training step's forward and backward use different sets;
// without it a 64-frame VideoMamba-Ti step unmapped and faulted in again a large share of its
// blocks every step). The training rows of benchmarks/RESULTS.md give the resulting memory.
//
// A cached block serves a request of at most its size and at least 7/8 of it (sizes are rounded
// up to pages). Thread-safe (one mutex; requests this large are rare next to the work on them).

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/csrc/utils/pybind.h>

#include <sys/mman.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>

namespace {

struct Stats {
  int64_t hits = 0, misses = 0, unmapped = 0;
  size_t in_use = 0, cached = 0, peak_in_use = 0, peak_mapped = 0;
};

struct Block {
  void* p;
  size_t size;
};

class BlockCache final : public c10::Allocator {
 public:
  BlockCache(c10::Allocator* fallback, size_t min_bytes, double slack)
      : fallback_(fallback), fallback_raw_(fallback->raw_deleter()), min_bytes_(min_bytes), slack_(slack) {}

  c10::DataPtr allocate(size_t n) override {
    if (n < min_bytes_) {
      // small blocks: the previous allocator's memory under this allocator's deleter, so that
      // raw_deleter() holds for every block (oneDNN frees its scratch through it)
      if (n == 0 || fallback_raw_ == nullptr) return fallback_->allocate(n);
      void* p = fallback_->raw_allocate(n);
      return {p, p, &BlockCache::free_any, c10::Device(c10::DeviceType::CPU)};
    }
    size_t size = round_up(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> g(mu_);
      const Block hit = take_cached(size);
      p = hit.p;
      if (p == nullptr) {
        // the footprint rule: make room under the high-water mark of bytes in use
        const size_t peak = std::max(st_.peak_in_use, st_.in_use + size);
        const size_t mark = peak + static_cast<size_t>(slack_ * static_cast<double>(peak));
        while (!lru_.empty() && st_.in_use + st_.cached + size > mark) evict_oldest();
        p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
          release_all();  // retry once without any cached block
          p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        TORCH_CHECK_WITH(OutOfMemoryError, p != MAP_FAILED, "videomamba CPU allocator: could not map ",
                         size, " bytes (", st_.in_use, " bytes in use)");
        ++st_.misses;
      } else {
        size = hit.size;
        ++st_.hits;
      }
      sizes_[p] = size;
      st_.in_use += size;
      st_.peak_in_use = std::max(st_.peak_in_use, st_.in_use);
      st_.peak_mapped = std::max(st_.peak_mapped, st_.in_use + st_.cached);
      report(p, static_cast<int64_t>(size));
    }
    return {p, p, &BlockCache::free_any, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return fallback_raw_ ? &BlockCache::free_any : nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // the deleter of every block this allocator hands out: a mapped block goes to the cache, any
  // other back to the previous allocator
  static void free_any(void* p) {
    BlockCache* self = instance();
    std::unique_lock<std::mutex> g(self->mu_);
    auto it = self->sizes_.find(p);
    if (it == self->sizes_.end()) {
      g.unlock();
      self->fallback_raw_(p);
      return;
    }
    const size_t size = it->second;
    self->sizes_.erase(it);
    self->st_.in_use -= size;
    self->report(p, -static_cast<int64_t>(size));
    self->lru_.push_back({p, size});
    self->st_.cached += size;
  }

  Stats stats() {
    std::lock_guard<std::mutex> g(mu_);
    return st_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> g(mu_);
    release_all();
  }

  void reset_peaks() {
    std::lock_guard<std::mutex> g(mu_);
    st_.peak_in_use = st_.in_use;
    st_.peak_mapped = st_.in_use + st_.cached;
  }

  static BlockCache*& instance() {
    static BlockCache* inst = nullptr;
    return inst;
  }

  // after fork() the child has one thread: a mutex another thread held stays locked in it
  static void after_fork_in_child() { new (&instance()->mu_) std::mutex(); }

 private:
  static size_t page() {
    static const size_t p = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return p;
  }
  static size_t round_up(size_t n) { return (n + page() - 1) / page() * page(); }

  // the most recently freed block that fits, exact sizes first; {nullptr, 0} if none. A larger
  // block is handed out whole (its mapping is unmapped or reused whole).
  Block take_cached(size_t size) {
    auto best = lru_.end();
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
      if (it->size == size) {
        best = std::prev(it.base());
        break;
      }
      if (it->size > size && it->size - size <= it->size / 8 &&
          (best == lru_.end() || it->size < best->size))
        best = std::prev(it.base());
    }
    if (best == lru_.end()) return {nullptr, 0};
    const Block b = *best;
    lru_.erase(best);
    st_.cached -= b.size;
    return b;
  }

  void evict_oldest() {
    Block b = lru_.front();
    lru_.pop_front();
    ::munmap(b.p, b.size);
    st_.cached -= b.size;
    ++st_.unmapped;
  }

  void release_all() {
    while (!lru_.empty()) evict_oldest();
  }

  void report(void* p, int64_t delta) {
    if (c10::memoryProfilingEnabled())
      c10::reportMemoryUsageToProfiler(p, delta, st_.in_use, st_.in_use + st_.cached,
                                       c10::Device(c10::DeviceType::CPU));
  }

  c10::Allocator* fallback_;
  c10::DeleterFnPtr fallback_raw_;
  size_t min_bytes_;
  double slack_;
  std::mutex mu_;
  std::unordered_map<void*, size_t> sizes_;
  std::list<Block> lru_;  // front: freed longest ago
  Stats st_;
};

}  // namespace

void register_allocator(pybind11::module& m) {
  m.def("install_allocator", [](size_t min_bytes, double slack) {
    BlockCache*& inst = BlockCache::instance();
    if (inst != nullptr) return false;
    inst = new BlockCache(c10::GetCPUAllocator(), min_bytes, slack);  // lives as long as the process
    ::pthread_atfork(nullptr, nullptr, &BlockCache::after_fork_in_child);
    c10::SetCPUAllocator(inst, /*priority=*/1);
    return c10::GetCPUAllocator() == inst;
  }, "route CPU allocations of at least min_bytes through the block cache (once per process)");
  m.def("allocator_stats", []() {
    BlockCache* inst = BlockCache::instance();
    pybind11::dict d;
    d["installed"] = inst != nullptr && c10::GetCPUAllocator() == inst;
    if (inst == nullptr) return d;
    const Stats s = inst->stats();
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    d["unmapped"] = s.unmapped;
    d["in_use_bytes"] = s.in_use;
    d["cached_bytes"] = s.cached;
    d["peak_in_use_bytes"] = s.peak_in_use;
    d["peak_mapped_bytes"] = s.peak_mapped;
    return d;
  }, "counters of the block cache");
  m.def("allocator_empty_cache", []() {
    if (BlockCache::instance() != nullptr) BlockCache::instance()->empty_cache();
  }, "unmap every cached block");
  m.def("allocator_reset_peaks", []() {
    if (BlockCache::instance() != nullptr) BlockCache::instance()->reset_peaks();
  }, "start the peak counters again from now");
}
