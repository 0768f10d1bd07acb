//! `shop up` runs each service process on one CPU of those it may use, spreading the
//! services' usual load evenly over them. The services are small and many (nine processes,
//! each with its runtime, its Kafka clients' threads and its SQLite thread), and most of their
//! work is handing a message from one of their threads to another. Confined to one CPU, a
//! process wakes its own threads without interrupting the other CPU. Measured with `shop bench`
//! on two CPUs when it came (2026-12-04), that was about half again as many journeys per second
//! for the same work; since the services handle records in batches, full load is the same either
//! way, and at half load a record costs the services a little less pinned (docs/performance.md,
//! "Three more looks at the embedded share"). `--no-cpu-pinning` leaves the placement to the
//! kernel.

/// The CPUs this process may run on, in order; empty where that cannot be known or set.
#[cfg(target_os = "linux")]
pub fn allowed() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect(),
        Err(error) => {
            tracing::warn!(%error, "Cannot read which CPUs this process may use; services are not pinned");
            Vec::new()
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn allowed() -> Vec<usize> {
    Vec::new()
}

/// Set by `shop up` on a service process: the CPU it is to run on (`pin_from_env`).
pub const CPU_ENV: &str = "SHOP_CPU";

/// Called first in `main`, while the process has one thread: if `shop up` named a CPU, runs
/// this thread there, and so every thread started after it.
#[cfg(target_os = "linux")]
pub fn pin_from_env() {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Some(value) = std::env::var_os(CPU_ENV) else { return };
    let pinned = value
        .to_str()
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| format!("{value:?} is no CPU number"))
        .and_then(|cpu| {
            let mut set = CpuSet::new();
            set.set(cpu).map_err(|e| e.to_string())?;
            sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| e.to_string())
        });
    if let Err(error) = pinned {
        // Logging is not set up yet; the process runs on, wherever the kernel puts it.
        eprintln!("{CPU_ENV}: cannot run on that CPU: {error}");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pin_from_env() {}

/// How much CPU a service takes at full load, relatively: its CPU seconds per 30 s window in
/// `shop bench` (docs/performance.md), times ten. What the placement balances; the replicas of
/// a service count once each.
pub fn weight(service: &str) -> u32 {
    match service {
        "notification" => 80,
        "order" => 63,
        "delivery" => 47,
        "email" => 46,
        "mobile" => 39,
        "logging" => 27,
        "payment" => 20,
        _ => 40,
    }
}

/// The CPU of each process of the given `weights`: the heaviest first, each to the CPU with
/// the least weight so far (the first such in `cpus`). None when there are fewer than two CPUs
/// (one CPU is shared by everything anyway).
pub fn assign(cpus: &[usize], weights: &[u32]) -> Vec<Option<usize>> {
    if cpus.len() < 2 {
        return vec![None; weights.len()];
    }
    let mut load = vec![0_u32; cpus.len()];
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
    let mut assigned = vec![None; weights.len()];
    for i in order {
        let least = (0..cpus.len()).min_by_key(|&c| load[c]).expect("two CPUs or more");
        load[least] += weights[i];
        assigned[i] = Some(cpus[least]);
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::assign;

    #[test]
    fn the_heaviest_go_first_each_to_the_least_loaded_cpu() {
        // 8 → 0; 6 → 1; 6 → 1 (6 < 8); 5 → 0 (8 < 12); 1 → 1 (12 < 13).
        assert_eq!(assign(&[0, 1], &[5, 8, 6, 1, 6]), [Some(0), Some(0), Some(1), Some(1), Some(1)]);
        assert_eq!(assign(&[2, 5, 7], &[1, 1, 1, 1]), [Some(2), Some(5), Some(7), Some(2)]);
    }

    #[test]
    fn one_cpu_or_none_pins_nothing() {
        assert_eq!(assign(&[3], &[1, 2, 3]), [None, None, None]);
        assert_eq!(assign(&[], &[1, 2]), [None, None]);
    }
}
