//! Open connections: the cap (`MAX_CONNECTIONS`), and which connection makes room when it is reached.
//!
//! Every connection the server holds costs a file descriptor and a little memory, and the
//! process has a fixed number of descriptors (`RLIMIT_NOFILE`). Without a cap, a few hundred
//! clients that connect and say nothing (or send their headers a byte at a time) use them all,
//! and then Render's own health probe cannot be accepted: the instance looks dead while it is
//! only full. So the server holds at most `cap` connections, below the file limit by enough for
//! the pool, the deploy hook client and the runtime, and at the cap it closes one to make room
//! for the newcomer, in this order:
//!
//! 1. an idle keep-alive connection, the one idle the longest: its client has had its answers
//!    and can reconnect at the cost of one handshake;
//! 2. a connection still sending its first request's headers, the one that has been at it the
//!    longest: a real client sends its headers in one packet, so the oldest is the likeliest to
//!    be a slow-header attack; the newcomer (perhaps the probe) is the youngest and goes last.
//!
//! A busy connection (a request being handled) is never closed to make room: its request is
//! work the server accepted. When every connection is busy the accept loop waits for one to
//! finish, and new connections wait in the kernel's backlog meanwhile.
//!
//! Each connection has a [`Slot`] whose state its `tracked` service moves
//! between `Head`, `Busy` and `Idle`; the accept loop moves the chosen one to `Evicted` with a
//! compare-and-swap, so a connection whose request began at that instant is never the one cut.
//!
//! The slot is also how the server tells a connection's task what to do: close (evicted, or
//! kept too long in its headers or idle: [`Connections::close_stale`]), finish its request and
//! close (draining), or stop now (the shutdown deadline). The task reads the slot each time it
//! is polled, which costs two uncontended atomic operations; the cancellation tokens used
//! before took a lock each (one of them shared by every connection) on every poll of every
//! connection, and hyper's own header timeout set a timer per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

pub use crate::config::MaxConnections;

/// Descriptors kept free beside the pool's: standard streams, the runtime's epoll and wakers,
/// the signal pipe, the listener, the deploy hook client's connections, DNS lookups.
pub const SPARE_DESCRIPTORS: usize = 32;

/// The pool bound assumed by [`ServeOptions::default`](super::ServeOptions) (which knows no
/// pool): room for a pool of up to this many connections.
pub const DEFAULT_POOL_BOUND: usize = 32;

/// The gauge of open connections.
pub const OPEN_METRIC: &str = "render_deploy_connections_open";
/// The counter of connections closed to make room, by `state` (`idle`, `head`).
pub const EVICTED_METRIC: &str = "render_deploy_connections_evicted_total";

impl MaxConnections {
    /// The cap, given the most connections the pool may open.
    pub fn resolve(self, pool_bound: usize) -> usize {
        match self {
            MaxConnections::Fixed(n) => n.max(1),
            MaxConnections::Auto => cap_for_file_limit(soft_file_limit(), pool_bound),
        }
    }
}

/// The soft file limit of this process (1024, the usual default, if it cannot be read).
pub fn soft_file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024)
}

/// `file_limit − pool_bound − SPARE_DESCRIPTORS`, at least 1.
pub fn cap_for_file_limit(file_limit: u64, pool_bound: usize) -> usize {
    let limit = usize::try_from(file_limit).unwrap_or(usize::MAX);
    limit
        .saturating_sub(pool_bound.saturating_add(SPARE_DESCRIPTORS))
        .max(1)
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Accepted; its first request's headers are not complete yet.
    Head = 0,
    /// A request is being handled (its body read, its answer written).
    Busy = 1,
    /// Kept alive between requests.
    Idle = 2,
    /// Chosen to make room; its task drops it.
    Evicted = 3,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Head,
            1 => State::Busy,
            2 => State::Idle,
            _ => State::Evicted,
        }
    }
}

/// What the server asks of a connection's task, in increasing order of urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Order {
    /// Serve on.
    Serve = 0,
    /// Draining: answer the request in flight, if any, then close.
    Finish = 1,
    /// Close now: evicted or stale (it was idle or in its headers, so no answer is lost), or
    /// the shutdown deadline has passed.
    Close = 2,
}

