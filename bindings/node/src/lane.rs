//! The fast lane of the online calls (`recommend`, `similar`, `ingest`): worker threads of our own
//! instead of libuv's pool, and completions collected by the JS thread itself.
//!
//! A call through libuv's pool crosses threads twice: the JS thread wakes a pool thread, and the
//! pool thread wakes the JS thread (asleep in `epoll_wait`) to settle the promise. In a VM a
//! thread woken on another vCPU takes an inter-processor interrupt: `perf bench sched pipe` (two
//! wake-ups) measured a sizeable fraction of a library call on our 2-vCPU machines (figures in
//! benches/README.md, binding section). Here neither side needs a wake-up while calls keep coming:
//!
//! - a worker that finished a call busy-waits up to the spin window for the next one before it
//!   parks (one worker at a time; the others park at once), so a call submitted meanwhile is
//!   picked up in well under a microsecond. The window halves after each spin that waited in
//!   vain (and is whole again when calls come back to back), so the end of a burst costs little;
//! - while calls are in flight the JS thread keeps its event loop turning with a `setImmediate`
//!   chain (timers, I/O and other callbacks run as usual; the loop only stops sleeping) and
//!   settles every finished call on the next turn. After a spin window with no call finishing
//!   it goes back to sleep, and the next worker to finish wakes it through a thread-safe function.
//!
//! Spinning only pays when calls come back to back, and while a core is free for it. A call
//! after idle time needs a wake-up anyway (libuv's are a little cheaper than this lane's), and
//! with more calls in flight than cores (a loaded server on a small machine) a spinning thread
//! would take the core a worker or the JS thread needs. So the lane takes a call only when a
//! worker is spinning or the last call settled within the spin window, and while the calls in
//! flight, it and the polling JS thread each have a core ([`takes_call`]); the others go to
//! libuv's pool (`online_call` in lib.rs). A worker spins, and the JS thread polls, only while
//! the cores allow it (a call can outlast the moment it was taken), and both yield their core
//! every few microseconds, so that a thread woken onto it is not held up.
//!
//! So nothing spins when the process is idle, and the spin window (`TECHSHOP_RECS_SPIN_US`,
//! default 250 µs) bounds what a burst of calls costs in CPU afterwards. `TECHSHOP_RECS_POLL_US`
//! (default: the spin window) bounds the JS thread's polling on its own; `TECHSHOP_RECS_CORES`
//! (default: the available cores) is what the lane may count on. With 0 (or one core) the
//! binding sends every online call to libuv's pool: measured, that is faster than this lane with
//! every hand-off a wake-up. `TECHSHOP_RECS_THREADS` sets the number of
//! workers (default: the available cores, at most 4, as libuv's pool). Both are read once per
//! process ([`config`]).
//!
//! The lane belongs to one JS environment (the main thread or one `worker_threads` worker): its
//! JS-side half lives in a thread-local of that environment's thread and is torn down, workers
//! stopped, by the environment's cleanup hook.

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use recsys_serve::Error as RecError;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a lane call produces on its worker, turned into a JS value on the JS thread.
pub enum Answer {
    /// A serialised answer, parsed by V8's `JSON.parse` (one string crossing instead of one
    /// property set per field).
    Json(String),
    /// A count (`ingest`).
    Count(u32),
}

/// A call's work, run once on a worker.
pub type Work = Box<dyn FnOnce() -> std::result::Result<Answer, RecError> + Send>;

type Done = (u32, std::result::Result<Answer, RecError>);

/// The environment variable of the spin window, in microseconds.
pub const SPIN_VAR: &str = "TECHSHOP_RECS_SPIN_US";
/// The environment variable of the number of workers.
pub const THREADS_VAR: &str = "TECHSHOP_RECS_THREADS";
/// The environment variable of the JS thread's poll window, in microseconds.
pub const POLL_VAR: &str = "TECHSHOP_RECS_POLL_US";
/// The environment variable of the cores the lane may count on.
pub const CORES_VAR: &str = "TECHSHOP_RECS_CORES";
const DEFAULT_SPIN_US: u64 = 250;

