//! Settling received messages with the broker: one channel's acks,
//! coalesced.
//!
//! Each handled message is acked, or requeued when its outcomes could not
//! all be handed to the broker. Acking each message on its own costs a
//! frame, a trip through lapin's internal RPC task and a spawned task per
//! message, on tocsin's side and the broker's. Most messages finish in the
//! order they came, so the [`Settler`] acks a run of finished messages at
//! the bottom of the channel's window with one `basic.ack multiple`. A
//! finished message above one still being handled (a slow webhook's
//! neighbour) waits at most [`HELD_ACK_LINGER`] for the gap to close, then
//! is acked on its own: it would otherwise hold a place of the prefetch
//! window that other alarms could use. The run is gathered: it goes once
//! it is a quarter of the window or its first message has waited
//! [`ACK_GATHER`], so that a busy channel sends an ack per dozen messages,
//! not per few (each ack is a frame the broker handles and a wake-up of
//! lapin's I/O thread); a message of a quiet channel is acked 1–2 ms after
//! it finished (the timer's resolution is a millisecond). Requeues are sent
//! on their own, and before any ack that could cover them. When the
//! channel's handlers are all done, whatever is left is settled before the
//! settler ends.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::DeliveryTag;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a finished message above an unfinished one waits to be acked
/// with it before it is acked on its own.
pub(crate) const HELD_ACK_LINGER: Duration = Duration::from_millis(5);
/// Longest a finished run at the bottom of the window waits for more
/// messages to be acked with (shorter than [`HELD_ACK_LINGER`]).
pub(crate) const ACK_GATHER: Duration = Duration::from_millis(1);
/// Most events taken in one round before the acks are sent: a round is
/// bounded even while messages keep arriving.
const MAX_EVENTS_PER_ROUND: usize = 1024;

/// What becomes of a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Every outcome is final: the broker may forget it.
    Ack,
    /// An outcome was not confirmed: the broker delivers it again.
    Requeue,
}

#[derive(Debug)]
enum Event {
    Received(DeliveryTag),
    Settled(DeliveryTag, Settlement),
}

/// How the channel's consumer and handlers tell the settler about its
/// messages. Every handle dropped ends the settler, once it has settled
/// what it was told.
#[derive(Debug, Clone)]
pub(crate) struct SettleHandle {
    // Unbounded, yet holds at most two events per message of the prefetch
    // window: the settler takes them as they come.
    events: mpsc::UnboundedSender<Event>,
}

impl SettleHandle {
    /// A message came (before its handler starts: the settler learns of
    /// the messages in the order the broker numbered them).
    pub fn received(&self, tag: DeliveryTag) {
        // Fails only once the settler has ended, after every handle.
        let _ = self.events.send(Event::Received(tag));
    }

    /// The message's handler is done with it.
    pub fn settle(&self, tag: DeliveryTag, settlement: Settlement) {
        let _ = self.events.send(Event::Settled(tag, settlement));
    }
}

/// Settles one channel's messages; runs until every [`SettleHandle`] is
/// dropped.
#[derive(Debug)]
pub(crate) struct Settler {
    channel: Channel,
    events: mpsc::UnboundedReceiver<Event>,
    window: Window,
}

impl Settler {
    /// A settler for the messages consumed on `channel` with a window of
    /// `prefetch`, and the handle to tell it about them.
    pub fn new(channel: Channel, prefetch: u16) -> (Settler, SettleHandle) {
        let (sender, events) = mpsc::unbounded_channel();
        let window = Window::gathering(usize::from(prefetch / 4).max(1));
        (Settler { channel, events, window }, SettleHandle { events: sender })
    }

