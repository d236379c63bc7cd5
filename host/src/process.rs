//! Settings of the whole process, made first thing in `main` (and in the
//! benchmarks, so that they measure what the service runs).

/// Opts the process out of transparent huge pages. mimalloc asks for them
/// on its arenas (`MADV_HUGEPAGE`, honoured in the kernel's default
/// `madvise` mode), so the first touch of each 2 MiB of heap zeroes all
/// of it inside a delivery: 3–10 % of tocsin's CPU in a burst of 5,000
/// alarms after start-up, 1 % without (docs/performance.md, "Why no
/// transparent huge pages").
/// The flag is the process's (every thread, whatever the machine's THP
/// setting: mimalloc's own `no_thp` switch would only skip its `madvise`),
/// and child processes inherit it. Call it before the heap grows: pages
/// already faulted in stay as they are.
///
/// # Errors
/// The kernel refused (a seccomp filter, a kernel without the call).
#[cfg(target_os = "linux")]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

/// Elsewhere there is nothing to opt out of.
///
/// # Errors
/// Never.
#[cfg(not(target_os = "linux"))]
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    Ok(())
}
