// The thread setting and the governor (threads.hpp).
#include "threads.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <dirent.h>
#include <sched.h>
#endif

namespace pcr {

namespace {
int runnable_threads();
}  // namespace

// The first team size: the cores not already busy with other programs'
// threads (a prior the measurements then correct; the first units have no
// estimate to bail out against). This process's own running threads are
// not counted: they are this thread and, most often, threads that spin for
// a moment after their last call and then sleep: the kernels' team at the
// end of a parallel region (a model's initialisation, the training before
// a validation) and OpenBLAS's, for a few tenths of a second after NumPy
// is imported. Counted as others, they started nearly every new kind of
// unit on an idle 2-core machine on one thread (traced: the first training
// step, validation chunk and sampled block of a process, 8 of 9), at half
// speed until a probe 0.5 s later, which is all of a short call (a
// 300-character sample). Another pool that keeps running beside the
// kernels is found by the measurements, as other programs' load is.
int start_team(int max_team) {
  const int others = runnable_threads() - std::max(1, own_runnable_threads());
  return others > 0 ? max_team - others : max_team;
}

// ---- the decision rule ----------------------------------------------------

int Chooser::smaller() const {
  const int cur = cad_->cur;
  return std::max(1, cur - std::max(1, cur / 4));
}

int Chooser::larger() const {
  const int cur = cad_->cur;
  return std::min(max_, cur + std::max(1, cur / 4));
}

int Chooser::neighbour() const {
  const int cur = cad_->cur;
  const int down = smaller(), up = larger();
  if (down == cur) return up;
  if (up == cur) return down;
  return cad_->up ? up : down;
}

Unit Chooser::begin(double now, double amount, int max_team) {
  int& cur = cad_->cur;
  if (max_team != max_) {  // the cores changed: start afresh
    max_ = max_team;
    cur = std::max(1, std::min(max_team, start > 0 ? start : start_team(max_team)));
    cad_->next_probe = 0;
    cad_->wait = kFirstWait;
    cad_->bails = 0;
    est_size_ = 0;
  }
  if (est_size_ != cur) {  // a new size (another shape's probe won): measure again
    est_size_ = cur;
    fresh_ = true;
    settle_until_ = 0;
    forget();
    samples_ = 0;
    start_base();
    probe_size_ = 0;
    cur_t_ = cur_amt_ = 0;
  }
  Unit u;
  u.size = u.fallback = cur;
  u.measured = !fresh_;
  if (fresh_) {  // with an estimate from another shape or size: a generous deadline
    if (est_ > 0 && cur > 1) {
      u.fallback = smaller();
      u.deadline = now + kFreshBail * est_ * amount;
    }
    return u;
  }
  // A probe is judged against the current size's average over at least a
  // window (ref()), not against the moving estimate, which leaves
  // bail-outs out and so can date from before the load came. Traced:
  // sampling with NumPy's products between the calls, two threads at a
  // half to a tenth of one thread's speed bailed out at every unit, each
  // pair of bail-outs began a probe, each lost probe 0.2 s of units that
  // are not measured (see settle_until_), and so for 2 s the current
  // size's average never spanned a window: four probes of one thread (31
  // us a character) lost against two threads' estimate from before the
  // NumPy calls (16 us) while two threads ran at 55.
  if (probe_size_ == 0 && samples_ >= 1 && max_ > 1 && now >= cad_->next_probe &&
      cur_t_ >= kWindow) {
    const int p = neighbour();
    if (p != cur) {
      probe_size_ = p;
      cad_->next_probe = now + cad_->wait;  // no other shape starts one meanwhile
      probe_t_ = probe_amt_ = 0;
      probe_units_ = 0;
      probe_warm_ = ref() * amount < kShortUnit;
    }
  }
  if (probe_size_ != 0) {  // abandoned once the window so far is 1.5x the expected time (see kAbandon)
    u.size = probe_size_;
    u.probe = true;
    if (probe_warm_) {  // its first unit wakes the team: not in the window (see probe_warm_)
      probe_warm_ = false;
      u.settle = true;
      u.deadline = now + kAbandon * kWindow;
      return u;
    }
    const double expected = std::max(kWindow, ref() * (probe_amt_ + amount));
    u.deadline = now + std::max(0.0, kAbandon * expected - probe_t_);
    if (calls_ > 0 && ref() * amount >= kShortUnit) {  // see kPaceGrace
      u.pace = kAbandon * ref() / calls_;
      u.pace_from = now + kPaceGrace;
    }
    return u;
  }
  if (now < settle_until_) {  // placing the team again: a generous deadline, not measured
    u.settle = true;
    if (est_ > 0 && cur > 1) {
      u.fallback = smaller();
      u.deadline = now + kFreshBail * ref() * amount;
    }
    return u;
  }
  if (est_ > 0 && cur > 1) {  // far slower than usual: finish on a smaller team
    u.fallback = smaller();
    u.deadline = now + kBail * ref() * amount;
  }
  return u;
}

void Chooser::inherit(const Chooser& o) {
  max_ = o.max_;
  est_ = o.est_;
  est_size_ = o.est_size_;
  // The probing cadence too: a validation of three chunk shapes should not
  // probe three times as often as one.
  cad_ = o.cad_;
}

void Chooser::end(double now, const Unit& u, double seconds, double amount, bool cut,
                  long long calls) {
  ++units;
  const double r = seconds / std::max(amount, 1e-300);
  if (!cut && calls > 0) calls_ = calls / std::max(amount, 1e-300);
  if (!u.measured) {  // the first unit: a rough estimate (it warms caches up too)
    fresh_ = false;
    // Cut too: its deadline came from another shape's estimate, and a
    // shape of far more time per character than that one (a validation's
    // last chunk, 31 characters in 1.6 ms against 6 us a character for the
    // full chunks) kept it for good, as only uncut units update it, and
    // every one of its units bailed out.
    est_ = r;
    return;
  }
  if (u.probe) {
    if (u.size != probe_size_) return;  // a window ended by a change of cores
    if (u.settle) {  // the probe's first unit
      if (cut) {
        ++abandoned;
        decide(now, false);
      }
      return;
    }
    probe_t_ += seconds;
    probe_amt_ += amount;
    ++probe_units_;
    if (!cut && (probe_units_ < kWindowUnits || probe_t_ < kWindow)) return;
    // The window is over (or abandoned). Against the current size's
    // average since it was chosen when that spans a window too, else
    // against the moving estimate.
    const int d = probe_size_ > cad_->cur ? 1 : 0;
    const double rw = probe_t_ / probe_amt_;
    if (cut) {
      ++abandoned;
      decide(now, false);
    } else if (rw >= (d ? kGainUp : kGainDown) * ref()) {
      decide(now, false);
    } else if (rw < kDecisive * ref() || ++wins_[d] >= kWins) {
      decide(now, true);
    } else {  // a window that won, not yet enough to switch on: look again soon
      decide(now, false, true);
    }
    return;
  }
  if (u.size != est_size_) return;  // begun before another shape changed the size
  if (u.settle) {  // see settle_until_
    if (cut) ++bailouts;
    return;
  }
  if (cut) {  // bailed out: the next probe is of the smaller team
    ++bailouts;
    cad_->up = false;
    // Two in a row: the load has changed, compare now. One alone is the
    // noise of a busy machine (a member descheduled for a time slice), and
    // a probe after each cost more than the stalls did (beside two NumPy
    // processes: 11 probes in 7 s of sampling, where two threads win).
    // In a row among all the model's units, not one shape's: a shape read
    // once per validation whose every unit bailed made "two in a row" of
    // two validations 0.2 s apart, and a probe of one thread began each
    // validation on an idle machine (25 probes in 10 s, at 0.75 of two
    // threads' speed).
    //
    // The current size's average then starts afresh, as after a change of
    // load seen by the window check (which only uncut units reach): its
    // past, before the load came, made a size whose every unit bailed out
    // look as fast as it had been, and the probes of the smaller team lost
    // against it (simulated: two threads 4x slower than one after 1 s,
    // probes of one thread lost for as long as the run).
    if (++cad_->bails >= 2) {
      forget();
      cad_->next_probe = now;
      cad_->wait = kFirstWait;
      if (cad_->bails == 2) cur_t_ = cur_amt_ = 0;  // once, at the change
    }
  } else {
    cad_->bails = 0;
  }
  // Every unit counts in the current size's average since the last change,
  // a bail-out too (a flattering measure: it finished on the smaller team).
  // Left out, a size whose every unit bails is judged by what it did before
  // the load came, the smaller team's probe loses against that, and the
  // team never shrinks (a traced run: 54 bail-outs and 55 lost probes in a
  // row, sampling at a fifth of one thread's speed). The moving estimate
  // leaves bail-outs out: one stall of a team that is faster on the whole
  // should not make a smaller team look as good. The average forgets half
  // its past every kHorizon seconds.
  cur_t_ += seconds;
  cur_amt_ += amount;
  if (cur_t_ > kHorizon) {
    cur_t_ *= 0.5;
    cur_amt_ *= 0.5;
  }
  if (cut) return;
  est_ = samples_ ? 0.7 * est_ + 0.3 * r : r;
  ++samples_;
  jump_t_ += seconds;
  jump_amt_ += amount;
  if (++jump_units_ < kWindowUnits || jump_t_ < kWindow) return;
  const double wt = jump_t_, wa = jump_amt_;  // a window (see base_t_)
  jump_t_ = jump_amt_ = 0;
  jump_units_ = 0;
  const double w = wt / wa, base = base_amt_ > 0 ? base_t_ / base_amt_ : 0;
  const int way = base_t_ < kBaseSpan ? 0 : w > kJump * base ? 1 : kJump * w < base ? -1 : 0;
  jumps_ = way == 0 ? 0 : (jumps_ * way > 0 ? jumps_ + way : way);
  if (way == 0) {  // an ordinary window: into the base (an odd one alone is left out)
    base_t_ += wt;
    base_amt_ += wa;
    if (base_t_ > kHorizon) {
      base_t_ *= 0.5;
      base_amt_ *= 0.5;
    }
  } else if (jumps_ * way >= kJumpWindows) {  // the load changed: compare again now
    cad_->next_probe = now;
    cad_->wait = kFirstWait;
    start_base();
    base_t_ = wt;
    base_amt_ = wa;
    cur_t_ = cur_amt_ = 0;  // the average from before the change no longer holds
    forget();  // nor the wins
  }
}

// The current size's average since it was chosen when that spans a
// window, else the moving estimate.
double Chooser::ref() const { return cur_t_ >= kWindow ? cur_t_ / cur_amt_ : est_; }

void Chooser::decide(double now, bool won, bool again) {
  ++probes;
  if (again) {
    cad_->next_probe = now + kFirstWait;  // the same size, the wait as it was
  } else if (won) {
    const bool down = probe_size_ < cad_->cur;
    cad_->cur = est_size_ = probe_size_;
    est_ = probe_t_ / probe_amt_;
    samples_ = 1;
    // Look again soon when the next size that way may be better still.
    // Where there is none (one thread, or all the cores), the next probe
    // is of the size just left, which has just lost: wait as after a lost
    // probe (traced: a probe of two threads 0.5 s after every switch to
    // one, beside NumPy's threads, cost a third of a second each).
    const bool further = (down ? smaller() : larger()) != cad_->cur;
    cad_->wait = further ? kFirstWait : std::min(kBackOff * kFirstWait, kMaxWait);
    ++switches;
  } else {
    cad_->wait = std::min(kBackOff * cad_->wait, kMaxWait);
    cad_->up = !cad_->up;
  }
  probe_size_ = 0;
  settle_until_ = won ? 0 : now + kSettle;
  cad_->bails = 0;
  if (won) cur_t_ = cur_amt_ = 0;  // a lost probe leaves the current size's average as it was
  if (!again) {
    forget();
    cad_->next_probe = now + cad_->wait;
  }
  start_base();  // the windows from now on make the base
}

std::vector<int> governor_simulate(const std::vector<double>& seconds, int units,
                                   const std::vector<double>& after, int change_at,
                                   const std::vector<int>& shapes,
                                   const std::vector<double>& scale, int scale_size,
                                   int calls, double* total) {
  std::vector<Chooser> c(std::max<size_t>(1, shapes.empty() ? 1 : *std::max_element(
                                                 shapes.begin(), shapes.end()) + 1));
  std::vector<int> sizes;
  const int max_team = static_cast<int>(seconds.size());
  double now = 0;
  for (int i = 0; i < units; ++i) {
    const std::vector<double>& s = !after.empty() && i >= change_at ? after : seconds;
    const size_t k = shapes.empty() ? 0 : static_cast<size_t>(shapes[i % shapes.size()]);
    if (k > 0 && c[k].units == 0 && c[0].units > 0) c[k].inherit(c[0]);  // as SiteState::find
    c[k].start = 1;  // not the load on this machine now: the same sizes wherever it runs
    const Unit u = c[k].begin(now, 1.0, max_team);
    const double f = scale.empty() ? 1.0 : scale[static_cast<size_t>(i) % scale.size()];
    auto time_at = [&](int size) {
      return (scale_size <= 0 || size == scale_size ? f : 1.0) * s[static_cast<size_t>(size - 1)];
    };
    double t = time_at(u.size);
    double cut_at = u.deadline > 0 && now + t > u.deadline ? u.deadline - now : -1;
    for (int j = 1; u.pace > 0 && j <= calls; ++j) {  // call j when (j - 1) / calls is done
      const double e = (j - 1) * t / calls;
      if (cut_at >= 0 && e >= cut_at) break;
      if (now + e > u.pace_from + u.pace * j) {
        cut_at = e;
        break;
      }
    }
    const bool cut = cut_at >= 0;
    if (cut) t = cut_at + (1 - cut_at / t) * time_at(u.fallback);  // the rest on the fallback team
    now += t;
    c[k].end(now, u, t, 1.0, cut, calls);
    sizes.push_back(u.size);
  }
  if (total) *total = now;
  return sizes;
}

// ---- usable cores ---------------------------------------------------------

namespace {

#ifdef __linux__
// A cgroup's quota in CPUs (0: none) from the files under `dir`.
double quota_in(const std::string& dir) {
  if (FILE* f = std::fopen((dir + "/cpu.max").c_str(), "r")) {  // v2: "max 100000" or "50000 100000"
    char q[32] = {0};
    double period = 0;
    const int got = std::fscanf(f, "%31s %lf", q, &period);
    std::fclose(f);
    if (got == 2 && std::strcmp(q, "max") != 0 && period > 0) return std::atof(q) / period;
    return 0;
  }
  double quota = -1, period = 0;
  if (FILE* f = std::fopen((dir + "/cpu.cfs_quota_us").c_str(), "r")) {
    if (std::fscanf(f, "%lf", &quota) != 1) quota = -1;
    std::fclose(f);
  }
  if (FILE* f = std::fopen((dir + "/cpu.cfs_period_us").c_str(), "r")) {
    if (std::fscanf(f, "%lf", &period) != 1) period = 0;
    std::fclose(f);
  }
  return quota > 0 && period > 0 ? quota / period : 0;
}

// The smallest quota on the way from this process's cgroup up to the root.
double cgroup_quota() {
  FILE* f = std::fopen("/proc/self/cgroup", "r");
  if (!f) return 0;
  double best = 0;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    // "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
    char* a = std::strchr(line, ':');
    char* b = a ? std::strchr(a + 1, ':') : nullptr;
    if (!b) continue;
    const std::string controllers(a + 1, b);
    std::string path(b + 1);
    while (!path.empty() && (path.back() == '\n' || path.back() == '/')) path.pop_back();
    std::vector<std::string> roots;
    if (controllers.empty()) {
      roots = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    } else if ((',' + controllers + ',').find(",cpu,") != std::string::npos) {
      roots = {"/sys/fs/cgroup/" + controllers, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
    } else {
      continue;
    }
    for (const std::string& root : roots) {
      std::string p = path;
      for (;;) {
        const double q = quota_in(root + p);
        if (q > 0 && (best == 0 || q < best)) best = q;
        if (p.empty()) break;
        p.erase(p.rfind('/'));
      }
    }
  }
  std::fclose(f);
  return best;
}
#endif

// Threads running or waiting for a CPU on the whole machine, this one
// included (/proc/stat's procs_running); 0 if unknown.
int runnable_threads() {
  int n = 0;
#ifdef __linux__
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "procs_running %d", &n) == 1) break;
    std::fclose(f);
  }
