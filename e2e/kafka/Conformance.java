// What Kafka's own Java client (kafka-clients 3.9) gets from a broker, for the operations the
// embedded broker answered wrongly or by panicking: run by .ci/kafka-tools against `shop up`
// and, to keep it honest, usable against any Kafka cluster:
//   java -cp "dev/.kafka/lib/<version>/*" e2e/kafka/Conformance.java HOST:PORT [REPLICATION]
// (REPLICATION: of the topics it creates, 1 unless given; 3 on dev/kafka-cluster).
// Exits 1 with the checks that failed. Each check creates its own topic.

import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.serialization.*;

public class Conformance {
    static final List<String> failures = new ArrayList<>();
    static short replication = 1;
    static int checks = 0;

    static void check(boolean ok, String what) {
        checks++;
        System.out.println((ok ? "ok   " : "FAIL ") + what);
        if (!ok) failures.add(what);
    }

    public static void main(String[] args) throws Exception {
        Properties common = new Properties();
        common.put("bootstrap.servers", args[0]);
        if (args.length > 1) replication = Short.parseShort(args[1]);
        try (Admin admin = Admin.create(common)) {
            deleteRecords(admin, common);
            timestampLookups(admin, common);
            describeConfigs(admin);
        }
        System.out.println(checks + " checks, " + failures.size() + " failed");
        System.exit(failures.isEmpty() ? 0 : 1);
    }

    /** A topic of one partition holding `count` records, each sent (and so stored) on its own. */
    static TopicPartition topicWith(Admin admin, Properties common, String name, int count) throws Exception {
        String topic = name + "-" + UUID.randomUUID();
        admin.createTopics(List.of(new NewTopic(topic, 1, replication))).all().get();
        Properties p = new Properties();
        p.putAll(common);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) producer.send(new ProducerRecord<>(topic, "k", "v" + i)).get();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        knownToTheLeader(admin, tp);
        return tp;
    }

    /**
     * Waits until the partition's leader answers a lookup: on a cluster, createTopics returns once
     * the controller made the topic, and the other brokers learn of it a moment later (a lookup
     * before that is UnknownTopicOrPartition, as Kafka documents).
     */
    static void knownToTheLeader(Admin admin, TopicPartition tp) throws Exception {
        settled(() -> admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get());
    }

    /**
     * Calls `call` until it stops failing with UnknownTopicOrPartition, for at most 30 s. Every
     * broker learns of a new topic on its own time, and the admin client asks whichever broker is
     * least loaded for metadata: one broker answering for the topic does not mean the next
     * request's broker will. Kafka's own clients treat that error as retriable.
     */
    static <T> T settled(java.util.concurrent.Callable<T> call) throws Exception {
        long until = System.currentTimeMillis() + 30_000;
        while (true) {
            try {
                return call.call();
            } catch (java.util.concurrent.ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException) || System.currentTimeMillis() > until) throw e;
                Thread.sleep(100);
            }
        }
    }

    /** The configuration describe-configs answers for `resource`. */
    static Config configOf(Admin admin, ConfigResource resource) throws Exception {
        return settled(() -> admin.describeConfigs(List.of(resource)).all().get().get(resource));
    }

    /** The offset a lookup of `spec` on `tp` answers. */
    static long offset(Admin admin, TopicPartition tp, OffsetSpec spec) throws Exception {
        return settled(() -> admin.listOffsets(Map.of(tp, spec)).all().get().get(tp).offset());
    }

    static void deleteRecords(Admin admin, Properties common) throws Exception {
        TopicPartition tp = topicWith(admin, common, "delete-records", 8);
        long low = settled(() -> admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp).get().lowWatermark());
        check(low == 5, "delete-records before 5 answers low watermark 5 (got " + low + ")");
        long earliest = offset(admin, tp, OffsetSpec.earliest());
        check(earliest == 5, "the earliest offset is then 5 (got " + earliest + ")");
        long again = settled(() -> admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(3))).lowWatermarks().get(tp).get().lowWatermark());
        check(again == 5, "delete-records before 3 does not move the log start back (got " + again + ")");
        String beyond;
        try {
            settled(() -> admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(99))).all().get());
            beyond = "accepted";
        } catch (Exception e) {
            beyond = e.getCause().getClass().getSimpleName();
        }
        check(beyond.equals(OffsetOutOfRangeException.class.getSimpleName()),
                "delete-records past the end is OffsetOutOfRange (got " + beyond + ")");

        Properties p = new Properties();
        p.putAll(common);
        p.put("group.id", "conformance-" + UUID.randomUUID());
        p.put("auto.offset.reset", "earliest");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, 2);
            List<Long> read = new ArrayList<>();
            long until = System.currentTimeMillis() + 30_000;
            while (read.size() < 3 && System.currentTimeMillis() < until) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) read.add(r.offset());
            }
            check(read.equals(List.of(5L, 6L, 7L)),
                    "a consumer at a deleted offset is out of range and resets to the log start (read " + read + ")");
        }
    }

    static void timestampLookups(Admin admin, Properties common) throws Exception {
        TopicPartition tp = topicWith(admin, common, "by-time", 2);
        long now = System.currentTimeMillis();
        long future = offset(admin, tp, OffsetSpec.forTimestamp(now + 3_600_000));
        check(future == -1, "a time after every record finds offset -1 (got " + future + ")");
        long past = offset(admin, tp, OffsetSpec.forTimestamp(now - 3_600_000));
        check(past == 0, "a time before every record finds the first, 0 (got " + past + ")");
        long max = offset(admin, tp, OffsetSpec.maxTimestamp());
        check(max == 1, "the record with the largest timestamp is the last sent, 1 (got " + max + ")");
        TopicPartition empty = topicWith(admin, common, "empty", 0);
        long none = offset(admin, empty, OffsetSpec.maxTimestamp());
        check(none == -1, "an empty partition has no record with a largest timestamp, -1 (got " + none + ")");
    }

    static void describeConfigs(Admin admin) throws Exception {
        String topic = "configs-" + UUID.randomUUID();
        NewTopic created = new NewTopic(topic, 1, replication).configs(Map.of("retention.ms", "3600000", "cleanup.policy", "delete"));
        admin.createTopics(List.of(created)).all().get();
        knownToTheLeader(admin, new TopicPartition(topic, 0));
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = configOf(admin, resource);
        ConfigEntry retention = config.get("retention.ms");
        check(retention != null && "3600000".equals(retention.value()),
                "describe-configs shows the topic's retention.ms (got " + retention + ")");
        check(retention != null && retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                        && !retention.isDefault(),
                "an override is described as a topic config, not a default (got "
                        + (retention == null ? null : retention.source()) + ")");
        settled(() -> admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND))))
                .all().get());
        String appended = configOf(admin, resource).get("cleanup.policy").value();
        check("delete,compact".equals(appended), "APPEND adds to a list config (got " + appended + ")");
        settled(() -> admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT))))
                .all().get());
        String subtracted = configOf(admin, resource).get("cleanup.policy").value();
        check("compact".equals(subtracted), "SUBTRACT removes from it (got " + subtracted + ")");
        ConfigResource missing = new ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic-" + UUID.randomUUID());
        String answer;
        try {
            admin.describeConfigs(List.of(missing)).all().get();
            answer = "an answer";
        } catch (Exception e) {
            answer = e.getCause().getClass().getSimpleName();
        }
        check(answer.equals(UnknownTopicOrPartitionException.class.getSimpleName()),
                "describe-configs of an unknown topic is UnknownTopicOrPartition (got " + answer + ")");
    }
}
