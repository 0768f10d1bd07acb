#!/usr/bin/env python3
"""What Kafka's own command-line tools (Apache Kafka 3.9) and Debian's kcat print against a broker.

Run by .ci/kafka-tools against the embedded broker of `shop up` and by .ci/real-engine against a
real Apache Kafka 3.9 cluster, which is the reference: every check passes there.

    python3 e2e/kafka/cli_conformance.py BOOTSTRAP --lib DIR [--replication N] [-v]

DIR holds the Kafka 3.9 jars, kafka-tools among them (`dev/kafka-cluster fetch` prints it);
N is the replication factor of the topics the suite creates (1 unless given; 3 on
dev/kafka-cluster). Each check runs a tool and reads what it prints, tables by their column
headers. Prints "ok   <what>" or "FAIL <what>" per check, a failed check followed by its
commands and what they printed (-v: every check's), then "N checks, M failed"; exits 1 when a
check failed. Every tool run has 60 s; one that takes longer is killed and its check fails.

The checks, on a topic of 3 partitions with records in partitions 0 and 1 only:
  kcat            -L lists the topic; -P to given partitions; -C -e reads them back; a
                  timestamp lookup (-o s@MS) after every record finds none, one before finds all
  get-offsets     --time -1, -2, a time after every record (no offset printed), -3
  delete-records  an offset JSON file: the low watermark printed, then the new log start
  consumer-groups two balanced kcat consumers (kcat -G): --describe (a row for every assigned
                  partition, the one never committed too), --describe --members, --describe
                  --state, --list --state; once they stop: Empty, --reset-offsets --to-datetime
                  (future, --dry-run) and --to-earliest (--execute), --delete, --list
and on topics of their own:
  topics          --create, --describe, --alter --partitions (adding), --describe
  configs         --alter --add-config retention.ms, --describe, --describe --all (defaults)
  retention       a short retention.ms (and segment.ms) moves the log start past 0 (within
                  90 s of the first records; Kafka needs log.retention.check.interval.ms low,
                  as dev/kafka-cluster sets it)

Topics and the consumer group carry a random suffix, so the suite can run again on the same
broker; it leaves other topics and groups alone. Standard library only.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

TOOL_TIMEOUT = 60  # seconds any one tool run may take; longer is a failure
GROUP_DEADLINE = 45  # seconds for the group to settle (and, later, to empty)
RETENTION_DEADLINE = 90  # seconds from the retention topic's first records

TOOLS = {
    "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand": "kafka-consumer-groups",
    "org.apache.kafka.tools.TopicCommand": "kafka-topics",
    "org.apache.kafka.tools.GetOffsetShell": "kafka-get-offsets",
    "org.apache.kafka.tools.DeleteRecordsCommand": "kafka-delete-records",
    "kafka.admin.ConfigCommand": "kafka-configs",
}
GROUPS, TOPICS, OFFSETS, DELETE_RECORDS, CONFIGS = TOOLS


class Run:
    """One finished tool run: what was run (as a person would type it) and what it printed."""

    def __init__(self, shown, rc, out, err, seconds, timed_out=False):
        self.shown, self.rc, self.out, self.err = shown, rc, out, err
        self.seconds, self.timed_out = seconds, timed_out

    @property
    def ok(self):
        return not self.timed_out and self.rc == 0

    def describe(self):
        lines = ["    $ " + self.shown]
        lines += ["    | " + line for line in self.out.rstrip("\n").splitlines()]
        lines += ["    ! " + line for line in self.err.rstrip("\n").splitlines()]
        if self.timed_out:
            lines.append(f"    (no answer within {TOOL_TIMEOUT} s: killed)")
        else:
            lines.append(f"    (exit {self.rc}, {self.seconds:.1f} s)")
        return "\n".join(lines)


def without_log4j(text):
    return "".join(line for line in text.splitlines(True) if not line.startswith("log4j:WARN"))


def execute(argv, shown, stdin=None, timeout=TOOL_TIMEOUT):
    started = time.monotonic()
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        return Run(shown, p.returncode, without_log4j(p.stdout), without_log4j(p.stderr),
                   time.monotonic() - started)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return without_log4j(b.decode(errors="replace") if isinstance(b, bytes) else (b or ""))
        return Run(shown, None, text(e.stdout), text(e.stderr), time.monotonic() - started, True)


# --- reading what the tools print ------------------------------------------------------------

HEADER_NAME = re.compile(r"\S+(?: \([^)\s]*\))?")  # "COORDINATOR (ID)" is one column
COLUMN = re.compile(r"[A-Z#][A-Z0-9#-]*(?: \([A-Z]+\))?")  # how the tools name columns


def table(text, columns):
    """The rows of the table whose header holds every name in `columns`, as dicts keyed by the
    header's column names. A column's value takes as many words as its name ("COORDINATOR
    (ID)": "localhost:9094  (3)"). kafka-consumer-groups --reset-offsets prints its rows on the
    header's own line, with no line breaks: the words after the header are cut into rows."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        names, spans, rest = [], [], ""
        for m in HEADER_NAME.finditer(line):
            if not COLUMN.fullmatch(m.group()):
                rest = line[m.start():]
                break
            names.append(m.group())
            spans.append(m.span())
        if not names or not all(c in names for c in columns):
            continue
        widths = [len(n.split()) for n in names]
        rows = []
        for row_line in ([rest] if rest.strip() else []) + lines[i + 1:]:
            if not row_line.strip():
                break
            words = row_line.split()
            if len(words) % sum(widths) == 0:
                while words:
                    row = {}
                    for name, width in zip(names, widths):
                        row[name] = " ".join(words[:width])
                        words = words[width:]
                    rows.append(row)
            else:  # a value is empty or holds a space: cut the line at the header's columns
                row = {}
                for j, name in enumerate(names):
                    end = spans[j + 1][0] if j + 1 < len(names) else None
                    row[name] = row_line[spans[j][0]:end].strip()
                rows.append(row)
        return rows
    return None


def offsets(text, topic):
    """kafka-get-offsets' "topic:partition:offset" lines for `topic`: {partition: offset}."""
    found = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(.+):(\d+):(-?\d+)", line.strip())
        if m and m.group(1) == topic:
            found[int(m.group(2))] = int(m.group(3))
    return found


def topic_description(text, topic):
    """kafka-topics --describe: the topic line's fields and the number of partition lines."""
    fields, partitions = None, 0
    for line in text.splitlines():
        pairs = dict(re.findall(r"(\w+): ([^\t]*)", line))
        if pairs.get("Topic") != topic:
            continue
        if "PartitionCount" in pairs:
            fields = pairs
        elif "Partition" in pairs:
            partitions += 1
    return fields, partitions


def configs(text):
    """kafka-configs --describe: {name: value} of the "  name=value sensitive=..." lines."""
    return dict(re.findall(r"^\s+([\w.]+)=(.*?) sensitive=", text, re.M))


def future_datetime():
    """A day from now, as kafka-consumer-groups --to-datetime takes it."""
    then = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    return then.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def now_ms():
    return int(time.time() * 1000)


# --- the suite -------------------------------------------------------------------------------


class Suite:
    def __init__(self, bootstrap, lib, replication, verbose=False):
        self.bootstrap, self.lib, self.replication = bootstrap, lib, replication
        self.verbose = verbose
        self.checks, self.failed = 0, []
        self.background = []
        self.tmp = tempfile.mkdtemp(prefix="cli-conformance-")
        self.archived = False
        suffix = uuid.uuid4().hex[:8]
        self.suffix = suffix
        self.topic = f"cli-records-{suffix}"  # 3 partitions: kcat, offsets, delete-records, group
        self.altered = f"cli-topic-{suffix}"  # kafka-topics --alter, kafka-configs
        self.retained = f"cli-retention-{suffix}"  # a short retention.ms
        self.group = f"cli-group-{suffix}"
        self.client_id = f"cli-conformance-{suffix}"

    # running tools

    def tool(self, cls, *args):
        # A JVM starts in about half the CPU time with the classes of a first run archived
        # (class data sharing), which counts on 2 cores: the suite runs some 40 tools.
        archive = os.path.join(self.tmp, "kafka-tools.jsa")
        if self.archived:
            share = [f"-XX:SharedArchiveFile={archive}"]
        else:
            share = [f"-XX:ArchiveClassesAtExit={archive}"]
            self.archived = True
        argv = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", *share,
                "-Xlog:cds=off", "-Xlog:cds+dynamic=off",
                "-Dlog4j.configuration=file:/dev/null", "-cp", os.path.join(self.lib, "*"), cls,
                "--bootstrap-server", self.bootstrap, *args]
        shown = " ".join([TOOLS[cls], "--bootstrap-server", self.bootstrap, *args])
        return execute(argv, shown)

    def kcat(self, *args, stdin=None):
        argv = ["kcat", "-b", self.bootstrap, *args]
        shown = " ".join(argv) + (f"   <<< {stdin!r}" if stdin is not None else "")
        return execute(argv, shown, stdin=stdin)

    def groups(self, *args):
        return self.tool(GROUPS, *args)

    def get_offsets(self, topic, at):
        return self.tool(OFFSETS, "--topic", topic, "--time", str(at))

    def check(self, ok, what, *runs, detail=None):
        self.checks += 1
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            self.failed.append(what)
        if not ok or self.verbose:
            if detail:
                print("    " + detail)
            for run in runs:
                if run is not None:
                    print(run.describe())
            sys.stdout.flush()
        return ok

    def poll(self, attempt, done, deadline, pause=0.5):
        """Runs attempt() until done(run) or the deadline; returns the last run and whether done."""
        while True:
            run = attempt()
            if done(run):
                return run, True
            if time.monotonic() >= deadline:
                return run, False
            time.sleep(pause)

    def create_topic(self, name, partitions, *extra):
        return self.tool(TOPICS, "--create", "--topic", name, "--partitions", str(partitions),
                         "--replication-factor", str(self.replication), *extra)

    # the checks

    def run(self):
        for part in (self.retention_start, self.kcat_checks, self.start_consumers,
                     self.get_offsets_checks, self.delete_records_checks, self.topics_checks,
                     self.configs_checks, self.group_checks, self.retention_end):
            try:
                part()
            except Exception:  # what a tool printed surprised the suite: say so, go on
                self.check(False, f"{part.__name__} broke off",
                           detail=traceback.format_exc().rstrip().replace("\n", "\n    "))

    def retention_start(self):
        """7. A topic with a short retention.ms (and segment.ms, so Kafka rolls its segments) gets
        records now; retention_end() looks for its log start to have moved."""
        self.retention_ms = 2000
        run = self.create_topic(self.retained, 1, "--config", f"retention.ms={self.retention_ms}",
                                "--config", "segment.ms=1000")
        created = self.check(run.ok and f"Created topic {self.retained}." in run.out,
                             f"kafka-topics --create --config retention.ms={self.retention_ms} "
                             "--config segment.ms=1000", run)
        self.retention_runs = []
        if not created:  # retention can still be checked without segment.ms
            self.retention_runs.append(
                self.create_topic(self.retained, 1, "--config",
                                  f"retention.ms={self.retention_ms}"))
        self.retention_runs.append(
            self.kcat("-P", "-t", self.retained, "-p", "0", stdin="r0\nr1\nr2\n"))
        self.retention_from = time.monotonic()

    def retention_end(self):
        # Kafka rolls a segment older than segment.ms only when a record arrives.
        roll = self.kcat("-P", "-t", self.retained, "-p", "0", stdin="r3\n")
        deadline = max(self.retention_from + RETENTION_DEADLINE, time.monotonic() + 15)
        run, done = self.poll(lambda: self.get_offsets(self.retained, -2),
                              lambda r: offsets(r.out, self.retained).get(0, 0) > 0, deadline, 1)
        waited = time.monotonic() - self.retention_from
        self.check(done, f"retention.ms={self.retention_ms}: kafka-get-offsets --time -2 shows the "
                   f"log start past 0 (got {offsets(run.out, self.retained)} "
                   f"{waited:.0f} s after the first records)", *self.retention_runs, roll, run)

    def kcat_checks(self):
        """1. kcat: metadata, produce to given partitions, consume, timestamp lookups."""
        run = self.create_topic(self.topic, 3)
        self.check(run.ok and f"Created topic {self.topic}." in run.out,
                   "kafka-topics --create --partitions 3 (the records' topic)", run)
        first = [self.kcat("-P", "-t", self.topic, "-p", "0", stdin="a\nb\nc\n"),
                 self.kcat("-P", "-t", self.topic, "-p", "1", stdin="x\ny\n")]
        meta = self.kcat("-L")
        listed = re.search(rf'topic "{re.escape(self.topic)}" with (\d+) partitions', meta.out)
        self.check(meta.ok and listed and listed.group(1) == "3",
                   "kcat -L lists the topic with its 3 partitions", meta)
        # Later than the first three (a batch of its own): the largest timestamp in partition 0.
        time.sleep(0.01)
        last = self.kcat("-P", "-t", self.topic, "-p", "0", stdin="d\n")
        produced = first + [last]
        self.check(all(r.ok for r in produced), "kcat -P to partitions 0 and 1", *produced)

        self.expected = {(0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (0, 3, "d"),
                         (1, 0, "x"), (1, 1, "y")}

        self.stamps = {}  # (partition, offset): the record's timestamp

        def records(run):  # what -f "%p %o %T %s\n" printed, and any other line as it is
            found = set()
            for line in run.out.splitlines():
                m = re.fullmatch(r"(\d+) (\d+) (-?\d+) (.*)", line)
                if m:
                    found.add((int(m.group(1)), int(m.group(2)), m.group(4)))
                    self.stamps[int(m.group(1)), int(m.group(2))] = int(m.group(3))
                else:
                    found.add(line)
            return found

        fmt = "%p %o %T %s\\n"
        run = self.kcat("-C", "-t", self.topic, "-o", "beginning", "-e", "-q", "-f", fmt)
        self.check(run.ok and records(run) == self.expected,
                   "kcat -C -e reads back every record at its partition and offset", run)
        future = now_ms() + 3_600_000
        run = self.kcat("-C", "-t", self.topic, "-o", f"s@{future}", "-e", "-q", "-f", fmt)
        self.check(run.ok and run.out.strip() == "",
                   "kcat -o s@<an hour from now> -e finds no record (no replay from offset 0)", run)
        past = now_ms() - 3_600_000
        run = self.kcat("-C", "-t", self.topic, "-o", f"s@{past}", "-e", "-q", "-f", fmt)
        self.check(run.ok and records(run) == self.expected,
                   "kcat -o s@<an hour ago> -e reads every record", run)

    def start_consumers(self):
        """4. (started here, checked in group_checks) two balanced kcat consumers of the records'
        topic, 3 partitions, records in 0 and 1 only."""
        for i in range(2):
            argv = ["kcat", "-b", self.bootstrap, "-G", self.group, "-q",
                    "-X", f"client.id={self.client_id}", "-X", "auto.offset.reset=earliest",
                    "-X", "partition.assignment.strategy=range",
                    "-X", "auto.commit.interval.ms=500", "-X", "session.timeout.ms=10000",
                    "-X", "heartbeat.interval.ms=1000", self.topic]
            self.consumer_shown = " ".join(argv)
            with open(os.path.join(self.tmp, f"consumer-{i}.err"), "w") as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err,
                                        start_new_session=True)
            self.background.append(proc)
        self.consumers_from = time.monotonic()

    def consumer_output(self):
        return "".join(open(os.path.join(self.tmp, name)).read()
                       for name in sorted(os.listdir(self.tmp)) if name.startswith("consumer-"))

    def stop_consumers(self):
        for proc in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.background:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"    kcat consumer {proc.pid} did not exit on SIGTERM within 15 s: SIGKILL")
                proc.kill()
                proc.wait()
        self.background = []

    def get_offsets_checks(self):
        """2. kafka-get-offsets: latest, earliest, a time after every record, max timestamp."""
        t = self.topic
        run = self.get_offsets(t, -1)
        self.check(run.ok and offsets(run.out, t) == {0: 4, 1: 2, 2: 0},
                   "kafka-get-offsets --time -1 (latest): 0:4 1:2 2:0", run)
        run = self.get_offsets(t, -2)
        self.check(run.ok and offsets(run.out, t) == {0: 0, 1: 0, 2: 0},
                   "kafka-get-offsets --time -2 (earliest): 0:0 1:0 2:0", run)
        run = self.get_offsets(t, now_ms() + 3_600_000)
        self.check(run.ok and offsets(run.out, t) == {},
                   "kafka-get-offsets --time <an hour from now>: no partition has an offset "
                   "(nothing printed)", run)
        # Kafka names the first record carrying the largest timestamp: in partition 0 the last,
        # sent later on its own; in partition 1 the first when kcat stamped both alike (it mostly
        # does: one batch, the same millisecond). Nothing for the empty partition 2.
        wanted = {}
        for (p, o), stamp in sorted(self.stamps.items()):
            if p not in wanted or stamp > self.stamps[p, wanted[p]]:
                wanted[p] = o
        run = self.get_offsets(t, -3)
        stamps = ", ".join(f"{p}:{o}@{ms}" for (p, o), ms in sorted(self.stamps.items()))
        self.check(run.ok and offsets(run.out, t) == wanted and wanted.get(0) == 3,
                   "kafka-get-offsets --time -3 (max timestamp): the first record with the "
                   f"largest timestamp, {' '.join(f'{p}:{o}' for p, o in wanted.items())}, "
                   "nothing for empty partition 2", run,
                   detail=f"the records' timestamps (partition:offset@ms): {stamps}")

    def delete_records_checks(self):
        """3. kafka-delete-records with an offset JSON file, then the new log start."""
        path = os.path.join(self.tmp, "delete.json")
        with open(path, "w") as f:
            json.dump({"version": 1, "partitions": [
                {"topic": self.topic, "partition": 0, "offset": 2}]}, f)
        run = self.tool(DELETE_RECORDS, "--offset-json-file", path)
        m = re.search(rf"partition: {re.escape(self.topic)}-0\s+low_watermark: (-?\d+)", run.out)
        self.check(run.ok and m and m.group(1) == "2",
                   "kafka-delete-records (partition 0 before offset 2) prints low_watermark: 2",
                   run, detail=f"offset JSON file: {open(path).read()}")
        run = self.get_offsets(self.topic, -2)
        self.check(run.ok and offsets(run.out, self.topic) == {0: 2, 1: 0, 2: 0},
                   "then kafka-get-offsets --time -2: 0:2 1:0 2:0", run)

    def topics_checks(self):
        """5. kafka-topics: create, describe, add partitions, describe."""
        t, r = self.altered, self.replication
        run = self.create_topic(t, 1)
        self.check(run.ok and f"Created topic {t}." in run.out,
                   f"kafka-topics --create --partitions 1 --replication-factor {r}", run)
        run = self.tool(TOPICS, "--describe", "--topic", t)
        fields, lines = topic_description(run.out, t)
        self.check(run.ok and fields is not None and fields.get("PartitionCount") == "1"
                   and fields.get("ReplicationFactor") == str(r) and lines == 1,
                   f"kafka-topics --describe: PartitionCount: 1, ReplicationFactor: {r}, "
                   "1 partition line", run)
        alter = self.tool(TOPICS, "--alter", "--topic", t, "--partitions", "3")
        self.check(alter.ok and "Error" not in alter.out + alter.err,
                   "kafka-topics --alter --partitions 3", alter)
        run = self.tool(TOPICS, "--describe", "--topic", t)
        fields, lines = topic_description(run.out, t)
        self.check(run.ok and fields is not None and fields.get("PartitionCount") == "3"
                   and lines == 3,
                   "then kafka-topics --describe: PartitionCount: 3, 3 partition lines", run)

    def configs_checks(self):
        """6. kafka-configs: a topic override, described alone and among the defaults."""
        where = ("--entity-type", "topics", "--entity-name", self.altered)
        run = self.tool(CONFIGS, *where, "--alter", "--add-config", "retention.ms=7200000")
        self.check(run.ok and f"Completed updating config for topic {self.altered}." in run.out,
                   "kafka-configs --alter --add-config retention.ms=7200000", run)
        run = self.tool(CONFIGS, *where, "--describe")
        found = configs(run.out)
        self.check(run.ok and found.get("retention.ms") == "7200000"
                   and "cleanup.policy" not in found,
                   "kafka-configs --describe: the override retention.ms=7200000 (and no default)",
                   run)
        run = self.tool(CONFIGS, *where, "--describe", "--all")
        found = configs(run.out)
        self.check(run.ok and found.get("retention.ms") == "7200000"
                   and found.get("cleanup.policy") == "delete",
                   "kafka-configs --describe --all: retention.ms=7200000 and the default "
                   "cleanup.policy=delete", run)

    def group_checks(self):
        """4. kafka-consumer-groups with a live group, then the emptied group."""
        g, t = self.group, self.topic
        ends = {0: 4, 1: 2, 2: 0}
        deadline = max(self.consumers_from, time.monotonic()) + GROUP_DEADLINE
        state_columns = ["GROUP", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"]
        offset_columns = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                          "CONSUMER-ID", "HOST", "CLIENT-ID"]

        def row_of(run, columns):
            rows = table(run.out, columns) or []
            mine = [row for row in rows if row.get("GROUP") == g]
            return mine[0] if len(mine) == 1 else None

        def stable(run):
            row = row_of(run, state_columns)
            return bool(row) and row["STATE"] == "Stable" and row["#MEMBERS"] == "2"

        def by_partition(run):
            rows = table(run.out, offset_columns) or []
            return {row["PARTITION"]: row for row in rows
                    if row.get("GROUP") == g and row.get("TOPIC") == t}

        def settled(run):
            rows = by_partition(run)
            return (set(rows) == {"0", "1", "2"}
                    and all(row["CONSUMER-ID"] != "-" for row in rows.values())
                    and len({row["CONSUMER-ID"] for row in rows.values()}) == 2
                    and all(rows[str(p)]["CURRENT-OFFSET"] == str(ends[p]) for p in (0, 1)))

        state, is_stable = self.poll(lambda: self.groups("--describe", "--state", "--group", g),
                                     stable, deadline)
        described, is_settled = self.poll(lambda: self.groups("--describe", "--group", g),
                                          settled, deadline)
        alive = [p.poll() is None for p in self.background]
        self.check(is_stable and is_settled and all(alive),
                   f"two kcat consumers (kcat -G): the group gets Stable with 2 members, every "
                   f"partition assigned and partitions 0 and 1 committed at their ends, within "
                   f"{GROUP_DEADLINE} s", state, described,
                   detail=f"consumers: {self.consumer_shown} (x2; alive: {alive}); "
                          f"what they printed: {self.consumer_output()!r}")

        rows = by_partition(described)
        wanted = {"0": ("4", "4", "0"), "1": ("2", "2", "0"), "2": ("-", "0", "-")}
        problems = []
        for p, (current, end, lag) in wanted.items():
            row = rows.get(p)
            if row is None:
                problems.append(f"no row for partition {p}")
                continue
            got = (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"])
            if got != (current, end, lag):
                problems.append(f"partition {p}: CURRENT-OFFSET, LOG-END-OFFSET, LAG {got}, "
                                f"wanted {(current, end, lag)}")
            if row["CONSUMER-ID"] in ("-", "") or not row["HOST"].startswith("/") \
                    or row["CLIENT-ID"] != self.client_id:
                problems.append(f"partition {p}: CONSUMER-ID {row['CONSUMER-ID']!r}, HOST "
                                f"{row['HOST']!r}, CLIENT-ID {row['CLIENT-ID']!r}")
        self.check(described.ok and not problems,
                   "--describe --group: a row for each of the 3 assigned partitions with its "
                   "CONSUMER-ID, HOST /... and CLIENT-ID; partition 2 (never committed) "
                   "CURRENT-OFFSET -, LAG 0 where committed", described,
                   detail="; ".join(problems))

        run = self.groups("--describe", "--members", "--group", g)
        members = [row for row in table(run.out, ["GROUP", "CONSUMER-ID", "#PARTITIONS"]) or []
                   if row.get("GROUP") == g]
        counts = sorted(row["#PARTITIONS"] for row in members)
        self.check(run.ok and counts == ["1", "2"],
                   "--describe --members: 2 members, with 2 and 1 partitions (#PARTITIONS)", run,
                   detail=f"#PARTITIONS: {counts}")

        row = row_of(state, state_columns)
        self.check(state.ok and row is not None and row["STATE"] == "Stable"
                   and row["ASSIGNMENT-STRATEGY"] == "range" and row["#MEMBERS"] == "2",
                   "--describe --state: STATE Stable, ASSIGNMENT-STRATEGY range, #MEMBERS 2", state)

        run = self.groups("--list", "--state")
        listed = [row for row in table(run.out, ["GROUP", "STATE"]) or [] if row.get("GROUP") == g]
        self.check(run.ok and [row["STATE"] for row in listed] == ["Stable"],
                   "--list --state: the group, Stable", run)

        self.stop_consumers()
        deadline = time.monotonic() + GROUP_DEADLINE

        def empty(run):
            row = row_of(run, state_columns)
            return bool(row) and row["STATE"] == "Empty"

        state, is_empty = self.poll(lambda: self.groups("--describe", "--state", "--group", g),
                                    empty, deadline)
        row = row_of(state, state_columns)
        self.check(is_empty and row["#MEMBERS"] == "0",
                   f"the consumers stopped (SIGTERM): --describe --state says Empty, #MEMBERS 0 "
                   f"(within {GROUP_DEADLINE} s)", state)

        def new_offsets(run):
            rows = table(run.out, ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]) or []
            return {int(row["PARTITION"]): row["NEW-OFFSET"] for row in rows
                    if row.get("GROUP") == g and row.get("TOPIC") == t
                    and row["PARTITION"].isdigit()}

        when = future_datetime()
        run = self.groups("--reset-offsets", "--group", g, "--topic", t, "--to-datetime", when,
                          "--dry-run")
        self.check(run.ok and new_offsets(run) == {0: "4", 1: "2", 2: "0"},
                   "--reset-offsets --to-datetime <tomorrow> --dry-run proposes the log ends "
                   "0:4 1:2 2:0", run)
        run = self.groups("--reset-offsets", "--group", g, "--topic", t, "--to-earliest",
                          "--execute")
        self.check(run.ok and new_offsets(run) == {0: "2", 1: "0", 2: "0"},
                   "--reset-offsets --to-earliest --execute: the log starts 0:2 1:0 2:0", run)
        run = self.groups("--describe", "--group", g)
        current = {p: row["CURRENT-OFFSET"] for p, row in by_partition(run).items()}
        self.check(run.ok and current == {"0": "2", "1": "0", "2": "0"},
                   "then --describe: CURRENT-OFFSET 0:2 1:0 2:0", run)

        run = self.groups("--delete", "--group", g)
        self.check(run.ok and f"Deletion of requested consumer groups ('{g}') was successful."
                   in run.out, "--delete --group", run)
        run = self.groups("--list")
        self.check(run.ok and g not in run.out.split(), "then --list no longer lists the group",
                   run)
        run = self.groups("--describe", "--group", g)
        self.check(f"Error: Consumer group '{g}' does not exist." in run.out + run.err,
                   "and --describe --group says: Error: Consumer group '<group>' does not exist.",
                   run)

    def close(self):
        self.stop_consumers()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", help="the broker's bootstrap servers, host:port[,...]")
    parser.add_argument("--lib", required=True, help="folder of the Kafka 3.9 jars")
    parser.add_argument("--replication", type=int, default=1,
                        help="replication factor of the topics the suite creates (1)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every check's commands and what they printed, not only a "
                             "failed one's")
    args = parser.parse_args()
    if not any(n.startswith("kafka-tools-") for n in os.listdir(args.lib)):
        sys.exit(f"cli_conformance: no kafka-tools jar in {args.lib}")

    # SIGTERM (a CI timeout) ends the suite through its clean-up, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    suite = Suite(args.bootstrap, args.lib, args.replication, args.verbose)
    try:
        suite.run()
    finally:
        suite.close()
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"{suite.checks} checks, {len(suite.failed)} failed")
    sys.exit(1 if suite.failed else 0)


if __name__ == "__main__":
    main()
