//! The built-in `log` notifier: Aodh's `log://` action.
//!
//! Writes one INFO line per alarm, in exactly the words Aodh's log notifier
//! uses, with the action shown as [`log::shown_action`] shows it.

use tocsin_guest_sdk::log::{self, Level};
use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

/// The `log` notifier.
#[derive(Debug)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(action: String, alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        log::log_with(Level::Info, aodh_line(&action, &alarm), &[]);
        Ok(())
    }
}

export_notifier!(LogNotifier);

/// Aodh's line: `Notifying alarm <name> <id> of <severity> priority from
/// <previous> to <current> with action <action> because <reason>.` Absent
/// fields print as Python's `None`, as Aodh prints them.
pub fn aodh_line(action: &str, alarm: &Alarm) -> String {
    format!(
        "Notifying alarm {} {} of {} priority from {} to {} with action {} because {}.",
        alarm.alarm_name.as_deref().unwrap_or("None"),
        alarm.alarm_id,
        alarm.severity.as_deref().unwrap_or("None"),
        alarm.previous,
        alarm.current,
        log::shown_action(action),
        alarm.reason,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: Option<&str>, severity: Option<&str>) -> Alarm {
        Alarm {
            alarm_id: "0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50".into(),
            alarm_name: name.map(Into::into),
            severity: severity.map(Into::into),
            previous: "ok".into(),
            current: "alarm".into(),
            reason: "Transition to alarm due to 3 samples outside threshold, most recent: 97.0".into(),
            reason_data: None,
        }
    }

    #[test]
    fn line_matches_aodh_word_for_word() {
        assert_eq!(
            aodh_line("log://", &alarm(Some("cpu_high"), Some("critical"))),
            "Notifying alarm cpu_high 0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50 of critical priority \
             from ok to alarm with action log: because Transition to alarm due to 3 samples \
             outside threshold, most recent: 97.0."
        );
    }

    #[test]
    fn juno_alarms_without_name_or_severity_print_none() {
        let line = aodh_line("log://", &alarm(None, None));
        assert!(
            line.starts_with("Notifying alarm None 0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50 of None priority")
        );
    }

    #[test]
    fn credentials_and_paths_never_reach_the_line() {
        let line = aodh_line("log://admin:hunter2@collector/x?token=t0k", &alarm(Some("n"), Some("low")));
        assert!(line.contains("with action log://collector/*** because"), "{line}");
        assert!(!line.contains("hunter2") && !line.contains("t0k"));
    }
}
