//! Turns on the CPU for sandbox calls, tenants sharing it fairly.
//!
//! A call runs guest code and synchronous host work only while it holds
//! one of a fixed number of slots ([`CpuScheduler::new`]). It gives the
//! slot back whenever it suspends: at every epoch yield (about once a
//! millisecond of running, see [`super::epoch`]) and while it waits on
//! I/O. To go on it takes a slot again, and when none is free it queues.
//! A free slot goes to the queued call of the tenant that has used the
//! least CPU time in its turns (each tenant's calls in arrival order), as
//! a fair-share scheduler does: a tenant whose calls use little CPU (a
//! notification takes tens of microseconds) goes before one that spins or
//! makes the host copy megabytes in each turn, so its calls wait at most
//! for the turns running now. A tenant that comes back after a pause
//! starts level with the least-served tenant waiting, not with the credit
//! of its pause. Tenants' calls together hold at most the tenant slots
//! ([`CpuScheduler::new`]): by default one fewer than the slots, so however
//! tenants spend their turns a CPU is left for the service's own work and
//! the broker. While several tenants have calls in flight, none holds more
//! than its share of the tenant slots (rounded up), so a spinning tenant
//! never holds them all while another tenant's call waits on I/O and comes
//! back for a turn. The platform's plugins are not capped: they may use
//! every slot, whatever tenants have in flight.
//!
//! [`CpuScheduler::run`] also times each poll of the call on its thread's
//! CPU clock ([`CallClock`]), for the charge of its CPU time to its fuel.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::cpu_time::CallClock;

/// Whose calls share one turn: the owning tenant, none for the platform's
/// plugins.
pub(crate) type TurnOwner = Option<Arc<str>>;

/// Hands out running slots; see the module docs.
#[derive(Debug)]
pub(crate) struct CpuScheduler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Owners with queued calls; each with its calls' tickets and wakers in
    /// arrival order.
    waiting: VecDeque<(TurnOwner, VecDeque<(u64, Waker)>)>,
    /// Tickets handed a slot that have not resumed yet.
    granted: Vec<u64>,
    next_ticket: u64,
    /// CPU time each owner's turns have used, in nanoseconds: the owner
    /// waiting with the least goes next. An owner that queues while none
    /// of its calls waits or runs is raised to the least of those that do
    /// (no credit for the time it was away).
    used: HashMap<TurnOwner, u64>,
    /// Slots each owner holds, those granted to calls that have not resumed
    /// yet included.
    running: HashMap<TurnOwner, usize>,
    /// The most slots tenants' calls hold together.
    tenant_slots: usize,
    /// Calls in flight (running, waiting on I/O or queued) per owner.
    in_flight: HashMap<TurnOwner, usize>,
}

impl CpuScheduler {
    /// A scheduler letting `slots` calls run at once (at least one), of
    /// them at most `tenant_slots` tenants' calls (at least one, at most
    /// `slots`).
    pub fn new(slots: usize, tenant_slots: usize) -> Self {
        let slots = slots.max(1);
        CpuScheduler {
            state: Mutex::new(State {
                free: slots,
                waiting: VecDeque::new(),
                granted: Vec::new(),
                next_ticket: 0,
                used: HashMap::new(),
                running: HashMap::new(),
                tenant_slots: tenant_slots.clamp(1, slots),
                in_flight: HashMap::new(),
            }),
        }
    }

