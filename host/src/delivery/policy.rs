//! When a failed delivery is tried again: exponential backoff with full
//! jitter, a retry-after hint honoured up to a cap, rounded up to a fixed
//! retry tier; bounded attempts and horizon. Aodh's
//! `rest_notifier_max_retries`, when set, bounds the attempts of `http` and
//! `https` actions instead.

use std::time::Duration;

use tocsin_contract::action;
use tocsin_core::time::millis;

use super::DeliveryConfig;
use crate::capabilities::http::HttpConfig;

/// What happens after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait in tier `tier` (index into the tiers) for `delay`.
    Retry {
        /// Index of the tier queue.
        tier: usize,
        /// That tier's delay.
        delay: Duration,
    },
    /// No more attempts: dead-letter with this reason.
    GiveUp(String),
}

/// The retry policy of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    tiers: Vec<Duration>,
    initial: Duration,
    retry_after_max: Duration,
    max_attempts: u32,
    /// `rest_notifier_max_retries + 1`, for `http`/`https` actions.
    rest_max_attempts: Option<u32>,
    horizon: Duration,
}

impl RetryPolicy {
    /// The policy `delivery` configures (validated: tiers ascending and
    /// non-empty), with `http`'s `rest_notifier_max_retries`.
    pub fn new(delivery: &DeliveryConfig, http: &HttpConfig) -> Self {
        RetryPolicy {
            tiers: delivery.retry_tiers_ms.iter().copied().map(Duration::from_millis).collect(),
            initial: Duration::from_millis(delivery.backoff_initial_ms),
            retry_after_max: Duration::from_millis(delivery.retry_after_max_ms),
            max_attempts: delivery.max_attempts,
            rest_max_attempts: http.rest_notifier_max_retries.map(|retries| retries.saturating_add(1)),
            horizon: Duration::from_millis(delivery.horizon_ms),
        }
    }

    /// The tier delays, shortest first.
    pub fn tiers(&self) -> &[Duration] {
        &self.tiers
    }

    /// Attempts a delivery to `action` gets in all.
    pub(crate) fn max_attempts(&self, action: &str) -> u32 {
        let rest = action::split(action).is_ok_and(|split| split.scheme == "http" || split.scheme == "https");
        match self.rest_max_attempts {
            Some(attempts) if rest => attempts,
            _ => self.max_attempts,
        }
    }

    /// After attempt `attempt` (1-based) to deliver to `action` failed,
    /// `age` after the first attempt began, with the plugin's retry-after
    /// `hint`.
    pub(crate) fn decide(
        &self,
        action: &str,
        attempt: u32,
        age: Duration,
        hint: Option<Duration>,
    ) -> Decision {
        if attempt >= self.max_attempts(action) {
            return Decision::GiveUp(format!("gave up after {attempt} attempts"));
        }
        let longest = self.tiers.last().copied().unwrap_or(self.initial);
        let ceiling = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(longest);
        let jittered = Duration::from_millis(rand::random_range(0..=millis(ceiling)));
        let wanted = jittered.max(hint.map_or(Duration::ZERO, |hint| hint.min(self.retry_after_max)));
        let (tier, delay) = self.tier_for(wanted);
        if age.saturating_add(delay) > self.horizon {
            return Decision::GiveUp(format!(
                "the retry horizon of {} s would pass before the next attempt",
                self.horizon.as_secs()
            ));
        }
        Decision::Retry { tier, delay }
    }

    /// A delivery that found no free slot waits in the first tier, without
    /// counting an attempt, unless that would pass the horizon.
    pub(crate) fn defer(&self, age: Duration) -> Decision {
        let (tier, delay) = self.tier_for(Duration::ZERO);
        if age.saturating_add(delay) > self.horizon {
            return Decision::GiveUp(format!(
                "the retry horizon of {} s passed while its destination stayed busy",
                self.horizon.as_secs()
            ));
        }
        Decision::Retry { tier, delay }
    }

    /// The shortest tier at least `wanted` long (the longest when none is).
    pub(crate) fn tier_for(&self, wanted: Duration) -> (usize, Duration) {
        let index =
            self.tiers.iter().position(|tier| *tier >= wanted).unwrap_or(self.tiers.len().saturating_sub(1));
        (index, self.tiers.get(index).copied().unwrap_or(wanted))
    }
}