#endif
  return n;
}

int find_usable_cores() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  const double q = cgroup_quota();
  if (q > 0) n = std::min(n, static_cast<int>(std::ceil(q - 1e-9)));
#endif
  return std::max(1, n);
}

struct Setting {
  std::atomic<bool> automatic{true};
  std::atomic<int> fixed{1};   // explicit mode's count
  std::atomic<int> usable{1};  // auto mode's most
  std::atomic<int> hint{1};    // auto mode, outside a unit: the last choice
  Setting() {
    const int u = find_usable_cores();
    usable = u;
    hint = u;
    const char* env = std::getenv("OMP_NUM_THREADS");
    if (env && *env) {
#ifdef _OPENMP
      fixed = std::max(1, omp_get_max_threads());
#else
      fixed = 1;
#endif
      automatic = false;
    }
  }
};

Setting& setting() {
  static Setting s;
  return s;
}

struct Forced {
  std::mutex mu;
  std::vector<int> sizes;
  std::atomic<bool> on{false};
  std::atomic<unsigned long long> next{0};
};

Forced& forced() {
  static Forced f;
  return f;
}

// A site's choosers, one per (who, shape), the least recently used
// replaced past kContexts.
struct SiteState {
  static constexpr size_t kContexts = 16;
  std::mutex mu;
  std::vector<Chooser> choosers;
  long long uses = 0;
  const Chooser* last = nullptr;
  Chooser retired;  // the counts of choosers replaced
  SiteState() { choosers.reserve(kContexts); }  // pointers to them stay valid