    /// Runs `call` for `owner`, polling it only while it holds a slot,
    /// each poll timed by `clock`.
    pub async fn run<F: Future>(&self, owner: TurnOwner, clock: &CallClock, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        let mut turn = Turn::new(self, owner);
        std::future::poll_fn(|cx| {
            if !turn.take_slot(cx) {
                return Poll::Pending;
            }
            clock.poll_begins();
            let polled = call.as_mut().poll(cx);
            turn.poll_ended(clock.poll_ends(), polled.is_pending());
            polled
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before anything that
        // could panic, so a poisoned lock holds valid state.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// The most slots one tenant may hold: its share of the tenant slots
    /// among the tenants with calls in flight.
    fn tenant_cap(&self) -> usize {
        let tenants = self.in_flight.keys().filter(|owner| owner.is_some()).count();
        self.tenant_slots.div_ceil(tenants.max(1))
    }

    /// Slots tenants' calls hold now.
    fn tenants_running(&self) -> usize {
        self.running.iter().filter(|(owner, _)| owner.is_some()).map(|(_, held)| held).sum()
    }

    fn held(&self, owner: &TurnOwner) -> usize {
        self.running.get(owner).copied().unwrap_or(0)
    }

    /// Hands free slots to queued calls, the least-served owner under its
    /// share first; returns the tickets granted and their wakers, to be
    /// woken once the lock is released (a waker may run code that takes it
    /// again).
    fn grant(&mut self) -> Vec<(u64, Waker)> {
        let mut woken = Vec::new();
        while self.free > 0 {
            let (cap, used) =
                (self.tenant_cap(), |owner: &TurnOwner| self.used.get(owner).copied().unwrap_or(0));
            let tenants_full = self.tenants_running() >= self.tenant_slots;
            let eligible = |owner: &TurnOwner| owner.is_none() || (self.held(owner) < cap && !tenants_full);
            let Some(next) = (0..self.waiting.len())
                .filter(|at| eligible(&self.waiting[*at].0))
                .min_by_key(|at| used(&self.waiting[*at].0))
            else {
                break;
            };
            let (owner, calls) = &mut self.waiting[next];
            let (owner, call) = (owner.clone(), calls.pop_front());
            if calls.is_empty() {
                self.waiting.remove(next);
            }
            if let Some((ticket, waker)) = call {
                self.free -= 1;
                self.count_running(&owner, true);
                self.granted.push(ticket);
                woken.push((ticket, waker));
            }
        }
        woken
    }

    fn queue(&mut self, owner: &TurnOwner, ticket: u64, waker: Waker) {
        if let Some((_, calls)) = self.waiting.iter_mut().find(|(queued, _)| queued == owner) {
            calls.push_back((ticket, waker));
            return;
        }
        if !self.running.contains_key(owner) {
            let active = self.waiting.iter().map(|(queued, _)| queued).chain(self.running.keys());
            let floor = active.filter_map(|active| self.used.get(active)).min().copied().unwrap_or(0);
            let used = self.used.entry(owner.clone()).or_insert(0);
            *used = (*used).max(floor);
        }
        self.waiting.push_back((owner.clone(), VecDeque::from([(ticket, waker)])));
    }

    /// `owner` takes a slot, or gives one back.
    fn count_running(&mut self, owner: &TurnOwner, taken: bool) {
        let held = self.running.entry(owner.clone()).or_insert(0);
        if taken {
            *held += 1;
        } else {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.running.remove(owner);
            }
        }
    }

    /// Takes `ticket` out of the queue; whether it was there.
    fn unqueue(&mut self, ticket: u64) -> bool {
        for (_, calls) in &mut self.waiting {
            if let Some(at) = calls.iter().position(|(queued, _)| *queued == ticket) {
                calls.remove(at);
                self.waiting.retain(|(_, calls)| !calls.is_empty());
                return true;
            }
        }
        false
    }

    fn take_grant(&mut self, ticket: u64) -> bool {
        let found = self.granted.iter().position(|granted| *granted == ticket);
        found.map(|at| self.granted.swap_remove(at)).is_some()
    }
}

/// What one call holds of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Holding {
    Nothing,
    Queued(u64),
    Slot,
}

/// One call's place in the scheduler; gives back what it holds when
/// dropped (a call ended or cancelled by its deadline).
struct Turn<'a> {
    scheduler: &'a CpuScheduler,
    owner: TurnOwner,
    holding: Holding,
}

impl<'a> Turn<'a> {
    /// A call of `owner`'s, in flight until dropped.
    fn new(scheduler: &'a CpuScheduler, owner: TurnOwner) -> Self {
        *scheduler.lock().in_flight.entry(owner.clone()).or_insert(0) += 1;
        Turn { scheduler, owner, holding: Holding::Nothing }
    }
}

