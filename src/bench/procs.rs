//! What the processes of a bench cost, read from `/proc`: CPU time (user +
//! system) of a process group (a gateway may fork workers, nginx does),
//! resident memory, and the machine's busy time, to tell whether other
//! processes ran during a measurement.

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`; 100
/// on every Linux the bench runs on when `getconf` is missing).
pub(crate) fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t: &u64| *t > 0)
        .unwrap_or(100)
}

/// The fields after the command name of `/proc/PID/stat` (the name may
/// hold spaces and parentheses, so split after its last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Every process whose process group is `pgid` (the leader included).
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // Field 5 of stat is the process group; index 2 after the name.
            stat_fields(*pid).and_then(|f| f.get(2)?.parse::<u32>().ok()) == Some(pgid)
        })
        .collect()
}

/// CPU ticks (user + system) a process has used so far.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    // utime and stime are fields 14 and 15: indices 11 and 12 after the name.
    stat_fields(pid)
        .map(|f| {
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            n(11) + n(12)
        })
        .unwrap_or(0)
}

/// CPU ticks used by a whole process group so far (processes that exited
/// before the reading are not counted: gateways keep their workers).
pub(crate) fn group_cpu_ticks(pgid: u32) -> u64 {
    group_members(pgid).into_iter().map(cpu_ticks).sum()
}

/// Resident memory of a process group, in KiB.
pub(crate) fn group_rss_kib(pgid: u32) -> u64 {
    group_members(pgid).into_iter().map(rss_kib).sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The machine's busy and total CPU ticks so far (first line of
/// `/proc/stat`).
pub(crate) fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string(Path::new("/proc/stat")).unwrap_or_default();
    let Some(line) = text.lines().next() else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let total: u64 = v.iter().take(8).sum();
    (total.saturating_sub(idle), total)
}

/// The ticks as time.
pub(crate) fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / per_second.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let me = std::process::id();
        assert!(stat_fields(me).is_some_and(|f| f.len() > 20));
        assert!(rss_kib(me) > 0);
        let (busy, total) = machine_ticks();
        assert!(total > 0 && busy <= total);
        assert!(clock_ticks() > 0);
    }
}