/// One connection's state, shared by its service and the registry.
#[derive(Debug)]
pub struct Slot {
    state: AtomicU8,
    /// The registry's tick at the last change of state: the lower, the older (a counter
    /// rather than a clock, so two changes in one microsecond still have an order).
    since: AtomicU64,
    /// An [`Order`], only ever raised.
    order: AtomicU8,
    /// The connection's task, woken when its order is raised.
    task: AtomicWaker,
    shared: Arc<Shared>,
}

/// What the registry and its slots share.
///
/// Every request ends with a write here, from whichever worker thread answered it, so each
/// write is one that takes the cache line from the other core: a request's end ticks once, and
/// notifies only when the accept loop is waiting (at the cap, or out of descriptors), which is
/// rare; a notification with nobody waiting was a compare-and-swap on every request.
#[derive(Debug, Default)]
struct Shared {
    /// Woken when a connection closes or a request ends (room may have appeared).
    changed: Notify,
    /// Tasks waiting for `changed` (or about to): a request's end notifies only then.
    waiting: AtomicUsize,
    /// Ticks once per change of state of any slot that eviction and the stale sweep look at.
    ticks: AtomicU64,
}

impl Shared {
    /// After a request's end: wakes the accept loop if it waits for room.
    fn request_ended(&self) {
        // Pairs with the fence in `Waiting::new`: either this sees the waiter, or the waiter's
        // check (which follows its fence) sees this slot's new state.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.changed.notify_one();
        }
    }
}

/// Counts a task in `Shared::waiting` while it waits for a change.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// A request's headers are in: `Head`/`Idle` → `Busy`. False when the connection was
    /// chosen for eviction first (its task is dropping it).
    ///
    /// No tick: a busy slot is neither evicted nor swept, so only the time it becomes idle
    /// again (`end_request`) is ever compared.
    pub fn begin_request(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            match State::from_u8(current) {
                State::Evicted => return false,
                State::Busy => return true,
                State::Head | State::Idle => {}
            }
            match self.state.compare_exchange(
                current,
                State::Busy as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// The answer has been handed to the connection: `Busy` → `Idle`.
    pub fn end_request(&self) {
        if self
            .state
            .compare_exchange(
                State::Busy as u8,
                State::Idle as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.touch();
            // The accept loop may be waiting for a connection it can close.
            self.shared.request_ended();
        }
    }

    /// The server's order for this connection; registers the polling task to be woken when it
    /// is raised. Called by the connection's task each time it is polled.
    pub fn poll_order(&self, cx: &mut Context<'_>) -> Order {
        self.task.register(cx.waker());
        self.order()
    }

    /// The server's order for this connection.
    pub fn order(&self) -> Order {
        match self.order.load(Ordering::Acquire) {
            0 => Order::Serve,
            1 => Order::Finish,
            _ => Order::Close,
        }
    }

    /// Raises the order (a lower one than the current is ignored) and wakes the task.
    pub fn command(&self, order: Order) {
        self.order.fetch_max(order as u8, Ordering::AcqRel);
        self.task.wake();
    }

    /// Moves an idle or head slot to `Evicted` and tells its task to close; false when it
    /// was not in `from` any more (a request began meanwhile).
    fn evict(&self, from: State) -> bool {
        let swapped = self
            .state
            .compare_exchange(
                from as u8,
                State::Evicted as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if swapped {
            self.command(Order::Close);
        }
        swapped
    }

    fn touch(&self) {
        let tick = self.shared.ticks.fetch_add(1, Ordering::Relaxed);
        self.since.store(tick, Ordering::Release);
    }

    fn age_key(&self) -> u64 {
        self.since.load(Ordering::Acquire)
    }
}

/// The open connections of one server, and its cap.
#[derive(Debug)]
pub struct Connections {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    cap: usize,
    shared: Arc<Shared>,
}

/// A registered connection; dropping it removes the connection from the registry.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    slot: Arc<Slot>,
    registry: Arc<Connections>,
}

impl Registration {
    /// The connection's slot.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let open = {
            let mut slots = self.registry.lock();
            slots.remove(&self.id);
            slots.len()
        };
        metrics::gauge!(OPEN_METRIC).set(open as f64);
        self.registry.shared.changed.notify_one();
    }
}

