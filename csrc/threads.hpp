// How many threads the kernels use, and the governor that picks it.
//
// Two modes. Explicit (set_num_threads(n), or OMP_NUM_THREADS in the
// environment when the module loads): every parallel region uses n threads,
// exactly. Auto (the default): the most is usable_cores() (the affinity mask
// and the cgroup's CPU quota, not the core count), and the team size is
// chosen at run time by measurement. A team of n threads that meets at a
// barrier every time step is only as fast as its slowest thread, and on a
// machine where other programs run, one descheduled thread stalls all of
// them (benchmarks/contention.py: 2 threads 7x slower than 1 beside one busy
// process on 2 cores). So each unit of work (a training step, a loss call, a
// block of sampled characters) is timed, and now and then a window of units
// (a probe: at least 0.15 s and 2 units) runs with a neighbouring team size;
// the faster size is kept. Every unit has a deadline (in a probe, the
// window's time so far 1.5x the expected or 1.5x the window's least length,
// whichever is longer, and a long unit's probe also paced by the parallel
// regions it has begun; any other unit 2x): past it, the
// next parallel region runs on the current size (a probe) or a smaller team
// (any other), so a bad probe costs little and a team caught in a bad phase
// of the scheduler (benchmarks/contention.py's "numpy x1" row: 2 threads
// beside another process's OpenBLAS threads, some steps 50x slower than the
// rest) does not stay in it.
//
// Every kernel gives the same bits at any team size (the work is split into
// the same pieces whatever the team), so none of this changes a result.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace pcr {

// The team size for a parallel region starting now on this thread.
int num_threads();
// Whether the unit of work running on this thread is past its deadline and
// now wants another team size (then a region may end early, at a point
// where its team agrees, so that the next one starts with the new size).
bool unit_overdue();
// Explicit mode with n threads (n >= 1).
void set_num_threads(int n);
// Auto mode (usable cores re-read).
void set_threads_auto();
bool threads_auto();
// CPUs this process may use: the affinity mask, capped by the cgroup's CPU
// quota (cgroup v2 cpu.max or v1 cpu.cfs_quota_us, rounded up).
int usable_cores();

// The team a new kind of unit starts with: usable cores less the threads
// other programs are running right now (/proc/stat less this process's
// own), at least 1.
int start_team(int max_team);
// This process's threads running or waiting for a CPU now, the calling one
// included (/proc/self/task; 0 where unknown).
int own_runnable_threads();

// For tests: in auto mode, every num_threads() call returns the next entry of
// `sizes` in turn, and every third unit_overdue() call says yes, so regions
// end early and teams change size mid-sequence (empty: the governor again).
void force_team_sizes(const std::vector<int>& sizes);

// What a unit of work is: estimates are kept per site.
enum class Site : int { STEP = 0, LOSS = 1, SAMPLE = 2 };
constexpr int kSites = 3;

// One unit's plan: its team size, and the team it finishes on once past
// its deadline (a probe: the current size; an ordinary unit far slower than
// usual: a smaller one).
struct Unit {
  int size = 1;
  int fallback = 1;
  bool probe = false;
  bool measured = false;
  bool settle = false;  // a probe's first unit, or begun soon after a lost probe: not measured
  double deadline = 0;  // seconds on the governor's clock; 0: none
  // A long probe unit's pace (see kPaceGrace): past pace_from + pace x the
  // num_threads() calls made so far, it is abandoned too (0: no pace).
  double pace = 0, pace_from = 0;
};

// The decision rule for one kind of unit (a site, a model, a shape), kept
// apart from the clock so that tests can drive it with made-up timings
// (governor_simulate).
class Chooser {
 public:
  static constexpr double kFirstWait = 0.5;  // s from a change to the next probe
  static constexpr double kMaxWait = 16.0;   // s: the back-off's cap
  static constexpr double kBackOff = 4.0;    // the wait's factor after a probe that lost
  // A larger team must beat the estimate by 10%, a smaller one only match
  // it: under load a barrier-bound team is fragile (a member that sleeps
  // at a barrier may wait a scheduler tick to run again), and a smaller
  // team leaves cores to the other programs.
  static constexpr double kGainUp = 0.90;
  static constexpr double kGainDown = 1.0;
  // A probe's deadline: 1.5x the expected time of its window so far, and
  // never before 1.5x kWindow. Beside other programs one short unit (a
  // 10 ms block of samples) often waits a time slice; judged alone, the
  // first unit of a probe ended it (traced: sampling beside two busy
  // processes, where two threads are 1.3x faster, lost both its first
  // probes in their first unit and stayed on one thread). A bad probe now
  // costs up to about 0.2 s, once per wait (16 s when settled).
  static constexpr double kAbandon = 1.5;
  static constexpr double kJump = 2.0;       // windows 2x (or half) the average since the last decision: probe now
  static constexpr double kBail = 2.0;       // an ordinary unit's deadline: 2x the expected time
  static constexpr double kFreshBail = 4.0;  // a new shape's first unit, from another's estimate
  // A probe is judged over a window of units, not one: beside other
  // programs one unit's time varies by more than the difference between
  // two team sizes (a descheduled thread costs a time slice), and the
  // size it is judged against is the current size's average over the
  // same kind of window since it was chosen.
  static constexpr double kWindow = 0.15;  // s: a probe window's least length
  static constexpr int kWindowUnits = 2;   // and its least number of units
  static constexpr double kHorizon = 2.0;  // s: the current size's average halves its past
  // A switch needs kWins probe windows of that size won in a row (probes
  // kFirstWait apart), or one won by kDecisive x the current size's time
  // or less (see wins_; beside two busy processes a lucky window of one
  // thread ran 0.82-0.94 of two threads' average, a window of two threads
  // 0.66-0.8 of one thread's).
  static constexpr int kWins = 3;
  static constexpr double kDecisive = 0.8;
  static constexpr double kShortUnit = kWindow / 4;  // s: a unit whose probe starts with a warm-up
  static constexpr double kSettle = 0.2;   // s after a lost probe: not measured (see settle_until_)
  // A probe of a long unit (a training step, kShortUnit or more) is paced:
  // its units make the same num_threads() calls at any team size (one per
  // parallel region: the same regions), so the calls made so far say how
  // far it has got, and once its time exceeds kAbandon x the current
  // size's time for that much work, plus kPaceGrace (a helper's wake-up,
  // a time slice), it is abandoned then rather than at the end of its
  // first kAbandon x kWindow seconds. Traced: training beside three busy
  // processes, each probe of two threads (at a third of one thread's
  // speed) held the team for 0.5 s, 16% of a 2-s measurement.
  static constexpr double kPaceGrace = kWindow / 4;