  // The chooser of `who` used last (other than `except`), or null.
  const Chooser* latest(const void* who, const Chooser* except = nullptr) const {
    const Chooser* from = nullptr;
    for (const Chooser& c : choosers)
      if (&c != except && c.who == who && (!from || c.last_used > from->last_used)) from = &c;
    return from;
  }

  Chooser& find(std::uint64_t context, const void* who) {
    Chooser* pick = nullptr;
    for (Chooser& c : choosers)
      if (c.context == context) pick = &c;
    if (!pick) {
      if (choosers.size() < kContexts) {
        choosers.emplace_back();
        pick = &choosers.back();
      } else {
        pick = &*std::min_element(choosers.begin(), choosers.end(),
                                  [](const Chooser& a, const Chooser& b) {
                                    return a.last_used < b.last_used;
                                  });
        retired.units += pick->units;  // its counts stay in the totals
        retired.probes += pick->probes;
        retired.switches += pick->switches;
        retired.abandoned += pick->abandoned;
        retired.bailouts += pick->bailouts;
        *pick = Chooser();
      }
      pick->context = context;
      pick->who = who;
      // A new shape of a model starts where its shape used last is.
      if (const Chooser* from = latest(who, pick)) pick->inherit(*from);
    }
    pick->last_used = ++uses;
    last = pick;
    return *pick;
  }
};

