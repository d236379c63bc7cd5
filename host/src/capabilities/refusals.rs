//! The operator's log of what the egress policy refused: at most one
//! WARN line per plugin a minute, saying how many refusals it stands for.
//!
//! A refusal is instant, so a plugin can ask for thousands a minute
//! (`http_requests` per call, calls and dry runs within their rates); one
//! line each would let a tenant flood the operator's log. The first one of
//! each minute is written with its detail, the others are counted into
//! the next line (and written at DEBUG).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a plugin's refusals are written at WARN.
const EVERY: Duration = Duration::from_secs(60);

/// Plugins remembered before those quiet for a minute are forgotten.
const REMEMBERED: usize = 4096;

/// The last WARN line of each plugin, and the refusals since.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    plugins: Mutex<HashMap<Arc<str>, Written>>,
}

#[derive(Debug)]
struct Written {
    at: Instant,
    since: u64,
}

impl RefusalLog {
    /// Whether a refusal of `plugin`'s at `now` gets its WARN line: if so,
    /// how many refusals since the last one were not written.
    pub(crate) fn admit(&self, plugin: &Arc<str>, now: Instant) -> Option<u64> {
        let mut plugins = self.plugins.lock().unwrap_or_else(PoisonError::into_inner);
        if plugins.len() >= REMEMBERED {
            plugins.retain(|_, written| now.saturating_duration_since(written.at) < EVERY);
        }
        match plugins.get_mut(plugin) {
            Some(written) if now.saturating_duration_since(written.at) < EVERY => {
                written.since += 1;
                None
            }
            Some(written) => Some(std::mem::replace(written, Written { at: now, since: 0 }).since),
            None => {
                plugins.insert(Arc::clone(plugin), Written { at: now, since: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_minute_per_plugin_counts_the_others() {
        let log = RefusalLog::default();
        let (a, b): (Arc<str>, Arc<str>) = ("acme-x".into(), "globex-y".into());
        let start = Instant::now();
        assert_eq!(log.admit(&a, start), Some(0));
        for second in 1..=10 {
            assert_eq!(log.admit(&a, start + Duration::from_secs(second)), None);
        }
        assert_eq!(log.admit(&b, start), Some(0), "another plugin has its own minute");
        assert_eq!(log.admit(&a, start + EVERY), Some(10));
        assert_eq!(log.admit(&a, start + EVERY), None);
    }
}
