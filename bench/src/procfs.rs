//! What the kernel counts for a process tree: CPU time and peak resident
//! memory, read from `/proc`, so each program is charged for its own
//! processes only (aodh-notifier's master and workers; `tocsin serve`; the
//! broker; this benchmark).

use std::path::Path;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`
/// (`USER_HZ`, 100 on Linux for every architecture tocsin runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU seconds `pid` has used, its exited threads and
/// the children it has waited for included; 0 for a process that is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Some(fields) = stat_fields(pid) else { return 0.0 };
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13)
    // cstime(14).
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (11..=14).map(ticks).sum::<u64>() as f64 / TICKS_PER_SECOND
}

/// Every process now.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
}

/// `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> =
        pids().filter_map(|child| Some((child, stat_fields(child)?.get(1)?.parse().ok()?))).collect();
    let mut found = vec![pid];
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(child, _)| *child));
        next += 1;
    }
    found
}

/// The processes whose command is `name` (`beam.smp` for RabbitMQ).
pub fn named(name: &str) -> Vec<u32> {
    pids()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// CPU seconds of all of `pids`.
pub fn total_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_seconds(*pid)).sum()
}

/// Sum of the peak resident set (`VmHWM`) of `pids`, in bytes: start-up
/// included, and pages a forked worker shares with its parent counted in
/// both.
pub fn peak_rss_bytes(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| vm_hwm(&Path::new("/proc").join(pid.to_string()).join("status"))).sum()
}

fn vm_hwm(status: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_with_its_cpu_and_memory() {
        let me = std::process::id();
        let busy = std::time::Instant::now();
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(busy.elapsed());
        }
        assert!(cpu_seconds(me) > 0.0, "50 ms of spinning shows as CPU time");
        assert!(tree(me).contains(&me));
        assert!(peak_rss_bytes(&[me]) > 1 << 20, "a test process holds more than 1 MiB");
        assert_eq!(cpu_seconds(u32::MAX), 0.0, "a process that is gone counts nothing");
    }
}