SiteState* sites() {
  static SiteState s[kSites];
  return s;
}

double clock_now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

thread_local Governed* t_unit = nullptr;

}  // namespace

int usable_cores() { return setting().usable.load(std::memory_order_relaxed); }
bool threads_auto() { return setting().automatic.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  setting().fixed.store(n < 1 ? 1 : n);
  setting().automatic.store(false);
}

void set_threads_auto() {
  const int u = find_usable_cores();
  setting().usable.store(u);
  setting().hint.store(u);
  setting().automatic.store(true);
}

void force_team_sizes(const std::vector<int>& sizes) {
  Forced& f = forced();
  std::lock_guard<std::mutex> lock(f.mu);
  f.on.store(false);
  f.sizes = sizes;
  f.next.store(0);
  f.on.store(!sizes.empty());
}

int num_threads() {
  Setting& s = setting();
  if (!s.automatic.load(std::memory_order_relaxed)) return s.fixed.load(std::memory_order_relaxed);
  Forced& f = forced();
  if (f.on.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(f.mu);
    if (!f.sizes.empty()) return f.sizes[f.next.fetch_add(1) % f.sizes.size()];
  }
  Governed* g = t_unit;
  if (!g) return s.hint.load(std::memory_order_relaxed);
  ++g->calls;
  unit_overdue();
  return g->size;
}