  Unit begin(double now, double amount, int max_team);
  // cut: the unit ran past its deadline and finished on its fallback team;
  // calls: the num_threads() calls it made (0: not counted).
  void end(double now, const Unit& u, double seconds, double amount, bool cut,
           long long calls = 0);

  int current() const { return cad_->cur; }
  // Share another chooser's team size and probing cadence (a new shape of
  // the same model: a model probes at one cadence, not one per shape, as a
  // validation reads chunks of several shapes), and take its estimate as a
  // first guess.
  void inherit(const Chooser& o);
  long long probes = 0, switches = 0, abandoned = 0, bailouts = 0, units = 0;
  int start = 0;  // the first team size (0: start_team's, from the machine's load now)
  std::uint64_t context = 0;
  const void* who = nullptr;
  long long last_used = 0;

 private:
  int neighbour() const;
  int smaller() const;  // the next smaller team (a bail-out's)
  int larger() const;   // the next larger team
  int max_ = 0;
  int est_size_ = 0;       // the team size est_ and cur_t_ were measured at
  bool fresh_ = true;      // the next unit is the first (not measured: warm-up)
  double est_ = 0;         // seconds per amount at the current size (a moving average)
  double calls_ = 0;       // num_threads() calls per amount in the last uncut unit (0: unknown)
  // The load-change check: the average over a window of units (kWindow,
  // kWindowUnits), against the average of the windows since the last
  // decision, and kJumpWindows such windows in a row, the same way.
  // Not the moving estimate: beside other programs a short unit (a
  // validation's odd last chunk, a millisecond) often takes a time slice
  // longer, one such unit moves the estimate 2x, and each reset the
  // model's probing cadence (a probe of a team that stalls every 0.5 s:
  // validation beside a NumPy process at 0.88 of one thread). Nor one
  // window alone, against the first window alone: beside two busy
  // processes on two cores one thread gets a whole core for a while and
  // then half of one, so its windows ran 16-58 ms a sampled block in
  // phases, and that rule saw 40 "changes" in 150 windows (traced, 25 s),
  // each a probe of two threads at once: a probe every 0.6 s where the
  // back-off allows one in 16 s (sampling at 0.7-0.9 of one thread's speed).
  // A base is trusted once its windows span kBaseSpan: the first few
  // windows after a decision may all fall in one such phase.
  static constexpr int kJumpWindows = 2;
  static constexpr double kBaseSpan = 1.0;  // s
  double base_t_ = 0, base_amt_ = 0;  // the windows since the last decision (halved every kHorizon)
  double jump_t_ = 0, jump_amt_ = 0;  // the window in progress
  int jump_units_ = 0;
  int jumps_ = 0;  // windows in a row off the base by kJump, the same way (negative: faster)
  void start_base() {
    base_t_ = base_amt_ = jump_t_ = jump_amt_ = 0;
    jump_units_ = jumps_ = 0;
  }
  int samples_ = 0;        // units behind est_
  // The units of the first kSettle seconds back on the current team after
  // a lost probe: they wake the threads the probe left asleep, and beside
  // other programs the scheduler takes a while to place them again (traced:
  // sampling beside two busy processes, 2-3 units of 3-5x the usual time
  // in the 0.15 s after every probe of a smaller team). Measured, these
  // made the current size look slower with each probe (its average 46 ->
  // 66 us a character in 7 s, a probe every 0.2 s as each pair of them
  // counted as "two in a row") until a probe of one thread won, at 0.72 of
  // two threads' speed. They are not measured, and a decision starts
  // "in a row" afresh.
  double settle_until_ = 0;
  // The windows the smaller [0] and the larger [1] neighbour have won in a
  // row since the last decision that was not "look again", change of load
  // or switch. Judged by one 0.15 s window, a probe was a lottery beside
  // other programs: sampling beside two busy processes, one thread's
  // windows ran 45-97 us a character and two threads' average ~50, so a
  // lucky window of one thread took the team down to 0.72 of two threads'
  // speed.
  int wins_[2] = {0, 0};
  void forget() { wins_[0] = wins_[1] = 0; }
  // What the shapes of one model share: the team size (one decision for the
  // model: a shape that is read once per validation would otherwise keep
  // its first size for a long time) and the probing cadence.
  struct Cadence {
    int cur = 0;            // the team size; 0: no unit yet
    double next_probe = 0;  // clock time
    double wait = kFirstWait;
    bool up = false;  // the direction of the next probe when both exist
    int bails = 0;    // the model's units in a row (of any shape) that bailed out
  };
  std::shared_ptr<Cadence> cad_ = std::make_shared<Cadence>();
  int probe_size_ = 0;  // a probe window in progress at this size (0: none)
  double probe_t_ = 0, probe_amt_ = 0;
  int probe_units_ = 0;
  // A probe's first unit wakes the threads a larger team adds, and beside
  // other programs that often took a time slice or more (traced: about
  // half the probes of two threads while sampling beside two busy
  // processes, 0.15-0.24 s for a 10 ms unit). A short unit's (expected
  // under kShortUnit) is left out of the window and abandoned only past
  // kAbandon x kWindow: the size is judged by what it does once running.
  // A long unit (a training step) is judged whole, as before: there a
  // wake-up is a small part of it, and a generous first deadline made
  // each probe of a bad size cost a whole slow step (beside three busy
  // processes: 0.83 of one thread's steps a second).
  bool probe_warm_ = false;
  double cur_t_ = 0, cur_amt_ = 0;  // the current size since it was chosen (see kHorizon)
  void decide(double now, bool won, bool again = false);
  double ref() const;  // seconds per amount expected at the current size
};

