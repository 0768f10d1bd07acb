//! The report: one struct that is both the JSON (`--json FILE`) and the printed table, so
//! the two can never disagree, plus the goals judged against the figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::ceiling::Ceiling;
use crate::latency::Summary;
use crate::processes::Cost;

/// The goals of issues 7 and 15.
pub const GOAL_JOURNEYS_PER_SECOND: f64 = 300.0;
pub const GOAL_HOP_P99_MS: f64 = 50.0;
pub const GOAL_SERVICE_RSS_MIB: f64 = 50.0;
/// Half of what a Spring Boot + Kafka Streams peer spent per record on the real cluster (0.57 ms).
pub const GOAL_SERVICES_MS_PER_RECORD: f64 = 0.285;
/// The system's records/s against a bare producer's and consumer's on the same broker (issue 15).
pub const GOAL_SHARE_OF_CEILING: f64 = 0.06;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub command: String,
    pub system: String,
    pub machine: Machine,
    pub settings: Settings,
    pub journeys: Journeys,
    pub kafka: Option<Kafka>,
    /// Timed on the client: each call, and what the customer sees.
    pub client: Vec<Row>,
    /// Derived from the services' own times: record produced → consumer's effect.
    pub hops: Vec<Row>,
    pub harvest: HarvestNotes,
    pub processes: Vec<Cost>,
    /// Records each consumer group had not yet committed when the window closed.
    pub backlog: BTreeMap<String, Option<i64>>,
    pub token_checks: TokenChecks,
    pub goals: Vec<Goal>,
}

