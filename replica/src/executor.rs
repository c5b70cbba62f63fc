//! A deterministic single-threaded executor for openraft, driven from a process's handlers.
//!
//! openraft is written as async tasks (its core loop, a ticker, a state-machine worker, one
//! replication stream per follower) over an [`AsyncRuntime`]. [`PlateauRuntime`] is that
//! runtime, and [`Executor`] runs its tasks — but only when the hosting process asks, inside
//! one of its handlers, on the process's thread, at the time the handler was given
//! (`ctx.now()`):
//!
//! - **time** is a thread-local set for the duration of [`Executor::run`]: openraft's
//!   `Instant::now()` is the handler's `now` (virtual in the simulator, the node's monotonic
//!   clock for real). Sleeps register a deadline; [`Executor::next_deadline`] tells the host
//!   when to call again (a timer).
//! - **randomness** (election timeouts) comes from a seed the host owns and hands in.
//! - **scheduling** is FIFO in wake order, and a wake can only happen inside a run (every
//!   input reaches the tasks through a handler), so the same inputs at the same times give the
//!   same polls: the same seed replays the same elections.
//!
//! openraft spawns through static functions (`AsyncRuntime::spawn`), which is why the
//! executor being run is found through a thread-local; spawning outside a run is a
//! programming error and panics.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, OptionalSend};
use rand::SeedableRng;

use crate::limits::POLLS_PER_RUN_MAX;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Tasks woken and not yet polled, shared with their wakers (which must be `Send + Sync`).
#[derive(Default)]
struct ReadyQueue {
    queue: Mutex<VecDeque<usize>>,
}

struct TaskWaker {
    slot: usize,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready
                .queue
                .lock()
                .expect("ready queue lock")
                .push_back(self.slot);
        }
    }
}

struct Slot {
    task: Option<Task>,
    waker: Arc<TaskWaker>,
}

/// What the thread-local points at during a run.
struct Inner {
    slots: RefCell<Vec<Option<Slot>>>,
    free: RefCell<Vec<usize>>,
    spawned: RefCell<Vec<Task>>,
    ready: Arc<ReadyQueue>,
    /// Deadline (ns since the clock origin, then a sequence number) → the waker to wake.
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    timer_seq: Cell<u64>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
    /// The time of the run in progress (ns since the clock origin); the last run's outside one.
    static NOW_NANOS: Cell<u64> = const { Cell::new(0) };
    /// The random state of the run in progress.
    static RNG_STATE: Cell<u64> = const { Cell::new(0) };
}

fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> R {
    CURRENT.with(|c| {
        let current = c.borrow();
        let inner = current.as_ref().expect(
            "openraft task work outside Executor::run (spawn or sleep from a foreign thread)",
        );
        f(inner)
    })
}

/// Runs openraft's tasks; owned by the process that hosts a replica.
pub struct Executor {
    inner: Rc<Inner>,
    rng_state: u64,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.task_count())
            .field("timers", &self.inner.timers.borrow().len())
            .finish()
    }
}

/// Restores the thread-locals when a run ends, even by a panic.
struct RunGuard<'a> {
    executor: &'a mut Executor,
    previous: Option<Rc<Inner>>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.executor.rng_state = RNG_STATE.with(|r| r.get());
        CURRENT.with(|c| *c.borrow_mut() = self.previous.take());
    }
}

impl Executor {
    /// An executor whose random draws start from `seed`.
    pub fn new(seed: u64) -> Self {
        Executor {
            inner: Rc::new(Inner {
                slots: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                spawned: RefCell::new(Vec::new()),
                ready: Arc::new(ReadyQueue::default()),
                timers: RefCell::new(BTreeMap::new()),
                timer_seq: Cell::new(0),
            }),
            rng_state: seed,
        }
    }

    /// Number of live tasks.
    pub fn task_count(&self) -> usize {
        self.inner
            .slots
            .borrow()
            .iter()
            .filter(|s| s.is_some())
            .count()
            + self.inner.spawned.borrow().len()
    }