/// A tier's queue-name suffix: `1s`, `30s`, `2m`, `1h`, or `1500ms`.
pub(crate) fn tier_label(delay: Duration) -> String {
    let ms = millis(delay);
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&DeliveryConfig::default(), &HttpConfig::default())
    }

    #[test]
    fn delays_round_up_to_a_tier_and_grow_with_attempts() {
        let policy = policy();
        for _ in 0..200 {
            let Decision::Retry { delay, .. } = policy.decide("log://", 1, Duration::ZERO, None) else {
                panic!()
            };
            assert_eq!(delay, Duration::from_secs(1), "first backoff ≤ 1 s rounds up to the 1 s tier");
            let Decision::Retry { delay, .. } = policy.decide("log://", 6, Duration::ZERO, None) else {
                panic!()
            };
            assert!(
                delay <= Duration::from_secs(120),
                "6th backoff ≤ 32 s: at most the 2 min tier, got {delay:?}"
            );
        }
        let tiers: Vec<Duration> = (0..400)
            .filter_map(|_| match policy.decide("log://", 6, Duration::ZERO, None) {
                Decision::Retry { delay, .. } => Some(delay),
                Decision::GiveUp(_) => None,
            })
            .collect();
        assert!(tiers.contains(&Duration::from_secs(30)), "jitter spreads retries over tiers");
        assert_eq!(policy.tier_for(Duration::from_secs(7200)), (5, Duration::from_secs(3600)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = policy();
        let hinted = policy.decide("log://", 1, Duration::ZERO, Some(Duration::from_secs(90)));
        assert_eq!(hinted, Decision::Retry { tier: 3, delay: Duration::from_secs(120) });
        let capped = policy.decide("log://", 1, Duration::ZERO, Some(Duration::from_secs(86_400 * 30)));
        assert_eq!(capped, Decision::Retry { tier: 5, delay: Duration::from_secs(3600) });
    }

    #[test]
    fn attempts_and_horizon_are_bounded() {
        let policy = policy();
        assert!(
            matches!(policy.decide("log://", 10, Duration::ZERO, None), Decision::GiveUp(why) if why.contains("10 attempts"))
        );
        let late = policy.decide("log://", 2, Duration::from_millis(24 * 3_600_000 - 500), None);
        assert!(matches!(late, Decision::GiveUp(why) if why.contains("horizon")));
    }

    #[test]
    fn deferrals_use_the_first_tier_within_the_horizon() {
        let policy = policy();
        assert_eq!(policy.defer(Duration::ZERO), Decision::Retry { tier: 0, delay: Duration::from_secs(1) });
        assert!(
            matches!(policy.defer(Duration::from_secs(24 * 3600)), Decision::GiveUp(why) if why.contains("busy"))
        );
    }

    #[test]
    fn tier_labels() {
        let labels: Vec<String> =
            [1_000, 30_000, 120_000, 3_600_000, 1_500].map(|ms| tier_label(Duration::from_millis(ms))).into();
        assert_eq!(labels, ["1s", "30s", "2m", "1h", "1500ms"]);
    }

    #[test]
    fn rest_notifier_max_retries_bounds_http_actions_only() {
        let http = HttpConfig { rest_notifier_max_retries: Some(2), ..HttpConfig::default() };
        let policy = RetryPolicy::new(&DeliveryConfig::default(), &http);
        assert_eq!(policy.max_attempts("https://hooks.example/x"), 3, "two retries: three attempts");
        assert_eq!(policy.max_attempts("HTTP://hooks.example/x"), 3);
        assert_eq!(policy.max_attempts("log://"), 10, "other actions keep the delivery policy");
        assert!(matches!(policy.decide("http://h/", 2, Duration::ZERO, None), Decision::Retry { .. }));
        let last = policy.decide("http://h/", 3, Duration::ZERO, None);
        assert!(matches!(last, Decision::GiveUp(why) if why.contains("3 attempts")));
        let aodh_default = HttpConfig { rest_notifier_max_retries: Some(0), ..HttpConfig::default() };
        let policy = RetryPolicy::new(&DeliveryConfig::default(), &aodh_default);
        assert!(matches!(policy.decide("http://h/", 1, Duration::ZERO, None), Decision::GiveUp(_)));
        assert_eq!(
            RetryPolicy::new(&DeliveryConfig::default(), &HttpConfig::default()).max_attempts("http://h/"),
            10
        );
    }
}
