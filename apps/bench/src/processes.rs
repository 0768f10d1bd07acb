//! What each process of the system costs, read from /proc: CPU time (utime + stime) over
//! the measured window and resident memory (VmRSS now, VmHWM the peak, RssFile the part of
//! it that is mapped files: mostly the code of the process's own binary, `shop` or
//! `shop-<service>`).
//! The services are the children of `shop up` named by their `--instance-id`; `shop up`
//! itself hosts the embedded broker (and relays the services' log lines).

use std::collections::BTreeMap;

use serde::Serialize;

/// Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on every Linux the kernel
/// exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub pid: u32,
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub file_rss_kib: u64,
}

/// The processes to watch, by name: the services under `shop up`, `shop up` itself and the
/// bench.
pub fn family(up_pid: Option<u32>, broker_label: &str) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    found.insert("bench (this process)".to_owned(), std::process::id());
    let Some(up_pid) = up_pid else { return found };
    found.insert(broker_label.to_owned(), up_pid);
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        if status_field(&status, "PPid:") != Some(u64::from(up_pid)) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if let Some(instance) = args.windows(2).find(|w| w[0] == "--instance-id").map(|w| w[1].clone()) {
            found.insert(instance, pid);
        }
    }
    found
}

/// Reads one process now; None when it is gone.
pub fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Reading {
        pid,
        cpu_ticks: cpu_ticks(&stat)?,
        rss_kib: status_field(&status, "VmRSS:")?,
        peak_rss_kib: status_field(&status, "VmHWM:")?,
        file_rss_kib: status_field(&status, "RssFile:")?,
    })
}

pub fn read_all(family: &BTreeMap<String, u32>) -> BTreeMap<String, Reading> {
    family.iter().filter_map(|(name, pid)| Some((name.clone(), read(*pid)?))).collect()
}

/// What one process cost over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub name: String,
    pub pid: u32,
    /// CPU seconds (user + system) spent in the window.
    pub cpu_seconds: f64,
    /// The same as a share of one core: 100 = one core busy all the window.
    pub cpu_percent_of_one_core: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// Of `rss_mib`, the pages of mapped files: mostly the code of the process's binary (`shop`
    /// holds every service, the broker and the bench; `shop-<service>` one service).
    pub file_rss_mib: f64,
    /// The process was restarted during the window (another pid at the end).
    pub restarted: bool,
}

impl Cost {
    /// One of the system's services: not the bench, not `shop up` (which hosts the embedded
    /// broker and relays the services' log lines).
    pub fn is_service(&self) -> bool {
        !self.name.starts_with("bench") && !self.name.starts_with("shop up")
    }
}

/// Compares the readings at the start and the end of a window of `seconds`.
pub fn costs(start: &BTreeMap<String, Reading>, end: &BTreeMap<String, Reading>, seconds: f64) -> Vec<Cost> {
    end.iter()
        .map(|(name, last)| {
            let first = start.get(name).filter(|first| first.pid == last.pid);
            let ticks = last.cpu_ticks - first.map_or(0, |f| f.cpu_ticks.min(last.cpu_ticks));
            let cpu_seconds = ticks as f64 / TICKS_PER_SECOND;
            Cost {
                name: name.clone(),
                pid: last.pid,
                cpu_seconds,
                cpu_percent_of_one_core: if seconds > 0.0 { cpu_seconds / seconds * 100.0 } else { 0.0 },
                rss_mib: last.rss_kib as f64 / 1024.0,
                peak_rss_mib: last.peak_rss_kib as f64 / 1024.0,
                file_rss_mib: last.file_rss_kib as f64 / 1024.0,
                restarted: first.is_none(),
            }
        })
        .collect()
}

/// utime + stime: fields 14 and 15 of /proc/<pid>/stat, counted after the command name,
/// which may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The first number of a `Name:  value [kB]` line of /proc/<pid>/status.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces() {
        let stat = "4242 (shop (serve) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read(std::process::id()).expect("/proc/self");
        assert!(me.rss_kib > 0 && me.peak_rss_kib >= me.rss_kib, "{me:?}");
        assert!(me.file_rss_kib > 0 && me.file_rss_kib <= me.rss_kib, "its own code is mapped: {me:?}");
    }

    #[test]
    fn a_restarted_process_is_counted_from_its_start() {
        let reading = |pid, cpu_ticks| Reading {
            pid,
            cpu_ticks,
            rss_kib: 20 * 1024,
            peak_rss_kib: 30 * 1024,
            file_rss_kib: 12 * 1024,
        };
        let start =
            BTreeMap::from([("order-1".to_owned(), reading(10, 500)), ("payment-1".to_owned(), reading(11, 100))]);
        let end = BTreeMap::from([("order-1".to_owned(), reading(10, 700)), ("payment-1".to_owned(), reading(12, 50))]);
        let costs = costs(&start, &end, 4.0);
        assert_eq!(costs[0].cpu_seconds, 2.0);
        assert_eq!(costs[0].cpu_percent_of_one_core, 50.0);
        assert_eq!((costs[0].rss_mib, costs[0].peak_rss_mib, costs[0].file_rss_mib), (20.0, 30.0, 12.0));
        assert!(!costs[0].restarted);
        assert_eq!(costs[1].cpu_seconds, 0.5);
        assert!(costs[1].restarted);
    }
}