bool unit_overdue() {
  if (!setting().automatic.load(std::memory_order_relaxed)) return false;
  Forced& f = forced();
  if (f.on.load(std::memory_order_acquire))  // tests: end regions early now and then
    return f.next.fetch_add(1) % 3 == 0;
  Governed* g = t_unit;
  if (!g || g->deadline <= 0) return false;
  if (!g->cut) {  // see Unit
    const double now = clock_now();
    if (now <= g->deadline && (g->pace <= 0 || now <= g->pace_from + g->pace * g->calls))
      return false;
    g->cut = true;
    g->size = g->fallback;
  }
  return g->cut && g->size != g->planned;
}

Governed::Governed(Site site, const void* who, std::int64_t shape, double amount) {
  if (!threads_auto() || t_unit) return;
  site_ = static_cast<int>(site);
  amount_ = amount;
  const std::uint64_t context = reinterpret_cast<std::uintptr_t>(who) * 0x9E3779B97F4A7C15ull ^
                                static_cast<std::uint64_t>(shape);
  SiteState& st = sites()[site_];
  start_ = clock_now();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    chooser_ = &st.find(context, who);
    unit_ = chooser_->begin(start_, amount, usable_cores());
    fallback = unit_.fallback;
  }
  size = planned = unit_.size;
  deadline = unit_.deadline;
  pace = unit_.pace;
  pace_from = unit_.pace_from;
  t_unit = this;
}