/// The lane's settings, from the environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneConfig {
    /// Worker threads.
    pub threads: usize,
    /// The cores the process may use (what spinning must leave room in).
    pub cores: usize,
    /// How long a worker waits for work before it parks; calls that come within it of the last
    /// one are back to back.
    pub spin: Duration,
    /// How long the JS thread polls without a call finishing before it sleeps.
    pub poll: Duration,
}

/// A lane setting the process cannot start with: the variable, its value and why.
#[derive(Debug, Clone)]
pub struct BadSetting {
    name: &'static str,
    value: String,
    reason: String,
}

impl From<BadSetting> for RecError {
    fn from(b: BadSetting) -> Self {
        RecError::bad(b.name, b.value, b.reason)
    }
}

impl LaneConfig {
    /// Reads [`THREADS_VAR`], [`SPIN_VAR`], [`POLL_VAR`] and [`CORES_VAR`] through `var` (unset:
    /// the defaults); a value that is not a whole number in range is an error naming the variable
    /// and the value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> std::result::Result<Self, BadSetting> {
        let parse = |name: &'static str, min: u64, max: u64| -> std::result::Result<Option<u64>, BadSetting> {
            match var(name) {
                None => Ok(None),
                Some(s) => match s.trim().parse::<u64>() {
                    Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
                    _ => Err(BadSetting {
                        name,
                        value: s,
                        reason: format!("must be a whole number from {min} to {max}"),
                    }),
                },
            }
        };
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = parse(CORES_VAR, 1, 4096)?.map_or(available, |n| n as usize);
        let threads = parse(THREADS_VAR, 1, 256)?.map_or(cores.min(4), |n| n as usize);
        let spin = parse(SPIN_VAR, 0, 1_000_000)?.unwrap_or(DEFAULT_SPIN_US);
        let poll = parse(POLL_VAR, 0, 1_000_000)?.unwrap_or(spin);
        Ok(LaneConfig {
            threads,
            cores,
            spin: Duration::from_micros(spin),
            poll: Duration::from_micros(poll),
        })
    }
}

/// Online calls on libuv's pool (the ones the lane did not take), process-wide: they need cores
/// too, which spinning must leave them.
static POOL_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One online call on libuv's pool, counted while it lives (see [`takes_call`]).
pub struct PoolSlot(());

impl PoolSlot {
    /// Counts a call sent to libuv's pool until the slot is dropped.
    pub fn take() -> Self {
        POOL_IN_FLIGHT.fetch_add(1, SeqCst);
        PoolSlot(())
    }
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        POOL_IN_FLIGHT.fetch_sub(1, SeqCst);
    }
}

