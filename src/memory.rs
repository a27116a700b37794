//! Process memory settings, applied once at start-up by the binary.
//!
//! Transparent huge pages are turned off for the process: the first touch of
//! a fresh 2 MiB region would fault it in whole, stalling whatever the thread
//! holds for tens of milliseconds (docs/PERFORMANCE.md, "No transparent huge
//! pages"). The allocator is built with mimalloc's `no_thp` feature, and
//! [`disable_transparent_huge_pages`] covers systems whose THP setting is
//! `always`.

/// Turns transparent huge pages off for this process and its children
/// (Linux `PR_SET_THP_DISABLE`); elsewhere there is nothing to turn off. If
/// the kernel refuses, the reason comes back and the process runs as before.
pub fn disable_transparent_huge_pages() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_thp_disable(true).map_err(|e| format!("PR_SET_THP_DISABLE: {e}"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// Whether transparent huge pages are off for this process.
pub fn transparent_huge_pages_disabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::get_thp_disable().unwrap_or(false)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_off_once_disabled() {
        disable_transparent_huge_pages().expect("prctl");
        assert!(transparent_huge_pages_disabled());
        // The kernel's own view of this process agrees.
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