    /// Takes events as they come and sends the settlements each round of
    /// them allows; at the end, settles everything it was told of.
    pub async fn run(mut self) {
        loop {
            let linger = self.window.next_due();
            let closed = tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => {
                        self.take_round(event);
                        false
                    }
                    None => true,
                },
                () = sleep_until(linger), if linger.is_some() => false,
            };
            let held = if closed { Duration::ZERO } else { HELD_ACK_LINGER };
            let plan = self.window.take(Instant::now(), held);
            self.send(plan).await;
            if closed {
                return;
            }
        }
    }

    /// `first` and the events queued behind it, up to a round's worth.
    fn take_round(&mut self, first: Event) {
        let now = Instant::now();
        self.window.apply(first, now);
        for _ in 1..MAX_EVENTS_PER_ROUND {
            match self.events.try_recv() {
                Ok(event) => self.window.apply(event, now),
                Err(_) => break,
            }
        }
    }

    /// Sends the plan's settlements in order; the first the channel
    /// refuses (it is closed: the broker redelivers what it did not
    /// settle) ends the round, with one line for all it could not send.
    async fn send(&self, plan: Plan) {
        let frames: Vec<Frame> = plan
            .requeue
            .into_iter()
            .map(Frame::Requeue)
            .chain(plan.through.map(|(tag, multiple)| Frame::Ack { tag, multiple }))
            .chain(plan.single.into_iter().map(|tag| Frame::Ack { tag, multiple: false }))
            .collect();
        for (index, frame) in frames.iter().enumerate() {
            let sent = match *frame {
                Frame::Requeue(tag) => {
                    self.channel.basic_nack(tag, BasicNackOptions { requeue: true, multiple: false }).await
                }
                Frame::Ack { tag, multiple } => {
                    self.channel.basic_ack(tag, BasicAckOptions { multiple }).await
                }
            };
            if let Err(error) = sent {
                tracing::warn!(
                    error = %error, unsent = frames.len() - index,
                    "intake: Cannot settle messages; the broker will redeliver them."
                );
                return;
            }
        }
    }
}

/// One settlement sent to the broker.
enum Frame {
    Requeue(DeliveryTag),
    Ack { tag: DeliveryTag, multiple: bool },
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

/// What one round sends, in this order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Requeued, each on its own.
    requeue: Vec<DeliveryTag>,
    /// Acked with every message below it (`multiple` when there are
    /// others).
    through: Option<(DeliveryTag, bool)>,
    /// Acked each on its own.
    single: Vec<DeliveryTag>,
}

/// The channel's unsettled messages: received and still being handled, or
/// finished and waiting to be acked (since when).
#[derive(Debug)]
struct Window {
    unsettled: BTreeMap<DeliveryTag, Option<Instant>>,
    requeue: Vec<DeliveryTag>,
    /// A finished run at the bottom this long is acked without waiting
    /// [`ACK_GATHER`] (1: every run at once).
    batch: usize,
}

impl Window {
    fn gathering(batch: usize) -> Self {
        Window { unsettled: BTreeMap::new(), requeue: Vec::new(), batch }
    }

    fn apply(&mut self, event: Event, now: Instant) {
        match event {
            Event::Received(tag) => {
                self.unsettled.insert(tag, None);
            }
            Event::Settled(tag, Settlement::Ack) => {
                if let Some(finished) = self.unsettled.get_mut(&tag) {
                    *finished = Some(now);
                }
            }
            Event::Settled(tag, Settlement::Requeue) => {
                if self.unsettled.remove(&tag).is_some() {
                    self.requeue.push(tag);
                }
            }
        }
    }

    /// The finished run at the bottom of the window, once it is a batch or
    /// has waited [`ACK_GATHER`]; the finished messages above a gap that
    /// have waited `held` (the round's [`HELD_ACK_LINGER`]; zero at the
    /// end, for all of them, the run too).
    fn take(&mut self, now: Instant, held: Duration) -> Plan {
        let (length, first) = self.bottom_run();
        let due = held.is_zero()
            || length >= self.batch
            || first.is_some_and(|at| now.duration_since(at) >= ACK_GATHER);
        let through = if due { self.take_bottom_run(length) } else { None };
        // The run left gathering has waited less than `held`: not taken here.
        let waited = |finished: &Option<Instant>| finished.is_some_and(|at| now.duration_since(at) >= held);
        let single: Vec<DeliveryTag> =
            self.unsettled.iter().filter(|(_, finished)| waited(finished)).map(|(&tag, _)| tag).collect();
        self.unsettled.retain(|_, finished| !waited(finished));
        Plan { requeue: std::mem::take(&mut self.requeue), through, single }
    }

    /// Removes the bottom run, its `length` messages as [`Window::bottom_run`]
    /// counted them: the highest of them, and whether there were several.
    fn take_bottom_run(&mut self, length: usize) -> Option<(DeliveryTag, bool)> {
        let (highest, _) = (0..length).filter_map(|_| self.unsettled.pop_first()).last()?;
        Some((highest, length > 1))
    }

    /// How many finished messages lie below the lowest unfinished one, and
    /// when the first of them finished.
    fn bottom_run(&self) -> (usize, Option<Instant>) {
        let run = self.unsettled.values().map_while(|finished| *finished);
        (run.clone().count(), run.min())
    }

