//! Turns on the CPU for sandbox calls, tenants served in turn.
//!
//! A call runs guest code and synchronous host work only while it holds
//! one of a fixed number of slots ([`CpuScheduler::new`]). It gives the
//! slot back whenever it suspends: at every epoch yield (about once a
//! millisecond of running, see [`super::epoch`]) and while it waits on
//! I/O. To go on it takes a slot again, and when none is free it queues.
//! Queued calls are granted slots tenant by tenant in rotation, each
//! tenant's calls in arrival order, so a tenant with sixteen spinning
//! calls gets one turn for every turn of a tenant with one call, and the
//! runtime's other tasks (the API, the intake, acknowledgements) never
//! wait behind more than the slots' current turns.
//!
//! [`CpuScheduler::run`] also times each poll of the call on its thread's
//! CPU clock ([`CallClock`]), for the charge of its CPU time to its fuel.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::cpu_time::CallClock;

/// Whose calls share one turn: the owning tenant, none for the platform's
/// plugins.
pub type TurnOwner = Option<Arc<str>>;

/// Hands out running slots; see the module docs.
#[derive(Debug)]
pub struct CpuScheduler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Owners with queued calls, in the order they are served next; each
    /// with its calls' tickets and wakers in arrival order.
    waiting: VecDeque<(TurnOwner, VecDeque<(u64, Waker)>)>,
    /// Tickets handed a slot that have not resumed yet.
    granted: Vec<u64>,
    next_ticket: u64,
}

impl CpuScheduler {
    /// A scheduler letting `slots` calls run at once (at least one).
    pub fn new(slots: usize) -> Self {
        CpuScheduler {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: VecDeque::new(),
                granted: Vec::new(),
                next_ticket: 0,
            }),
        }
    }

    /// Runs `call` for `owner`, polling it only while it holds a slot,
    /// each poll timed by `clock`.
    pub async fn run<F: Future>(&self, owner: TurnOwner, clock: &CallClock, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        let mut turn = Turn { scheduler: self, owner, holding: Holding::Nothing };
        std::future::poll_fn(|cx| {
            if !turn.take_slot(cx) {
                return Poll::Pending;
            }
            clock.poll_begins();
            let polled = call.as_mut().poll(cx);
            clock.poll_ends();
            if polled.is_pending() {
                turn.give_back();
            }
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
    /// Hands free slots to queued calls, one owner after another; returns
    /// their wakers, to be woken once the lock is released (a waker may
    /// run code that takes it again).
    fn grant(&mut self) -> Vec<Waker> {
        let mut woken = Vec::new();
        while self.free > 0 {
            let Some((owner, mut calls)) = self.waiting.pop_front() else { break };
            if let Some((ticket, waker)) = calls.pop_front() {
                self.free -= 1;
                self.granted.push(ticket);
                woken.push(waker);
            }
            if !calls.is_empty() {
                self.waiting.push_back((owner, calls));
            }
        }
        woken
    }

    fn queue(&mut self, owner: &TurnOwner, ticket: u64, waker: Waker) {
        match self.waiting.iter_mut().find(|(queued, _)| queued == owner) {
            Some((_, calls)) => calls.push_back((ticket, waker)),
            None => self.waiting.push_back((owner.clone(), VecDeque::from([(ticket, waker)]))),
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
                if state.free > 0 && state.waiting.is_empty() {
                    state.free -= 1;
                    self.holding = Holding::Slot;
                    return true;
                }
                let ticket = state.next_ticket;
                state.next_ticket = ticket.wrapping_add(1);
                state.queue(&self.owner, ticket, cx.waker().clone());
                self.holding = Holding::Queued(ticket);
            }
        }
        false
    }

    /// Gives back the slot or the place in the queue.
    fn give_back(&mut self) {
        let holding = std::mem::replace(&mut self.holding, Holding::Nothing);
        let mut state = self.scheduler.lock();
        let freed = match holding {
            Holding::Nothing => false,
            Holding::Slot => true,
            // Granted but never resumed: the slot was reserved for it.
            Holding::Queued(ticket) => !state.unqueue(ticket) && state.take_grant(ticket),
        };
        if freed {
            state.free += 1;
            let woken = state.grant();
            drop(state);
            woken.into_iter().for_each(Waker::wake);
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.give_back();
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
    fn queued_owners_are_served_in_turn_not_in_arrival_order() {
        let scheduler = CpuScheduler::new(1);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let cx = Context::from_waker(&waker);
        let mut running = Turn { scheduler: &scheduler, owner: owner("a"), holding: Holding::Nothing };
        assert!(running.take_slot(&cx), "a free slot is taken at once");
        let mut turns: Vec<Turn<'_>> = ["a", "a", "a", "b"]
            .into_iter()
            .map(|name| Turn { scheduler: &scheduler, owner: owner(name), holding: Holding::Nothing })
            .collect();
        for turn in &mut turns {
            assert!(!turn.take_slot(&cx), "no slot is free: the call queues");
        }
        // a's running call yields and queues again behind its own calls.
        running.give_back();
        assert!(!running.take_slot(&cx));
        assert!(turns[0].take_slot(&cx), "a's first queued call goes first");
        assert!(!turns[3].take_slot(&cx));
        turns[0].give_back();
        assert!(turns[3].take_slot(&cx), "then b, before a's other calls");
        assert!(!turns[1].take_slot(&cx));
        turns[3].give_back();
        assert!(turns[1].take_slot(&cx), "then a again");
        assert_eq!(counter.0.load(Ordering::Relaxed), 3, "each grant woke its call");
    }

    #[test]
    fn a_cancelled_call_gives_back_its_slot_its_grant_and_its_place() {
        let scheduler = CpuScheduler::new(1);
        let waker = Waker::noop();
        let cx = Context::from_waker(waker);
        let mut first = Turn { scheduler: &scheduler, owner: owner("a"), holding: Holding::Nothing };
        assert!(first.take_slot(&cx));
        let mut granted = Turn { scheduler: &scheduler, owner: owner("b"), holding: Holding::Nothing };
        let mut queued = Turn { scheduler: &scheduler, owner: owner("c"), holding: Holding::Nothing };
        assert!(!granted.take_slot(&cx));
        assert!(!queued.take_slot(&cx));
        drop(first);
        drop(granted);
        assert!(queued.take_slot(&cx), "the grant of a dropped call passes on");
        drop(queued);
        let state = scheduler.lock();
        assert_eq!((state.free, state.waiting.len(), state.granted.len()), (1, 0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_suspended_call_frees_its_slot_and_costs_no_cpu_time() {
        let scheduler = CpuScheduler::new(1);
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