impl Connections {
    /// A registry that holds at most `cap` connections (at least 1).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            cap: cap.max(1),
            shared: Arc::default(),
        })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a new connection would be over the cap.
    pub fn is_full(&self) -> bool {
        self.len() >= self.cap
    }

    /// Registers a connection just accepted, in state `Head`.
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: AtomicU8::new(State::Head as u8),
            since: AtomicU64::new(0),
            order: AtomicU8::new(Order::Serve as u8),
            task: AtomicWaker::new(),
            shared: Arc::clone(&self.shared),
        });
        slot.touch();
        let open = {
            let mut slots = self.lock();
            slots.insert(id, Arc::clone(&slot));
            slots.len()
        };
        metrics::gauge!(OPEN_METRIC).set(open as f64);
        Registration {
            id,
            slot,
            registry: Arc::clone(self),
        }
    }

    /// Closes one connection to make room: the longest idle, else the one longest in its first
    /// headers. Returns the state it was in, or `None` when every connection is busy.
    pub fn evict_one(&self) -> Option<State> {
        let slots = self.lock();
        // A candidate can start a request between the scan and the swap; then scan again.
        // Bounded: each retry means one connection went busy, and busy ones are skipped.
        for _ in 0..slots.len().max(1) {
            let victim = slots
                .values()
                .filter_map(|slot| {
                    let state = slot.state();
                    let rank = match state {
                        State::Idle => 0,
                        State::Head => 1,
                        State::Busy | State::Evicted => return None,
                    };
                    Some((rank, slot.age_key(), state, slot))
                })
                .min_by_key(|(rank, age, _, _)| (*rank, *age));
            let (_, _, state, slot) = victim?;
            if slot.evict(state) {
                let label = if state == State::Idle { "idle" } else { "head" };
                metrics::counter!(EVICTED_METRIC, "state" => label).increment(1);
                return Some(state);
            }
        }
        None
    }

    /// Gives every open connection `order` (at the start of a drain, and at its deadline).
    pub fn command_all(&self, order: Order) {
        for slot in self.lock().values() {
            slot.command(order);
        }
    }

    /// The registry's clock: the tick the next change of state will take. A slot whose last
    /// change is older than a tick read at time `t` has not changed since `t`.
    pub fn tick(&self) -> u64 {
        self.shared.ticks.load(Ordering::Acquire)
    }

    /// Closes every connection that has been idle, or in its headers, since before `tick`;
    /// returns how many. The header-read timeout: [`super::listener`] calls it with the tick it
    /// read `HEADER_READ_TIMEOUT` ago.
    pub fn close_stale(&self, tick: u64) -> usize {
        let slots = self.lock();
        slots
            .values()
            .filter(|slot| {
                let state = slot.state();
                matches!(state, State::Idle | State::Head)
                    && slot.age_key() < tick
                    && slot.evict(state)
            })
            .count()
    }

    /// Resolves once a new connection can be taken: the registry is below its cap, or holds a
    /// connection that [`evict_one`](Self::evict_one) may close.
    pub async fn room(&self) {
        let _waiting = Waiting::new(&self.shared.waiting);
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the check and the wait is seen.
            changed.as_mut().enable();
            if self.has_room() {
                return;
            }
            changed.await;
        }
    }

    /// Waits for the next change (a connection closed, or a request finished).
    pub async fn changed(&self) {
        let _waiting = Waiting::new(&self.shared.waiting);
        self.shared.changed.notified().await;
    }

    fn has_room(&self) -> bool {
        let slots = self.lock();
        slots.len() < self.cap
            || slots
                .values()
                .any(|s| matches!(s.state(), State::Head | State::Idle))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_cap_leaves_the_pool_and_the_spare_descriptors_free() {
        assert_eq!(cap_for_file_limit(256, 5), 256 - 5 - SPARE_DESCRIPTORS);
        assert_eq!(cap_for_file_limit(10, 5), 1);
        assert!(cap_for_file_limit(u64::MAX, 5) > 1_000_000);
        assert_eq!(MaxConnections::Fixed(7).resolve(100), 7);
    }

    #[test]
    fn the_longest_idle_goes_first_then_the_oldest_head_and_never_a_busy_one() {
        let registry = Connections::new(10);
        let head_old = registry.register();
        let busy = registry.register();
        assert!(busy.slot().begin_request());
        let idle_old = registry.register();
        let idle_new = registry.register();
        let head_new = registry.register();
        for idle in [&idle_old, &idle_new] {
            assert!(idle.slot().begin_request());
        }
        idle_old.slot().end_request();
        idle_new.slot().end_request();

        assert_eq!(registry.evict_one(), Some(State::Idle));
        assert_eq!(idle_old.slot().state(), State::Evicted);
        assert_eq!(idle_new.slot().state(), State::Idle);
        assert_eq!(registry.evict_one(), Some(State::Idle));
        assert_eq!(registry.evict_one(), Some(State::Head));
        assert_eq!(head_old.slot().state(), State::Evicted);
        assert_eq!(head_new.slot().state(), State::Head);
        assert_eq!(registry.evict_one(), Some(State::Head));
        assert_eq!(registry.evict_one(), None, "only the busy one is left");
        assert_eq!(busy.slot().state(), State::Busy);
        assert!(
            !idle_new.slot().begin_request(),
            "an evicted one takes no request"
        );
    }

    #[test]
    fn only_connections_idle_or_in_their_headers_since_before_the_tick_are_stale() {
        let registry = Connections::new(10);
        let head = registry.register();
        let idle = registry.register();
        assert!(idle.slot().begin_request());
        idle.slot().end_request();
        let busy = registry.register();
        assert!(busy.slot().begin_request());
        let tick = registry.tick();
        let young = registry.register();

        assert_eq!(registry.close_stale(tick), 2);
        for closed in [&head, &idle] {
            assert_eq!(closed.slot().state(), State::Evicted);
            assert_eq!(closed.slot().order(), Order::Close);
        }
        assert_eq!(busy.slot().state(), State::Busy);
        assert_eq!(young.slot().state(), State::Head);
        assert_eq!(young.slot().order(), Order::Serve);
        // A busy connection that goes idle afterwards is young again.
        busy.slot().end_request();
        assert_eq!(registry.close_stale(tick), 0);
    }

    #[test]
    fn orders_only_rise_and_reach_every_connection() {
        let registry = Connections::new(10);
        let a = registry.register();
        let b = registry.register();
        registry.command_all(Order::Finish);
        assert_eq!(
            (a.slot().order(), b.slot().order()),
            (Order::Finish, Order::Finish)
        );
        a.slot().command(Order::Close);
        registry.command_all(Order::Finish);
        assert_eq!(
            (a.slot().order(), b.slot().order()),
            (Order::Close, Order::Finish)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_ending_while_the_accept_loop_looks_for_room_is_never_missed() {
        // The end of a request notifies only when someone waits for room; the waiter counts
        // itself before it looks. Raced a thousand times from two threads: a missed notice
        // would leave `room` waiting (bounded here by the timeout).
        let registry = Connections::new(1);
        let only = registry.register();
        for round in 0..1000 {
            assert!(only.slot().begin_request());
            let wait = tokio::spawn({
                let registry = Arc::clone(&registry);
                async move { registry.room().await }
            });
            only.slot().end_request();
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .unwrap_or_else(|_| panic!("round {round}: room missed the request's end"))
                .unwrap();
        }
    }

    #[tokio::test]
    async fn room_waits_while_every_connection_is_busy_and_dropping_one_frees_it() {
        let registry = Connections::new(1);
        let only = registry.register();
        assert!(only.slot().begin_request());
        assert!(registry.is_full());
        let wait = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move { registry.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!wait.is_finished());
        drop(only);
        wait.await.unwrap();
        assert!(registry.is_empty());
    }
}