// The scope of one unit of work on the calling thread (a no-op in explicit
// mode, or inside another unit on this thread). `who` and `shape` say what
// is measured: each (site, who, shape) has its own estimates (the last few
// kept), so a validation's odd-sized last chunk does not disturb what was
// learnt about the full ones.
class Governed {
 public:
  Governed(Site site, const void* who, std::int64_t shape, double amount);
  // A unit that follows: on the team the model's (who's) latest chooser at
  // `site` has now, neither timed nor probed. For a sample's prime (a few
  // characters, once per call, under a millisecond): timed as a kind of its
  // own, its probes of two threads lasted hundreds of calls (a window needs
  // 0.15 s of its units) and each of those calls woke a helper beside other
  // programs (benchmarks/contention.py, sampling beside one busy process:
  // 0.87 of one thread's speed with an 8-character prime, 0.99 without).
  struct Follow {};
  Governed(Follow, Site site, const void* who);
  ~Governed();
  // The amount of work the unit turned out to hold (a loop that ended early).
  void set_amount(double amount) { amount_ = amount; }
  Governed(const Governed&) = delete;
  Governed& operator=(const Governed&) = delete;

  // Read by num_threads() on this thread.
  int size = 1;
  int planned = 1;
  int fallback = 1;
  double deadline = 0;
  double pace = 0, pace_from = 0;  // see Unit
  long long calls = 0;  // num_threads() calls so far
  bool cut = false;  // past the deadline: on the fallback team

 private:
  int site_ = -1;  // -1: inactive (or following)
  bool follows_ = false;
  Chooser* chooser_ = nullptr;  // its site's, guarded by the site's mutex
  Unit unit_;
  double amount_ = 0, start_ = 0;
};

struct SiteStats {
  int current;  // of the (who, shape) used last; 0: none yet
  long long units, probes, switches, abandoned, bailouts;
};
SiteStats site_stats(Site s);

// For tests: the team sizes the governor picks for `units` units of equal
// amount when a unit at team size n takes seconds[n - 1] (n <= seconds.size()),
// and after[n - 1] from unit change_at on (when `after` is given: the load
// changed). `shapes`: unit i is of shape shapes[i % shapes.size()], each
// shape its own chooser of one model (empty: one shape); `scale`: unit i
// takes scale[i % scale.size()] times as long (a shape's size, noise), or
// only when it runs at team size scale_size (> 0: one size's noise).
// Every chooser starts on one thread, whatever this machine runs now.
// calls > 0: every unit makes that many num_threads() calls, evenly spread
// (a probe is paced); `total` (when given) receives the simulated seconds.
std::vector<int> governor_simulate(const std::vector<double>& seconds, int units,
                                   const std::vector<double>& after = {}, int change_at = 0,
                                   const std::vector<int>& shapes = {},
                                   const std::vector<double>& scale = {}, int scale_size = 0,
                                   int calls = 0, double* total = nullptr);

}  // namespace pcr