thread_local! {
    /// When this JS thread last settled an online call (lane or pool).
    static LAST_SETTLED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Records that an online call was settled on this JS thread now (see [`takes_call`]).
pub fn settled() {
    LAST_SETTLED.with(|t| t.set(Some(Instant::now())));
}

/// Whether the lane should take the next call, on this JS thread. Only when calls come back to
/// back: a worker is spinning, or the last online call settled within the spin window (a worker
/// spinning for it would have caught this one). A call after idle time gains nothing here: its
/// worker has to be woken anyway, libuv's wake-ups are a little cheaper, and a JS thread polling
/// on the core the woken worker lands on holds it back. And only while the call, the calls in
/// flight (lane and pool) and the polling JS thread each have a core and a worker is free for
/// it: otherwise spinning would slow the calls down. libuv's pool takes the others.
pub fn takes_call(config: &LaneConfig) -> bool {
    let (lane, hot) = LANE.with(|cell| {
        cell.borrow().as_ref().map_or((0, false), |side| {
            (side.pending.len(), side.shared.spinning.load(SeqCst))
        })
    });
    let recent = LAST_SETTLED
        .with(|t| t.get())
        .is_some_and(|t| t.elapsed() < config.spin);
    !config.spin.is_zero()
        && (hot || recent)
        && lane < config.threads
        && lane + POOL_IN_FLIGHT.load(SeqCst) + 2 <= config.cores
}

/// The half of the lane that the workers share with the JS thread.
struct Shared {
    queue: Mutex<VecDeque<(u32, Work)>>,
    /// Calls in `queue`, readable without the lock (what a spinning worker watches).
    queued: AtomicUsize,
    work_ready: Condvar,
    /// Workers parked on `work_ready` (changed under the `queue` lock).
    parked: AtomicUsize,
    /// Whether a worker holds the one spinning slot.
    spinning: AtomicBool,
    /// Workers running a call.
    busy: AtomicUsize,
    done: Mutex<Vec<Done>>,
    /// Entries in `done` (changed under its lock), readable without the lock (what the polling
    /// JS thread watches).
    finished: AtomicUsize,
    /// Set by the JS thread when it stops polling with calls in flight; the worker that swaps it
    /// back calls `wake`.
    js_asleep: AtomicBool,
    wake: ThreadsafeFunction<(), (), (), Status, false, true>,
    shutdown: AtomicBool,
    /// The settings: threads, cores, the longest spin and the JS thread's poll window.
    config: LaneConfig,
    /// The workers' current spin window in ns: halved after a spin that waited in vain, back to
    /// `config.spin` when the JS thread submits a call with no worker spinning.
    worker_window_ns: AtomicU64,
}

/// Locks a mutex, going on after a panic elsewhere (the data are queues that stay consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Queues a call, waking a parked worker unless a spinning one will take it.
    fn submit(&self, ticket: u32, work: Work) {
        let mut q = lock(&self.queue);
        q.push_back((ticket, work));
        self.queued.fetch_add(1, SeqCst);
        // A spinning worker takes the first call; wake a parked one for any beyond it.
        if self.parked.load(SeqCst) > 0 && (!self.spinning.load(SeqCst) || q.len() > 1) {
            self.work_ready.notify_one();
        }
    }

    /// The next queued call, if any.
    fn pop(&self) -> Option<(u32, Work)> {
        if self.queued.load(SeqCst) == 0 {
            return None;
        }
        let job = lock(&self.queue).pop_front();
        if job.is_some() {
            self.queued.fetch_sub(1, SeqCst);
        }
        job
    }

    /// Hands a finished call to the JS thread, waking it if it sleeps.
    fn finish(&self, done: Done) {
        {
            let mut list = lock(&self.done);
            list.push(done);
            self.finished.fetch_add(1, SeqCst);
        }
        if self.js_asleep.swap(false, SeqCst) {
            self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Whether a spinning worker leaves a core for each worker running a call and the JS thread.
    fn room_to_spin(&self) -> bool {
        self.busy.load(SeqCst) + POOL_IN_FLIGHT.load(SeqCst) + 2 <= self.config.cores
    }

    /// Busy-waits up to the workers' spin window for work, if no other worker is and there is
    /// room; true when work came.
    fn spin_for_work(&self) -> bool {
        let window = Duration::from_nanos(self.worker_window_ns.load(SeqCst));
        if window.is_zero() || !self.room_to_spin() || self.spinning.swap(true, SeqCst) {
            return false;
        }
        let start = Instant::now();
        let mut turns = 0u32;
        let got = loop {
            if self.queued.load(SeqCst) > 0 {
                break true;
            }
            if self.shutdown.load(SeqCst) {
                break false;
            }
            std::hint::spin_loop();
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(64) {
                if start.elapsed() >= window {
                    // Work comes slower than this: spin half as long next time (down to none),
                    // so that calls a millisecond apart do not each cost a window of CPU.
                    let half = window.as_nanos() as u64 / 2;
                    self.worker_window_ns.store(if half < 1_000 { 0 } else { half }, SeqCst);
                    break false;
                }
                if !self.room_to_spin() {
                    break false;
                }
                // A thread woken onto this core (the JS thread) runs now, not at the end of the
                // spin window.
                std::thread::yield_now();
            }
        };
        self.spinning.store(false, SeqCst);
        got
    }

    /// Sleeps until there is work or the lane stops.
    fn park(&self) {
        let mut q = lock(&self.queue);
        self.parked.fetch_add(1, SeqCst);
        while q.is_empty() && !self.shutdown.load(SeqCst) {
            q = self.work_ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.fetch_sub(1, SeqCst);
    }

    /// A worker thread's life: run calls, spin or park in between, return once stopped.
    fn run_worker(&self) {
        loop {
            if let Some((ticket, work)) = self.pop() {
                self.busy.fetch_add(1, SeqCst);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .unwrap_or_else(|_| Err(RecError::Internal("the call panicked".into())));
                self.busy.fetch_sub(1, SeqCst);
                self.finish((ticket, result));
                continue;
            }
            if self.shutdown.load(SeqCst) {
                return;
            }
            if !self.spin_for_work() {
                self.park();
            }
        }
    }

    /// Makes the workers return once the queue is empty.
    fn stop(&self) {
        let _q = lock(&self.queue);
        self.shutdown.store(true, SeqCst);
        self.work_ready.notify_all();
    }
}

/// The JS thread's half: the promises of calls in flight and the functions it schedules.
struct JsSide {
    shared: Arc<Shared>,
    pending: HashMap<u32, sys::napi_deferred>,
    next_ticket: u32,
    /// A `setImmediate(pump)` is scheduled.
    polling: bool,
    /// When the polling last saw a call finish (or began).
    last_progress: Instant,
    /// `wake` keeps the event loop alive (only while asleep with calls in flight).
    wake_held: bool,
    pump: FunctionRef<(), ()>,
    set_immediate: FunctionRef<(), ()>,
    json_parse: FunctionRef<String, Unknown<'static>>,
}

thread_local! {
    static LANE: RefCell<Option<JsSide>> = const { RefCell::new(None) };
}

/// Converts a Rust error into the JS error a promise rejects with.
pub type ErrorFn = fn(&Env, &RecError) -> sys::napi_value;

/// A napi error (a failed conversion) as a JS value.
fn napi_error_value(env: &Env, e: Error) -> sys::napi_value {
    JsError::from(e).into_unknown(*env).raw()
}

// The raw N-API calls of the lane. Each takes the `Env` of the call or callback it runs in, on
// that environment's JS thread, and values created in the current handle scope, which is what
// N-API requires of them.

/// A new promise and its deferred (napi_create_promise).
#[allow(unsafe_code)]
fn new_promise<'env>(env: &'env Env) -> Result<(sys::napi_deferred, Unknown<'env>)> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: a live env on its own thread; both out-pointers are valid.
    napi::check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
    // SAFETY: `promise` was just created in this env.
    Ok((deferred, unsafe { Unknown::from_raw_unchecked(env.raw(), promise) }))
}

/// Resolves (`Ok`) or rejects (`Err`) a deferred with a value; the deferred is consumed.
#[allow(unsafe_code)]
fn settle(env: &Env, deferred: sys::napi_deferred, outcome: std::result::Result<sys::napi_value, sys::napi_value>) {
    // SAFETY: `deferred` came from `new_promise` in this env and is settled exactly once (it is
    // removed from `pending` before); the value belongs to the current scope.
    unsafe {
        match outcome {
            Ok(v) => sys::napi_resolve_deferred(env.raw(), deferred, v),
            Err(v) => sys::napi_reject_deferred(env.raw(), deferred, v),
        };
    }
}

/// `setImmediate(f)`.
#[allow(unsafe_code)]
fn set_immediate(env: &Env, set_immediate: &Function<'_, (), ()>, f: &Function<'_, (), ()>) -> Result<()> {
    let mut undefined = ptr::null_mut();
    let mut result = ptr::null_mut();
    let args = [f.raw()];
    // SAFETY: live env on its thread; both functions are values of the current scope.
    napi::check_status!(unsafe {
        sys::napi_get_undefined(env.raw(), &mut undefined);
        sys::napi_call_function(env.raw(), undefined, set_immediate.raw(), 1, args.as_ptr(), &mut result)
    })
}

/// napi_ref_threadsafe_function / napi_unref_threadsafe_function.
#[allow(unsafe_code)]
fn hold_event_loop(env: &Env, tsfn: sys::napi_threadsafe_function, hold: bool) {
    // SAFETY: called on the JS thread of the env that created the function, which is alive (the
    // lane's cleanup hook drops the lane before the env goes).
    unsafe {
        if hold {
            sys::napi_ref_threadsafe_function(env.raw(), tsfn);
        } else {
            sys::napi_unref_threadsafe_function(env.raw(), tsfn);
        }
    }
}

impl JsSide {
    /// Settles the promises of the calls finished since the last look; true when there were any.
    fn drain(&mut self, env: &Env, errors: ErrorFn) -> bool {
        if self.shared.finished.load(SeqCst) == 0 {
            return false;
        }
        let done = {
            let mut list = lock(&self.shared.done);
            self.shared.finished.fetch_sub(list.len(), SeqCst);
            std::mem::take(&mut *list)
        };
        for (ticket, result) in done {
            let Some(deferred) = self.pending.remove(&ticket) else {
                continue;
            };
            let outcome = match result {
                Ok(Answer::Json(text)) => self
                    .json_parse
                    .borrow_back(env)
                    .and_then(|parse| parse.call(text))
                    .map(|v| v.raw())
                    .map_err(|e| napi_error_value(env, e)),
                Ok(Answer::Count(n)) => env
                    .create_uint32(n)
                    .map(|v| v.raw())
                    .map_err(|e| napi_error_value(env, e)),
                Err(e) => Err(errors(env, &e)),
            };
            settle(env, deferred, outcome);
        }
        settled();
        true
    }

    /// Schedules the next turn of the polling chain.
    fn schedule(&mut self, env: &Env) -> Result<()> {
        set_immediate(env, &self.set_immediate.borrow_back(env)?, &self.pump.borrow_back(env)?)?;
        self.polling = true;
        Ok(())
    }

    /// Holds or lets go of the event loop through `wake` (napi_ref/unref_threadsafe_function).
    fn hold_loop(&mut self, env: &Env, hold: bool) {
        if self.wake_held != hold {
            hold_event_loop(env, self.shared.wake.raw(), hold);
            self.wake_held = hold;
        }
    }

    /// One turn of the JS side: settle what finished, then poll on, sleep or stop.
    fn turn(&mut self, env: &Env, errors: ErrorFn) -> Result<()> {
        self.polling = false;
        if self.drain(env, errors) {
            self.last_progress = Instant::now();
        }
        if self.pending.is_empty() {
            self.hold_loop(env, false);
            return Ok(());
        }
        if self.may_poll() && self.last_progress.elapsed() < self.shared.config.poll {
            // A worker woken onto this core runs now: the kernel often wakes a parked worker on
            // the core of the thread that woke it, and a poll that kept the core would hold the
            // call back until the poll gave up (benches/README.md, binding section).
            std::thread::yield_now();
            return self.schedule(env);
        }
        self.sleep(env)
    }

    /// Whether polling leaves a core for every call in flight (here and on libuv's pool).
    fn may_poll(&self) -> bool {
        let config = &self.shared.config;
        !config.poll.is_zero() && self.pending.len().min(config.threads) + POOL_IN_FLIGHT.load(SeqCst) < config.cores
    }

    /// Lets the event loop sleep until a worker finishes a call (calls are in flight).
    fn sleep(&mut self, env: &Env) -> Result<()> {
        // The worker adds to `finished` and then swaps `js_asleep`; here it is the other way
        // round, so one of the two sees the other.
        self.hold_loop(env, true);
        self.shared.js_asleep.store(true, SeqCst);
        if self.shared.finished.load(SeqCst) > 0 && self.shared.js_asleep.swap(false, SeqCst) {
            self.last_progress = Instant::now();
            return self.schedule(env);
        }
        Ok(())
    }
}

/// Runs `f` on this JS environment's lane, creating it (and its workers) at the first call.
fn with_lane<R>(
    env: &Env,
    errors: ErrorFn,
    f: impl FnOnce(&mut JsSide) -> Result<R>,
) -> std::result::Result<R, LaneError> {
    LANE.with(|cell| {
        let mut lane = cell.borrow_mut();
        if lane.is_none() {
            *lane = Some(start(env, errors)?);
        }
        match lane.as_mut() {
            Some(side) => f(side).map_err(LaneError::Napi),
            None => Err(LaneError::Napi(Error::from_reason(
                "techshop-recs: the lane did not start",
            ))),
        }
    })
}

/// Why a call could not be put on the lane.
enum LaneError {
    /// The lane's settings are wrong (an environment variable).
    Config(RecError),
    /// A napi call failed.
    Napi(Error),
}

impl From<Error> for LaneError {
    fn from(e: Error) -> Self {
        LaneError::Napi(e)
    }
}

/// The process's lane settings, read from its environment at the first online call.
pub fn config() -> std::result::Result<LaneConfig, RecError> {
    static CONFIG: std::sync::OnceLock<std::result::Result<LaneConfig, BadSetting>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| LaneConfig::from_vars(|name| std::env::var(name).ok()))
        .clone()
        .map_err(RecError::from)
}

fn start(env: &Env, errors: ErrorFn) -> std::result::Result<JsSide, LaneError> {
    let config = config().map_err(LaneError::Config)?;
    let pump = env.create_function_from_closure::<(), (), _>("techshopRecsPump", move |ctx| {
        let env = Env::from_raw(ctx.env.raw());
        LANE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(side) => side.turn(&env, errors),
            None => Ok(()),
        })
    })?;
    let wake_fn = env.create_function_from_closure::<(), (), _>("techshopRecsWake", move |ctx| {
        let env = Env::from_raw(ctx.env.raw());
        LANE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(side) if !side.polling => {
                side.last_progress = Instant::now();
                side.turn(&env, errors)
            }
            _ => Ok(()),
        })
    })?;
    let wake = wake_fn
        .build_threadsafe_function::<()>()
        .weak::<true>()
        .callee_handled::<false>()
        .build()?;
    let global = env.get_global()?;
    let set_immediate: Function<'_, (), ()> = global.get_named_property("setImmediate")?;
    let json: Object<'_> = global.get_named_property("JSON")?;
    let json_parse: Function<'_, String, Unknown<'static>> = json.get_named_property("parse")?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
        work_ready: Condvar::new(),
        parked: AtomicUsize::new(0),
        spinning: AtomicBool::new(false),
        busy: AtomicUsize::new(0),
        done: Mutex::new(Vec::new()),
        finished: AtomicUsize::new(0),
        js_asleep: AtomicBool::new(false),
        wake,
        shutdown: AtomicBool::new(false),
        config,
        worker_window_ns: AtomicU64::new(config.spin.as_nanos() as u64),
    });
    for i in 0..config.threads {
        let worker = shared.clone();
        std::thread::Builder::new()
            .name(format!("techshop-recs-{i}"))
            .spawn(move || worker.run_worker())
            .map_err(|e| LaneError::Config(RecError::Internal(format!("starting a worker thread: {e}"))))?;
    }
    // At the environment's teardown: stop the workers and drop the JS references while the
    // environment is still there.
    let stopping = shared.clone();
    env.add_env_cleanup_hook((), move |()| {
        stopping.stop();
        LANE.with(|cell| cell.borrow_mut().take());
    })?;
    Ok(JsSide {
        shared,
        pending: HashMap::new(),
        next_ticket: 0,
        polling: false,
        last_progress: Instant::now(),
        wake_held: false,
        pump: pump.create_ref()?,
        set_immediate: set_immediate.create_ref()?,
        json_parse: json_parse.create_ref()?,
    })
}