impl Turn<'_> {
    /// Whether the call holds a slot now; queues it (waking it when
    /// granted) when it does not.
    fn take_slot(&mut self, cx: &Context<'_>) -> bool {
        let mut state = self.scheduler.lock();
        match self.holding {
            Holding::Slot => return true,
            Holding::Queued(ticket) => {
                if state.take_grant(ticket) {
                    self.holding = Holding::Slot;
                    return true;
                }
                let refreshed = state
                    .waiting
                    .iter_mut()
                    .flat_map(|(_, calls)| calls.iter_mut())
                    .find(|(queued, _)| *queued == ticket);
                if let Some((_, waker)) = refreshed {
                    waker.clone_from(cx.waker());
                }
            }
            Holding::Nothing => {
                let ticket = state.next_ticket;
                state.next_ticket = ticket.wrapping_add(1);
                state.queue(&self.owner, ticket, cx.waker().clone());
                self.holding = Holding::Queued(ticket);
                // A free slot may be this call's at once: then it is not
                // woken, it goes on.
                let others: Vec<Waker> = state
                    .grant()
                    .into_iter()
                    .filter(|(granted, _)| *granted != ticket)
                    .map(|(_, w)| w)
                    .collect();
                let mine = state.take_grant(ticket);
                if mine {
                    self.holding = Holding::Slot;
                }
                drop(state);
                others.into_iter().for_each(Waker::wake);
                return mine;
            }
        }
        false
    }

    /// A poll that used `nanos` of CPU time ended; when the call
    /// `suspended`, it gives back its slot. One lock for both: this runs
    /// after every poll of every call.
    fn poll_ended(&mut self, nanos: u64, suspended: bool) {
        let scheduler = self.scheduler;
        let mut state = scheduler.lock();
        let used = state.used.entry(self.owner.clone()).or_insert(0);
        *used = used.saturating_add(nanos);
        if suspended {
            self.release(state);
        }
    }

    /// Gives back what the call holds, under `state`'s lock, and wakes the
    /// calls granted a slot once the lock is released.
    fn release(&mut self, mut state: MutexGuard<'_, State>) {
        let holding = std::mem::replace(&mut self.holding, Holding::Nothing);
        let freed = match holding {
            Holding::Nothing => false,
            Holding::Slot => {
                state.count_running(&self.owner, false);
                true
            }
            // Granted but never resumed: the slot was reserved for it.
            Holding::Queued(ticket) => {
                let granted = !state.unqueue(ticket) && state.take_grant(ticket);
                if granted {
                    state.count_running(&self.owner, false);
                }
                granted
            }
        };
        if freed {
            state.free += 1;
        }
        let woken = state.grant();
        drop(state);
        woken.into_iter().for_each(|(_, waker)| waker.wake());
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let scheduler = self.scheduler;
        let mut state = scheduler.lock();
        if let Some(calls) = state.in_flight.get_mut(&self.owner) {
            *calls -= 1;
            if *calls == 0 {
                state.in_flight.remove(&self.owner);
            }
        }
        // The slot or place it held, and a share that grew for the others.
        self.release(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wakes.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn owner(name: &str) -> TurnOwner {
        Some(name.into())
    }

    #[test]
    fn the_owner_whose_turns_used_the_least_cpu_goes_first() {
        let scheduler = CpuScheduler::new(1, 1);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let cx = Context::from_waker(&waker);
        let turn = |name| Turn::new(&scheduler, owner(name));
        let mut running = turn("a");
        assert!(running.take_slot(&cx), "a free slot is taken at once");
        let mut queued: Vec<Turn<'_>> = ["a", "a", "b", "b"].into_iter().map(turn).collect();
        for call in &mut queued {
            assert!(!call.take_slot(&cx), "no slot is free: the call queues");
        }
        // a's turn used 5 ms: b, which has used nothing, goes next, both
        // of its calls, while it stays below a.
        running.poll_ended(5_000_000, true);
        assert!(!running.take_slot(&cx), "a queues again behind its own calls");
        assert!(!queued[0].take_slot(&cx));
        assert!(queued[2].take_slot(&cx), "b goes before a's earlier calls");
        queued[2].poll_ended(50_000, true);
        assert!(queued[3].take_slot(&cx), "b again: 50 µs is still less than 5 ms");
        queued[3].poll_ended(6_000_000, true);
        assert!(queued[0].take_slot(&cx), "then a, in its calls' order");
        assert_eq!(counter.0.load(Ordering::Relaxed), 3, "each grant woke its call");
    }

    #[test]
    fn an_owner_back_from_a_pause_has_no_credit_from_it() {
        let scheduler = CpuScheduler::new(1, 1);
        let cx = Context::from_waker(Waker::noop());
        let turn = |name| Turn::new(&scheduler, owner(name));
        let (mut a, mut b) = (turn("a"), turn("b"));
        assert!(a.take_slot(&cx));
        assert!(!b.take_slot(&cx));
        a.poll_ended(1_000_000_000, true);
        assert!(b.take_slot(&cx));
        // b runs 1 s of turns while c is away; c comes back level with b.
        b.poll_ended(1_000_000_000, false);
        let mut c = turn("c");
        assert!(!c.take_slot(&cx));
        assert!(!a.take_slot(&cx));
        b.poll_ended(0, true);
        let state = scheduler.lock();
        assert_eq!(
            state.used[&owner("c")],
            1_000_000_000,
            "raised to the least usage of those running or waiting"
        );
    }

    #[test]
    fn while_another_tenant_has_a_call_in_flight_none_holds_more_than_its_share() {
        let scheduler = CpuScheduler::new(2, 2);
        let cx = Context::from_waker(Waker::noop());
        let (mut a1, mut a2) = (Turn::new(&scheduler, owner("a")), Turn::new(&scheduler, owner("a")));
        let b = Turn::new(&scheduler, owner("b"));
        assert!(a1.take_slot(&cx));
        assert!(!a2.take_slot(&cx), "b's call is in flight (waiting on I/O, say): a holds at most 1 of 2");
        drop(b);
        assert!(a2.take_slot(&cx), "alone again, a may hold both");
    }

    #[test]
    fn tenants_share_the_tenant_slots_and_the_platform_is_not_capped() {
        let scheduler = CpuScheduler::new(3, 2);
        let cx = Context::from_waker(Waker::noop());
        let (mut a1, mut a2) = (Turn::new(&scheduler, owner("a")), Turn::new(&scheduler, owner("a")));
        let _b_waiting_on_io = Turn::new(&scheduler, owner("b"));
        let mut platform: Vec<Turn<'_>> = (0..2).map(|_| Turn::new(&scheduler, None)).collect();
        assert!(a1.take_slot(&cx));
        assert!(!a2.take_slot(&cx), "b is in flight: a holds at most 1 of the 2 tenant slots");
        for call in &mut platform {
            assert!(call.take_slot(&cx), "the platform takes the other slots, tenants in flight or not");
        }
    }

    #[test]
    fn tenants_leave_a_slot_to_the_platform_and_queue_for_their_own() {
        let scheduler = CpuScheduler::new(2, 1);
        let cx = Context::from_waker(Waker::noop());
        let (mut a1, mut a2) = (Turn::new(&scheduler, owner("a")), Turn::new(&scheduler, owner("a")));
        let mut b = Turn::new(&scheduler, owner("b"));
        let (mut platform1, mut platform2) = (Turn::new(&scheduler, None), Turn::new(&scheduler, None));
        assert!(a1.take_slot(&cx));
        assert!(!a2.take_slot(&cx), "a second tenant call would take the platform's slot");
        assert!(!b.take_slot(&cx), "so would another tenant's");
        assert!(platform1.take_slot(&cx), "the platform's plugins take the slot tenants leave");
        a1.poll_ended(1_000, true);
        assert!(b.take_slot(&cx), "the tenant slot passes on, to the tenant that has used the least");
        assert!(!a2.take_slot(&cx));
        b.poll_ended(1_000, true);
        platform1.poll_ended(1_000, true);
        drop((a1, a2, b));
        assert!(platform1.take_slot(&cx) && platform2.take_slot(&cx), "the platform may hold every slot");
        assert_eq!(scheduler.lock().tenants_running(), 0);
    }

    #[test]
    fn a_slot_granted_to_a_call_that_has_not_resumed_yet_counts_as_held() {
        let scheduler = CpuScheduler::new(2, 1);
        let cx = Context::from_waker(Waker::noop());
        let (mut a1, mut a2) = (Turn::new(&scheduler, owner("a")), Turn::new(&scheduler, owner("a")));
        let (mut b, mut platform) = (Turn::new(&scheduler, owner("b")), Turn::new(&scheduler, None));
        assert!(a1.take_slot(&cx) && platform.take_slot(&cx));
        assert!(!a2.take_slot(&cx) && !b.take_slot(&cx));
        a1.poll_ended(1_000, true);
        // b is granted the tenant slot; before it resumes, another slot is freed.
        platform.poll_ended(1_000, true);
        assert!(!a2.take_slot(&cx), "the tenant slot is b's, though b has not resumed");
        assert!(b.take_slot(&cx));
    }

    #[test]
    fn a_cancelled_call_gives_back_its_slot_its_grant_and_its_place() {
        let scheduler = CpuScheduler::new(1, 1);
        let waker = Waker::noop();
        let cx = Context::from_waker(waker);
        let mut first = Turn::new(&scheduler, owner("a"));
        assert!(first.take_slot(&cx));
        let mut granted = Turn::new(&scheduler, owner("b"));
        let mut queued = Turn::new(&scheduler, owner("c"));
        assert!(!granted.take_slot(&cx));
        assert!(!queued.take_slot(&cx));
        drop(first);
        drop(granted);
        assert!(queued.take_slot(&cx), "the grant of a dropped call passes on");
        drop(queued);
        let state = scheduler.lock();
        assert_eq!((state.free, state.waiting.len(), state.granted.len()), (1, 0, 0));
        assert!(state.running.is_empty() && state.in_flight.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_suspended_call_frees_its_slot_and_costs_no_cpu_time() {
        let scheduler = CpuScheduler::new(1, 1);
        let (clock, other_clock) = (CallClock::default(), CallClock::default());
        let (send, receive) = tokio::sync::oneshot::channel::<()>();
        let waiting = scheduler.run(owner("a"), &clock, receive);
        let other = scheduler.run(owner("b"), &other_clock, async {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            send.send(()).unwrap_or(());
        });
        // `other` needs the only slot while `waiting` is suspended on it.
        let (received, ()) = tokio::join!(waiting, other);
        assert!(received.is_ok());
        assert!(clock.cpu_time() < std::time::Duration::from_millis(20), "{:?}", clock.cpu_time());
    }
}