    /// The earliest time a sleeping task wants to run again.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.inner
            .timers
            .borrow()
            .keys()
            .next()
            .map(|(nanos, _)| Duration::from_nanos(*nanos))
    }

    /// Starts `future` as a task (polled at the next [`Executor::run`]). Usable outside runs.
    pub fn spawn_detached(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.inner.spawned.borrow_mut().push(Box::pin(future));
    }

    /// Polls every task that can make progress at time `now` (since the clock origin) until
    /// none can. Returns the number of polls.
    pub fn run(&mut self, now: Duration) -> usize {
        // Each replica's clock is its own node's (origins differ between nodes): the time is
        // set per run, never carried from another executor's run.
        let now_nanos = now.as_nanos() as u64;
        NOW_NANOS.with(|n| n.set(now_nanos));
        RNG_STATE.with(|r| r.set(self.rng_state));
        let inner = self.inner.clone();
        let previous = CURRENT.with(|c| c.borrow_mut().replace(inner.clone()));
        let guard = RunGuard {
            executor: self,
            previous,
        };
        let mut polls = 0;
        loop {
            Self::admit_spawned(&inner);
            let next = inner
                .ready
                .queue
                .lock()
                .expect("ready queue lock")
                .pop_front();
            let slot = match next {
                Some(slot) => slot,
                None => {
                    if Self::fire_due_timers(&inner, now_nanos) == 0
                        && inner.spawned.borrow().is_empty()
                    {
                        break;
                    }
                    continue;
                }
            };
            polls += 1;
            if polls > POLLS_PER_RUN_MAX {
                tracing::warn!(polls, "replica executor: poll budget of one run spent; the rest waits for the next run");
                break;
            }
            let (task, waker) = {
                let mut slots = inner.slots.borrow_mut();
                match slots.get_mut(slot).and_then(|s| s.as_mut()) {
                    Some(s) => {
                        s.waker.queued.store(false, Ordering::Release);
                        (s.task.take(), s.waker.clone())
                    }
                    None => continue,
                }
            };
            let Some(mut task) = task else { continue };
            let waker = Waker::from(waker);
            let mut cx = Context::from_waker(&waker);
            match task.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    inner.slots.borrow_mut()[slot] = None;
                    inner.free.borrow_mut().push(slot);
                }
                Poll::Pending => {
                    if let Some(Some(s)) = inner.slots.borrow_mut().get_mut(slot) {
                        s.task = Some(task);
                    }
                }
            }
        }
        drop(guard);
        polls
    }

    fn admit_spawned(inner: &Inner) {
        let spawned: Vec<Task> = std::mem::take(&mut *inner.spawned.borrow_mut());
        for task in spawned {
            let slot = inner.free.borrow_mut().pop();
            let mut slots = inner.slots.borrow_mut();
            let slot = slot.unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            let waker = Arc::new(TaskWaker {
                slot,
                queued: AtomicBool::new(false),
                ready: inner.ready.clone(),
            });
            waker.wake_by_ref();
            slots[slot] = Some(Slot {
                task: Some(task),
                waker,
            });
        }
    }

    /// Wakes the tasks whose deadline passed; returns how many.
    fn fire_due_timers(inner: &Inner, now_nanos: u64) -> usize {
        let mut fired = 0;
        loop {
            let due = {
                let mut timers = inner.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((&(at, _), _)) if at <= now_nanos => timers.pop_first(),
                    _ => None,
                }
            };
            match due {
                Some((_, waker)) => {
                    waker.wake();
                    fired += 1;
                }
                None => return fired,
            }
        }
    }
}

// ----- openraft's runtime ------------------------------------------------------------------

/// A point on the hosting process's monotonic clock, as openraft sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaInstant(Duration);

impl ReplicaInstant {
    /// Time since the clock's origin.
    pub fn since_origin(self) -> Duration {
        self.0
    }
}

impl std::ops::Add<Duration> for ReplicaInstant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        ReplicaInstant(self.0 + d)
    }
}
impl std::ops::AddAssign<Duration> for ReplicaInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d
    }
}
impl std::ops::Sub<Duration> for ReplicaInstant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        ReplicaInstant(self.0.saturating_sub(d))
    }
}
impl std::ops::SubAssign<Duration> for ReplicaInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_sub(d)
    }
}
impl std::ops::Sub<ReplicaInstant> for ReplicaInstant {
    type Output = Duration;
    fn sub(self, other: ReplicaInstant) -> Duration {
        self.0.saturating_sub(other.0)
    }
}

impl openraft::Instant for ReplicaInstant {
    fn now() -> Self {
        ReplicaInstant(Duration::from_nanos(NOW_NANOS.with(|n| n.get())))
    }
}

/// A sleep until a deadline on the run's clock.
#[derive(Debug)]
pub struct Sleep {
    deadline: u64,
    registered: bool,
}