/// Runs `work` on a lane worker; returns the promise of its answer (settled on this thread, a
/// Rust error rejected through `errors`).
pub fn call<'env>(env: &'env Env, work: Work, errors: ErrorFn) -> Result<Unknown<'env>> {
    let submitted = with_lane(env, errors, |side| {
        let (deferred, promise) = new_promise(env)?;
        if !side.shared.spinning.load(SeqCst) {
            // Calls come back to back again ([`takes_call`]): after this one the worker spins
            // its whole window for the next, however it shrank in quieter times.
            side.shared
                .worker_window_ns
                .store(side.shared.config.spin.as_nanos() as u64, SeqCst);
        }
        let ticket = side.next_ticket;
        side.next_ticket = side.next_ticket.wrapping_add(1);
        side.pending.insert(ticket, deferred);
        side.shared.submit(ticket, work);
        if !side.polling {
            side.last_progress = Instant::now();
            if side.may_poll() {
                // Poll from now on; a sleep this cancels needs no wake-up any more.
                side.shared.js_asleep.store(false, SeqCst);
                side.schedule(env)?;
            } else {
                side.sleep(env)?;
            }
        }
        Ok(promise)
    });
    match submitted {
        Ok(promise) => Ok(promise),
        Err(LaneError::Napi(e)) => Err(e),
        // Settings the lane cannot start with: the call rejects with the error naming them.
        Err(LaneError::Config(e)) => {
            let (deferred, promise) = new_promise(env)?;
            settle(env, deferred, Err(errors(env, &e)));
            Ok(promise)
        }
    }
}