/// What checking tokens costs: every authenticated request is one token check, a signature
/// check the first time a service instance sees a token and a lookup after that.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenChecks {
    /// Checks per journey: the customer's and the courier's calls (create, pay, polls or the stream, two
    /// courier actions) and the services' own (order → payment once, notification → mobile 7 times).
    pub per_journey: f64,
    /// Of those, first sights of a token: the journey's customer is new, so at most the order
    /// replicas and the payment replica it calls check its signature; every other token
    /// (the courier's, the services') is one that instance has checked before.
    pub first_per_journey: f64,
    /// One check, timed by this process on this machine before the load: a token's first and
    /// a repeated one.
    pub micros_first: f64,
    pub micros_again: f64,
    pub cpu_ms_per_journey: f64,
    /// Of the services' CPU per journey in the window (the bench and the broker left out).
    pub share_of_services_cpu: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpus: usize,
    /// 1-minute load average before the system started and after the window: other work
    /// on the machine shows here.
    pub load_before: f64,
    pub load_after: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub customers: usize,
    pub warmup_seconds: f64,
    pub window_seconds: f64,
    /// Journeys started per second when paced (`--rate`); null when each customer goes flat out.
    pub rate: Option<f64>,
    /// How customers follow their orders: `stream` or `poll`.
    pub follow: crate::args::Follow,
    pub poll_interval_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Journeys {
    /// Journeys that completed inside the measured window.
    pub completed_in_window: u64,
    pub per_second: f64,
    /// Journeys started in the window and completed (latency samples come from these).
    pub measured: u64,
    pub failed: u64,
    pub failures: Vec<String>,
    /// `GET /orders/{id}` calls per second by the waiting customers: load the bench adds.
    pub polls_per_second: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kafka {
    /// High-watermark growth of the 11 topics over the window.
    pub records: i64,
    pub records_per_second: f64,
    pub records_per_journey: f64,
    pub by_topic: BTreeMap<String, i64>,
    pub ceiling: Option<Ceiling>,
    /// Why the ceiling is missing, when it could not be measured.
    pub ceiling_error: Option<String>,
    /// The system's records per second over the broker's own ceiling.
    pub ratio_to_ceiling: Option<f64>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HarvestNotes {
    pub orders: usize,
    pub incomplete_orders: usize,
    pub negative_hops: u64,
    pub seconds: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub status: &'static str,
}

impl Report {
    /// Judges the goals from the figures.
    pub fn judge(&mut self) {
        let mut goals = Vec::new();
        let per_second = self.journeys.per_second;
        goals.push(Goal {
            goal: format!("≥ {GOAL_JOURNEYS_PER_SECOND} journeys/s"),
            measured: format!("{per_second:.1} journeys/s"),
            status: status(per_second >= GOAL_JOURNEYS_PER_SECOND),
        });
        let worst = self.hops.iter().max_by(|a, b| a.summary.p99_ms.total_cmp(&b.summary.p99_ms));
        let load = match self.settings.rate {
            Some(rate) => format!("paced at {rate} journeys/s"),
            None => "at full load (unpaced); the goal is for half the max: rerun with --rate".to_owned(),
        };
        goals.push(Goal {
            goal: format!("p99 of every hop < {GOAL_HOP_P99_MS} ms at half the max throughput"),
            measured: match worst {
                Some(row) => format!("worst p99 {:.1} ms ({}), {load}", row.summary.p99_ms, row.name),
                None => "no hop measured".to_owned(),
            },
            status: match worst {
                Some(row) => status(row.summary.p99_ms < GOAL_HOP_P99_MS),
                None => "unknown",
            },
        });
        let services: Vec<&Cost> = self.processes.iter().filter(|p| p.is_service()).collect();
        let services_cpu: f64 = services.iter().map(|p| p.cpu_seconds).sum();
        let kafka = self.kafka.as_ref().filter(|k| k.records > 0);
        let per_record = kafka.map(|k| (services_cpu * 1000.0 / k.records as f64, k.records));
        goals.push(Goal {
            goal: format!("the services' CPU per Kafka record ≤ {GOAL_SERVICES_MS_PER_RECORD} ms"),
            measured: match per_record {
                Some((ms, records)) => format!("{ms:.3} ms ({records} records)"),
                None => "no Kafka records counted".to_owned(),
            },
            status: match per_record {
                Some((ms, _)) => status(ms <= GOAL_SERVICES_MS_PER_RECORD),
                None => "unknown",
            },
        });
        let ratio = kafka.and_then(|k| k.ratio_to_ceiling);
        goals.push(Goal {
            goal: format!("records/s ≥ {:.0} % of the broker's ceiling", GOAL_SHARE_OF_CEILING * 100.0),
            measured: match ratio {
                Some(ratio) => format!("{:.1} %", ratio * 100.0),
                None => "ceiling not measured".to_owned(),
            },
            status: match ratio {
                Some(ratio) => status(ratio >= GOAL_SHARE_OF_CEILING),
                None => "unknown",
            },
        });
        let (measured, verdict) = self.keeping_up();
        let goal = "every consumer group keeps up: backlog < 1 s of its records".to_owned();
        goals.push(Goal { goal, measured, status: verdict });
        let heaviest = services.iter().max_by(|a, b| a.peak_rss_mib.total_cmp(&b.peak_rss_mib));
        goals.push(Goal {
            goal: format!("each service < {GOAL_SERVICE_RSS_MIB} MiB resident (peak)"),
            measured: match heaviest {
                Some(p) => format!("largest peak {:.1} MiB ({})", p.peak_rss_mib, p.name),
                None => "no service process seen".to_owned(),
            },
            status: match heaviest {
                Some(p) => status(p.peak_rss_mib < GOAL_SERVICE_RSS_MIB),
                None => "unknown",
            },
        });
        self.goals = goals;
    }

    /// Whether every group's backlog at the window's end is under one second of the records
    /// of its topics (as they grew over the window): the group furthest behind, and the verdict.
    fn keeping_up(&self) -> (String, &'static str) {
        let seconds = self.settings.window_seconds;
        let Some(kafka) = self.kafka.as_ref().filter(|k| k.records > 0 && seconds > 0.0) else {
            return ("no Kafka records counted".to_owned(), "unknown");
        };
        if self.backlog.is_empty() {
            return ("no backlog read".to_owned(), "unknown");
        }
        let mut furthest: Option<(&str, i64, f64)> = None;
        for (group, lag) in &self.backlog {
            let Some(lag) = *lag else { return (format!("{group}'s backlog unknown"), "unknown") };
            let records: i64 = shop_events::group::topics(group)
                .iter()
                .map(|topic| kafka.by_topic.get(topic.name()).copied().unwrap_or(0))
                .sum();
            let per_second = records as f64 / seconds;
            let behind = if lag == 0 { 0.0 } else { lag as f64 / per_second };
            if furthest.is_none_or(|(_, _, most)| behind > most) {
                furthest = Some((group, lag, behind));
            }
        }
        let (group, lag, behind) = furthest.expect("a backlog was read");
        (format!("furthest behind: {group}, {lag} records ({behind:.2} s of its records)"), status(behind < 1.0))
    }

    /// The report as the terminal shows it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(out, "\nShop bench: {}", self.system);
        let _ = writeln!(
            out,
            "{} customers, {:.0} s warm-up, {:.1} s measured window, {}, {}; {} CPUs, load {:.2} → {:.2}",
            s.customers,
            s.warmup_seconds,
            s.window_seconds,
            s.rate.map_or("unpaced".to_owned(), |r| format!("paced at {r} journeys/s")),
            match s.follow {
                crate::args::Follow::Stream => "following each order's event stream".to_owned(),
                crate::args::Follow::Poll => format!("polling each order every {} ms", s.poll_interval_ms),
            },
            self.machine.cpus,
            self.machine.load_before,
            self.machine.load_after,
        );
        let j = &self.journeys;
        let _ = writeln!(
            out,
            "\nJourneys: {:.1}/s ({} completed in the window, {} measured, {} failed); {:.0} polls/s",
            j.per_second, j.completed_in_window, j.measured, j.failed, j.polls_per_second
        );
        for failure in &j.failures {
            let _ = writeln!(out, "  failed: {failure}");
        }
        if let Some(k) = &self.kafka {
            let _ = writeln!(
                out,
                "Kafka: {:.0} records/s through the 11 topics ({} records, {:.1} per journey)",
                k.records_per_second, k.records, k.records_per_journey
            );
            if let Some(error) = &k.ceiling_error {
                let _ = writeln!(out, "Broker ceiling: not measured ({error})");
            }
            if let Some(c) = &k.ceiling {
                let _ = writeln!(
                    out,
                    "Broker ceiling: {:.0} records/s ({}-byte records, {} partitions, RF {}: produced {:.0}/s, consumed {:.0}/s); the system uses {:.1}% of it",
                    c.records_per_second,
                    c.record_bytes,
                    c.partitions,
                    c.replication_factor,
                    c.produced_per_second,
                    c.consumed_per_second,
                    k.ratio_to_ceiling.unwrap_or_default() * 100.0
                );
                if let Some(f) = &c.hop_floor {
                    let _ = writeln!(
                        out,
                        "Broker hop floor (one record at a time, send → received): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        f.p50_ms, f.p99_ms, f.max_ms
                    );
                }
            }
        }
        out.push_str(&latency_table("Client-side latency", &self.client));
        out.push_str(&latency_table(
            "Event hops (record produced → consumer's effect), from the services' times",
            &self.hops,
        ));
        let h = &self.harvest;
        let partial: Vec<String> = self
            .hops
            .iter()
            .filter(|row| (row.summary.count as usize) < h.orders)
            .map(|row| format!("{} ({} of {})", row.name, row.summary.count, h.orders))
            .collect();
        if !partial.is_empty() {
            let _ = writeln!(
                out,
                "  partial, so a lower bound (the effect had not happened for every order when the wait ended): {}",
                partial.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "  ({} orders read in {:.1} s after the window; {} still lacked an audit record, push or mail; {} negative hops)",
            h.orders, h.seconds, h.incomplete_orders, h.negative_hops
        );
        if !self.backlog.is_empty() {
            let groups: Vec<String> = self
                .backlog
                .iter()
                .map(|(group, lag)| format!("{group} {}", lag.map_or("?".to_owned(), |l| l.to_string())))
                .collect();
            let _ = writeln!(out, "\nConsumer backlog when the window closed (records): {}", groups.join(", "));
        }
        let records = self.kafka.as_ref().map(|k| k.records);
        out.push_str(&process_table(&self.processes, s.window_seconds, j.completed_in_window, records));
        let t = &self.token_checks;
        let _ = writeln!(
            out,
            "\nToken checks: {:.1} per journey ({:.0} first sights × {:.1} µs, the rest × {:.2} µs) = {:.3} ms of CPU per journey, {:.2} % of the services' CPU per journey",
            t.per_journey,
            t.first_per_journey,
            t.micros_first,
            t.micros_again,
            t.cpu_ms_per_journey,
            t.share_of_services_cpu * 100.0
        );
        let _ = writeln!(out, "\nGoals");
        for goal in &self.goals {
            let _ = writeln!(out, "  {:<8} {}: {}", goal.status, goal.goal, goal.measured);
        }
        out
    }
}

fn status(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

/// A percentile table: one row per distribution, milliseconds.
pub fn latency_table(title: &str, rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).max(4);
    let mut out = format!("\n{title}\n");
    let _ = writeln!(
        out,
        "  {:<width$} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for row in rows {
        let s = &row.summary;
        let _ = writeln!(
            out,
            "  {:<width$} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            row.name, s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
        );
    }
    out
}

/// CPU and memory of each process, with its CPU per journey completed in the window and per
/// Kafka record stored in it; then the services together (not the bench, not `shop up`) and
/// everything.
fn process_table(processes: &[Cost], seconds: f64, journeys: u64, records: Option<i64>) -> String {
    let width = processes.iter().map(|p| p.name.chars().count()).max().unwrap_or(0).max(8);
    let per = |cpu_seconds: f64, count: f64| {
        if count > 0.0 {
            format!("{:.3}", cpu_seconds * 1000.0 / count)
        } else {
            "-".to_owned()
        }
    };
    let (journeys, records) = (journeys as f64, records.unwrap_or(0) as f64);
    let mut out = format!(
        "\nProcesses (CPU over the {seconds:.1} s window, and per journey completed and per Kafka record stored in it; memory at its end, of it mapped files: mostly its binary's code)\n"
    );
    let _ = writeln!(
        out,
        "  {:<width$} {:>8} {:>8} {:>10} {:>11} {:>10} {:>8} {:>9} {:>9}",
        "", "pid", "CPU s", "% of core", "ms/journey", "ms/record", "RSS MiB", "peak MiB", "files MiB"
    );
    for p in processes {
        let _ = writeln!(
            out,
            "  {:<width$} {:>8} {:>8.2} {:>10.1} {:>11} {:>10} {:>8.1} {:>9.1} {:>9.1}{}",
            p.name,
            p.pid,
            p.cpu_seconds,
            p.cpu_percent_of_one_core,
            per(p.cpu_seconds, journeys),
            per(p.cpu_seconds, records),
            p.rss_mib,
            p.peak_rss_mib,
            p.file_rss_mib,
            if p.restarted { "  (restarted)" } else { "" }
        );
    }
    let services: f64 = processes.iter().filter(|p| p.is_service()).map(|p| p.cpu_seconds).sum();
    let total: f64 = processes.iter().map(|p| p.cpu_seconds).sum();
    for (name, cpu) in [("services", services), ("total", total)] {
        let _ = writeln!(
            out,
            "  {:<width$} {:>8} {:>8.2} {:>10.1} {:>11} {:>10}",
            name,
            "",
            cpu,
            cpu / seconds.max(1e-9) * 100.0,
            per(cpu, journeys),
            per(cpu, records)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, p99_ms: f64) -> Row {
        Row { name: name.to_owned(), summary: Summary { count: 10, p50_ms: 1.5, p95_ms: 2.25, p99_ms, max_ms: 12.0 } }
    }

    fn report() -> Report {
        Report {
            command: "shop bench --journeys 2".to_owned(),
            system: "test".to_owned(),
            machine: Machine { cpus: 2, load_before: 0.5, load_after: 1.5 },
            settings: Settings {
                customers: 2,
                warmup_seconds: 0.0,
                window_seconds: 2.0,
                rate: None,
                follow: crate::args::Follow::Poll,
                poll_interval_ms: 10.0,
            },
            journeys: Journeys {
                completed_in_window: 2,
                per_second: 1.0,
                measured: 2,
                failed: 0,
                failures: vec![],
                polls_per_second: 20.0,
            },
            kafka: Some(Kafka {
                records: 40,
                records_per_second: 20.0,
                records_per_journey: 20.0,
                by_topic: BTreeMap::from([("orders-created".to_owned(), 2)]),
                ceiling: None,
                ceiling_error: None,
                ratio_to_ceiling: None,
            }),
            client: vec![row("POST /orders", 3.0)],
            hops: vec![row("payments-made → order readyToShip", 20.0), row("orders-created → email", 75.0)],
            harvest: HarvestNotes { orders: 2, incomplete_orders: 0, negative_hops: 0, seconds: 0.1 },
            processes: vec![Cost {
                name: "order-1".to_owned(),
                pid: 42,
                cpu_seconds: 1.0,
                cpu_percent_of_one_core: 50.0,
                rss_mib: 20.0,
                peak_rss_mib: 22.5,
                file_rss_mib: 14.0,
                restarted: false,
            }],
            backlog: BTreeMap::from([("notification-email".to_owned(), Some(1200))]),
            token_checks: TokenChecks {
                per_journey: 20.0,
                first_per_journey: 3.0,
                micros_first: 40.0,
                micros_again: 1.0,
                cpu_ms_per_journey: 0.137,
                share_of_services_cpu: 0.05,
            },
            goals: vec![],
        }
    }

    #[test]
    fn the_percentile_table_lines_up_its_columns() {
        let table = latency_table("Hops", &[row("a → b", 3.0), row("longer name", 40.5)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[1], "Hops");
        assert_eq!(lines[2], "                count    p50 ms    p95 ms    p99 ms    max ms");
        assert_eq!(lines[3], "  a → b            10      1.50      2.25      3.00     12.00");
        assert_eq!(lines[4], "  longer name      10      1.50      2.25     40.50     12.00");
    }

    #[test]
    fn the_json_report_has_the_figures_under_stable_names() {
        let mut report = report();
        report.judge();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["journeys"]["perSecond"], 1.0);
        assert_eq!(json["kafka"]["recordsPerSecond"], 20.0);
        assert_eq!(json["kafka"]["byTopic"]["orders-created"], 2);
        assert_eq!(json["client"][0]["name"], "POST /orders");
        assert_eq!(json["client"][0]["p99Ms"], 3.0);
        for field in ["count", "p50Ms", "p95Ms", "p99Ms", "maxMs"] {
            assert!(json["hops"][0][field].is_number(), "{field}");
        }
        assert_eq!(json["processes"][0]["peakRssMib"], 22.5);
        assert_eq!(json["processes"][0]["cpuPercentOfOneCore"], 50.0);
        let statuses: Vec<&str> =
            json["goals"].as_array().unwrap().iter().map(|g| g["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["not met", "not met", "not met", "unknown", "not met", "met"]);
        assert!(json["goals"][1]["measured"].as_str().unwrap().contains("orders-created → email"));
        // One CPU second of the services over 40 records; no ceiling measured.
        assert_eq!(json["goals"][2]["measured"], "25.000 ms (40 records)");
        assert_eq!(json["goals"][3]["measured"], "ceiling not measured");
        // notification-email 1200 records behind; its topics (the seven stages) grew by 2
        // records (orders-created) over the 2 s window: 1 a second.
        assert_eq!(
            json["goals"][4]["measured"],
            "furthest behind: notification-email, 1200 records (1200.00 s of its records)"
        );
        // Caught up, and a group whose topics grew by 2 a second, 1 behind: half a second.
        let mut report = super::tests::report();
        report.backlog =
            BTreeMap::from([("notification-email".to_owned(), Some(0)), ("logging-service".to_owned(), Some(1))]);
        report.kafka.as_mut().unwrap().by_topic.insert("logging-events".to_owned(), 4);
        assert_eq!(
            report.keeping_up(),
            ("furthest behind: logging-service, 1 records (0.50 s of its records)".to_owned(), "met")
        );
        report.backlog.insert("order-service".to_owned(), None);
        assert_eq!(report.keeping_up().1, "unknown", "a backlog that could not be read");
    }

    #[test]
    fn the_printed_report_shows_every_section() {
        let mut report = report();
        report.judge();
        let table = report.table();
        for expected in [
            "Journeys: 1.0/s",
            "Kafka: 20 records/s",
            "Client-side latency",
            "Event hops",
            "notification-email 1200",
            "order-1",
            "Goals",
        ] {
            assert!(table.contains(expected), "{expected} missing from:\n{table}");
        }
        // order-1's second over 2 journeys and 40 records, as the services' too.
        let order = table.lines().find(|line| line.trim_start().starts_with("order-1")).unwrap();
        assert!(order.contains(" 500.000 ") && order.contains(" 25.000 "), "{order}");
        let services = table.lines().find(|line| line.trim_start().starts_with("services")).unwrap();
        assert!(services.contains(" 500.000 ") && services.contains(" 25.000"), "{services}");
    }
}