    /// When the next round has something to send: the gathering run's
    /// wait ends, or the earliest finished message above a gap has waited
    /// long enough.
    fn next_due(&self) -> Option<Instant> {
        let (length, first) = self.bottom_run();
        let gathered = first.map(|at| at + ACK_GATHER);
        let held = self.unsettled.values().skip(length).flatten().min().map(|&at| at + HELD_ACK_LINGER);
        gathered.into_iter().chain(held).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(received: std::ops::RangeInclusive<DeliveryTag>) -> Window {
        let mut window = Window::gathering(1);
        for tag in received {
            window.apply(Event::Received(tag), Instant::now());
        }
        window
    }

    /// `tags` finished at `at`, in this order.
    fn finish(window: &mut Window, tags: &[DeliveryTag], settlement: Settlement, at: Instant) {
        for &tag in tags {
            window.apply(Event::Settled(tag, settlement), at);
        }
    }

    #[test]
    fn messages_finished_in_order_are_acked_with_one_multiple_ack() {
        let now = Instant::now();
        let mut window = window(1..=5);
        finish(&mut window, &[1, 2, 3, 4], Settlement::Ack, now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan { through: Some((4, true)), ..Plan::default() });
        window.apply(Event::Settled(5, Settlement::Ack), now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan { through: Some((5, false)), ..Plan::default() });
        assert!(window.unsettled.is_empty());
        assert_eq!(window.next_due(), None);
    }

    #[test]
    fn a_message_above_an_unfinished_one_waits_for_the_gap_then_goes_alone() {
        let now = Instant::now();
        let mut window = window(1..=4);
        finish(&mut window, &[2, 3], Settlement::Ack, now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan::default(), "1 is unfinished: 2 and 3 wait");
        assert_eq!(window.next_due(), Some(now + HELD_ACK_LINGER));

        let later = now + HELD_ACK_LINGER;
        assert_eq!(window.take(later, HELD_ACK_LINGER), Plan { single: vec![2, 3], ..Plan::default() });
        finish(&mut window, &[4, 1], Settlement::Ack, later);
        assert_eq!(
            window.take(later, HELD_ACK_LINGER),
            Plan { through: Some((4, true)), ..Plan::default() },
            "the gap closed: one ack through 4 covers 1 and 4 (2 and 3 are acked already)"
        );
    }

    #[test]
    fn a_gap_that_closes_in_time_is_acked_with_what_waited_above_it() {
        let now = Instant::now();
        let mut window = window(1..=3);
        finish(&mut window, &[3, 2], Settlement::Ack, now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan::default());
        window.apply(Event::Settled(1, Settlement::Ack), now + HELD_ACK_LINGER / 2);
        assert_eq!(window.take(now + HELD_ACK_LINGER / 2, HELD_ACK_LINGER).through, Some((3, true)));
    }

    #[test]
    fn a_busy_window_gathers_its_bottom_run_into_batches() {
        let now = Instant::now();
        let mut window = Window::gathering(3);
        for tag in 1..=6 {
            window.apply(Event::Received(tag), now);
        }
        finish(&mut window, &[1, 2], Settlement::Ack, now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan::default(), "2 of a batch of 3: they wait");
        assert_eq!(window.next_due(), Some(now + ACK_GATHER));
        finish(&mut window, &[3], Settlement::Ack, now);
        assert_eq!(window.take(now, HELD_ACK_LINGER), Plan { through: Some((3, true)), ..Plan::default() });
        let later = now + ACK_GATHER / 2;
        finish(&mut window, &[4], Settlement::Ack, later);
        assert_eq!(
            window.take(later + ACK_GATHER / 2, HELD_ACK_LINGER),
            Plan::default(),
            "not waited long enough"
        );
        assert_eq!(
            window.take(later + ACK_GATHER, HELD_ACK_LINGER),
            Plan { through: Some((4, false)), ..Plan::default() },
            "a run short of a batch goes once its first has waited"
        );
        finish(&mut window, &[6], Settlement::Ack, later);
        assert_eq!(window.next_due(), Some(later + HELD_ACK_LINGER), "6 is above the gap at 5");
        finish(&mut window, &[5], Settlement::Ack, later);
        assert_eq!(
            window.take(later, Duration::ZERO),
            Plan { through: Some((6, true)), ..Plan::default() },
            "at the end the run goes at once"
        );
    }

    #[test]
    fn requeues_go_first_and_the_ack_over_them_follows() {
        let now = Instant::now();
        let mut window = window(1..=3);
        finish(&mut window, &[2], Settlement::Requeue, now);
        finish(&mut window, &[1, 3], Settlement::Ack, now);
        assert_eq!(
            window.take(now, HELD_ACK_LINGER),
            Plan { requeue: vec![2], through: Some((3, true)), single: vec![] },
            "the nack of 2 is sent before the multiple ack through 3, which then leaves it alone"
        );
    }

    #[test]
    fn at_the_end_every_finished_message_is_acked_and_none_unfinished() {
        let now = Instant::now();
        let mut window = window(1..=4);
        finish(&mut window, &[2, 4], Settlement::Ack, now);
        assert_eq!(
            window.take(Instant::now(), Duration::ZERO),
            Plan { single: vec![2, 4], ..Plan::default() }
        );
        assert_eq!(window.unsettled.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_settlement_of_an_unknown_message_is_ignored() {
        let mut window = window(1..=1);
        finish(&mut window, &[7], Settlement::Ack, Instant::now());
        finish(&mut window, &[8], Settlement::Requeue, Instant::now());
        assert_eq!(window.take(Instant::now(), Duration::ZERO), Plan::default());
    }

    /// What the broker would make of the plans: every tag it acks or
    /// requeues is one it still counts unacked (a second settlement would
    /// close the channel), a tag is acked only once its handler finished
    /// with `Ack`, requeued only when it asked for that, and what finished
    /// is settled by the end.
    mod against_the_broker {
        use std::collections::{BTreeMap, BTreeSet};

        use proptest::prelude::*;

        use super::*;

        /// Broker side: what it delivered and has not yet had settled,
        /// and how each handler finished.
        #[derive(Default)]
        struct Broker {
            unacked: BTreeSet<DeliveryTag>,
            finished: BTreeMap<DeliveryTag, Settlement>,
        }

        impl Broker {
            fn settle(&mut self, tag: DeliveryTag, as_: Settlement) {
                assert!(self.unacked.remove(&tag), "{tag} settled twice or never delivered");
                assert_eq!(self.finished.get(&tag), Some(&as_), "{tag} settled as its handler did not say");
            }

            fn apply(&mut self, plan: Plan) {
                for tag in plan.requeue {
                    self.settle(tag, Settlement::Requeue);
                }
                if let Some((through, multiple)) = plan.through {
                    let covered: Vec<DeliveryTag> = self.unacked.range(..=through).copied().collect();
                    assert!(multiple || covered == [through], "a single ack of {through} over {covered:?}");
                    for tag in covered {
                        self.settle(tag, Settlement::Ack);
                    }
                }
                for tag in plan.single {
                    self.settle(tag, Settlement::Ack);
                }
            }
        }

        proptest! {
            #[test]
            fn every_plan_settles_each_finished_message_once_and_nothing_else(
                steps in proptest::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<bool>()), 1..200),
                batch in 1usize..6,
            ) {
                let start = Instant::now();
                let (mut window, mut broker, mut next, mut now) =
                    (Window::gathering(batch), Broker::default(), 1, start);
                let mut in_flight: Vec<DeliveryTag> = Vec::new();
                for (step, pick, requeue) in steps {
                    match step {
                        0 => {
                            window.apply(Event::Received(next), now);
                            broker.unacked.insert(next);
                            in_flight.push(next);
                            next += 1;
                        }
                        1 if !in_flight.is_empty() => {
                            let tag = in_flight.swap_remove(pick.index(in_flight.len()));
                            let settlement = if requeue { Settlement::Requeue } else { Settlement::Ack };
                            broker.finished.insert(tag, settlement);
                            window.apply(Event::Settled(tag, settlement), now);
                        }
                        2 => now += HELD_ACK_LINGER / 2,
                        3 => now += ACK_GATHER / 2,
                        _ => {
                            broker.apply(window.take(now, HELD_ACK_LINGER));
                            // The settler sleeps until then: never a time already
                            // past, and never forever while something finished waits.
                            prop_assert!(window.next_due().is_none_or(|due| due > now));
                            let waiting = window.unsettled.values().any(Option::is_some);
                            prop_assert_eq!(window.next_due().is_some(), waiting);
                        }
                    }
                }
                broker.apply(window.take(now, Duration::ZERO));
                let unsettled: BTreeSet<DeliveryTag> = in_flight.into_iter().collect();
                prop_assert_eq!(&broker.unacked, &unsettled, "only the unfinished are left unacked");
            }
        }
    }
}