Governed::Governed(Follow, Site site, const void* who) {
  if (!threads_auto() || t_unit) return;
  int n = 0;
  {
    SiteState& st = sites()[static_cast<int>(site)];
    std::lock_guard<std::mutex> lock(st.mu);
    if (const Chooser* from = st.latest(who)) n = from->current();
  }
  size = planned = fallback = n > 0 ? n : std::max(1, setting().hint.load(std::memory_order_relaxed));
  follows_ = true;
  t_unit = this;
}

Governed::~Governed() {
  if (follows_) t_unit = nullptr;
  if (site_ < 0) return;
  t_unit = nullptr;
  const double now = clock_now();
  SiteState& st = sites()[site_];
  std::lock_guard<std::mutex> lock(st.mu);
  chooser_->end(now, unit_, now - start_, amount_, cut, calls);
  setting().hint.store(chooser_->current(), std::memory_order_relaxed);
}

SiteStats site_stats(Site s) {
  SiteState& st = sites()[static_cast<int>(s)];
  std::lock_guard<std::mutex> lock(st.mu);
  const Chooser& r = st.retired;
  SiteStats out{st.last ? st.last->current() : 0, r.units, r.probes, r.switches, r.abandoned,
                r.bailouts};
  for (const Chooser& c : st.choosers) {
    out.units += c.units;
    out.probes += c.probes;
    out.switches += c.switches;
    out.abandoned += c.abandoned;
    out.bailouts += c.bailouts;
  }
  return out;
}

// State R in /proc/self/task/*/stat.
int own_runnable_threads() {
  int n = 0;
#ifdef __linux__
  if (DIR* d = opendir("/proc/self/task")) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      const std::string path = std::string("/proc/self/task/") + e->d_name + "/stat";
      FILE* f = std::fopen(path.c_str(), "r");
      if (!f) continue;  // the thread ended meanwhile
      char buf[512];
      const size_t got = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      buf[got] = 0;
      // "tid (comm) S ...": the name may hold spaces and parentheses.
      const char* close = std::strrchr(buf, ')');
      if (close && close[1] == ' ' && close[2] == 'R') ++n;
    }
    closedir(d);
  }
#endif
  return n;
}

}  // namespace pcr