impl Sleep {
    fn until(deadline: ReplicaInstant) -> Self {
        Sleep {
            deadline: deadline.0.as_nanos() as u64,
            registered: false,
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if NOW_NANOS.with(|n| n.get()) >= self.deadline {
            return Poll::Ready(());
        }
        if !self.registered {
            // A task's waker never changes in this executor, so once is enough.
            let deadline = self.deadline;
            with_current(|inner| {
                let seq = inner.timer_seq.get();
                inner.timer_seq.set(seq + 1);
                inner
                    .timers
                    .borrow_mut()
                    .insert((deadline, seq), cx.waker().clone());
            });
            self.registered = true;
        }
        Poll::Pending
    }
}

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// A future with a deadline.
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A task ended without producing its value (its executor was dropped first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task cancelled")]
pub struct JoinError;

/// Awaits a spawned task's value.
pub struct JoinHandle<T>(tokio::sync::oneshot::Receiver<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| JoinError))
    }
}

/// The sending half of openraft's oneshot channels.
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// A random generator for openraft's draws (election timeouts), seeded from the run's state.
pub type ThreadRng = rand::rngs::SmallRng;

/// openraft's async runtime on the [`Executor`]: Plateau's clock and seeded randomness.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlateauRuntime;

impl AsyncRuntime for PlateauRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = ReplicaInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = async move {
            let _ = tx.send(future.await);
        };
        with_current(|inner| inner.spawned.borrow_mut().push(Box::pin(task)));
        JoinHandle(rx)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep::until(<ReplicaInstant as openraft::Instant>::now() + duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Self::sleep(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Sleep::until(deadline),
        }
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        // A panicking task unwinds through the host's handler: it never becomes a JoinError.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        let seed = RNG_STATE.with(|r| {
            let next = splitmix64(r.get());
            r.set(next);
            next
        });
        rand::rngs::SmallRng::seed_from_u64(seed)
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Instant as _;

    #[test]
    fn sleeps_wake_at_their_deadline_and_not_before() {
        let mut exec = Executor::new(1);
        let done = Arc::new(Mutex::new(Vec::new()));
        for (name, ms) in [("b", 20u64), ("a", 10)] {
            let done = done.clone();
            exec.spawn_detached(async move {
                PlateauRuntime::sleep(Duration::from_millis(ms)).await;
                done.lock()
                    .unwrap()
                    .push((name, ReplicaInstant::now().since_origin()));
            });
        }
        exec.run(Duration::ZERO);
        assert!(done.lock().unwrap().is_empty());
        assert_eq!(exec.next_deadline(), Some(Duration::from_millis(10)));
        exec.run(Duration::from_millis(9));
        assert!(done.lock().unwrap().is_empty());
        exec.run(Duration::from_millis(15));
        assert_eq!(
            *done.lock().unwrap(),
            vec![("a", Duration::from_millis(15))]
        );
        exec.run(Duration::from_millis(25));
        assert_eq!(done.lock().unwrap().len(), 2);
        assert_eq!(exec.task_count(), 0);
        assert_eq!(exec.next_deadline(), None);
    }

    #[test]
    fn spawned_tasks_and_channels_complete_within_one_run() {
        let mut exec = Executor::new(1);
        let out = Arc::new(Mutex::new(None));
        let out2 = out.clone();
        exec.spawn_detached(async move {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
            let handle = PlateauRuntime::spawn(async move {
                let mut rx = rx;
                let mut sum = 0;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                sum
            });
            for v in 1..=4 {
                tx.send(v).unwrap();
            }
            drop(tx);
            *out2.lock().unwrap() = Some(handle.await.unwrap());
        });
        exec.run(Duration::ZERO);
        assert_eq!(*out.lock().unwrap(), Some(10));
    }

    #[test]
    fn timeouts_elapse_on_the_run_clock() {
        let mut exec = Executor::new(1);
        let out = Arc::new(Mutex::new(None));
        let out2 = out.clone();
        exec.spawn_detached(async move {
            let never = std::future::pending::<()>();
            let r = PlateauRuntime::timeout(Duration::from_secs(1), never).await;
            *out2.lock().unwrap() = Some(r.is_err());
        });
        exec.run(Duration::ZERO);
        assert_eq!(*out.lock().unwrap(), None);
        exec.run(Duration::from_secs(1));
        assert_eq!(*out.lock().unwrap(), Some(true));
    }

    #[test]
    fn random_draws_follow_the_seed() {
        use rand::Rng as _;
        let draw = |seed| {
            let mut exec = Executor::new(seed);
            let out = Arc::new(Mutex::new(Vec::new()));
            let out2 = out.clone();
            exec.spawn_detached(async move {
                for _ in 0..3 {
                    out2.lock()
                        .unwrap()
                        .push(PlateauRuntime::thread_rng().gen::<u64>());
                }
            });
            exec.run(Duration::ZERO);
            let v = out.lock().unwrap().clone();
            v
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
