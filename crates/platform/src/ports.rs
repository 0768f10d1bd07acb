//! Local ports for systems started on one machine (tests, `shop bench`), chosen so nothing
//! else on the machine takes them before the services bind them.
//!
//! A port the kernel hands out for port 0 comes from its ephemeral range, the same range it
//! takes the local port of every outgoing connection from: between the moment such a port is
//! found free and the moment a service binds it (or binds it again after a restart), a Kafka
//! or HTTP client anywhere on the machine can connect from it, and the service fails with
//! "Address already in use". The ports here are taken below (or above) that range instead, at a
//! random place, checked free, and never handed out twice by one process.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// Where the ports are looked for when the kernel's ephemeral range cannot be read: Linux's
/// default range is 32768–60999.
const EPHEMERAL_DEFAULT: RangeInclusive<u16> = 32768..=60999;

/// The lowest port handed out: well clear of the ports services are known to use.
const LOWEST: u16 = 10_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `N` distinct ports of 127.0.0.1 that nothing listens on now, outside the kernel's ephemeral
/// range, none handed out before by this process.
pub fn unused<const N: usize>() -> io::Result<[u16; N]> {
    let candidates = candidates(ephemeral_range());
    let span = candidates.iter().map(|r| r.len()).sum::<usize>();
    if span == 0 {
        return Err(io::Error::other("no port lies outside the kernel's ephemeral range"));
    }
    let start = RandomState::new().hash_one(std::process::id()) as usize % span;
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    let mut found = Vec::with_capacity(N);
    // Each chosen port stays bound until all N are found, so no two are the same.
    let mut held = Vec::with_capacity(N);
    let all = candidates.iter().flat_map(|r| r.clone());
    for port in all.clone().skip(start).chain(all.take(start)) {
        if found.len() == N {
            break;
        }
        if handed.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
            found.push(port);
        }
    }
    if found.len() < N {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("only {} of {N} unused ports outside the ephemeral range", found.len()),
        ));
    }
    handed.extend(&found);
    Ok(found.try_into().expect("N ports"))
}

/// One unused port; see [`unused`].
pub fn unused_one() -> io::Result<u16> {
    unused::<1>().map(|[port]| port)
}

/// The kernel's ephemeral range, from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some(bounds.next()??..=bounds.next()??)
        })
        .unwrap_or(EPHEMERAL_DEFAULT)
}

/// The ports from [`LOWEST`] up that lie outside `ephemeral`.
fn candidates(ephemeral: RangeInclusive<u16>) -> Vec<RangeInclusive<u16>> {
    let below = LOWEST..=ephemeral.start().saturating_sub(1);
    let above = ephemeral.end().checked_add(1).map(|next| next.max(LOWEST)..=u16::MAX);
    std::iter::once(below).chain(above).filter(|range| !range.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let ephemeral = ephemeral_range();
        let first = unused::<11>().unwrap();
        let second = unused::<11>().unwrap();
        let all: HashSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 22, "ports handed out twice: {first:?} {second:?}");
        for port in all {
            assert!(!ephemeral.contains(&port), "{port} is in the ephemeral range {ephemeral:?}");
            assert!(port >= LOWEST);
            TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{port} is not free: {e}"));
        }
    }

    #[test]
    fn the_candidates_skip_the_ephemeral_range_wherever_it_lies() {
        assert_eq!(candidates(32768..=60999), vec![10_000..=32767, 61000..=u16::MAX]);
        assert_eq!(candidates(1024..=65535), Vec::<RangeInclusive<u16>>::new());
        assert_eq!(candidates(1024..=40000), vec![40001..=u16::MAX]);
    }
}
