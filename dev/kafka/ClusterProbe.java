// The probe of dev/kafka-cluster, run with the broker's own client jars:
//   java -cp 'dev/.kafka/lib/<version>/*:<classes>' ClusterProbe BOOTSTRAP EXPECTED_BROKERS
//     Exits 0 when the cluster answers and has at least EXPECTED_BROKERS brokers registered,
//     printing "brokers=N ids=a,b,c"; exits 1 (with the reason) otherwise. One try: the
//     script loops.
//   java ... ClusterProbe BOOTSTRAP insync
//     Exits 0 when every partition of every topic has all its replicas in sync and is led by
//     its preferred replica, printing "under-replicated=N not-preferred=M"; exits 1 otherwise.
//     When all replicas are in sync but some leaders are not preferred, it asks for a
//     preferred-leader election (what the brokers' own rebalance would do up to 30 s later,
//     moving leaderships under whoever runs next).
//   java ... ClusterProbe BOOTSTRAP describe
//     Prints every topic's partitions (leader, replicas, in-sync replicas, min.insync.replicas)
//     and every consumer group (state, members, assigned partitions, lag).
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;

@SuppressWarnings({"deprecation", "removal"})
public class ClusterProbe {
    public static void main(String[] args) {
        String bootstrap = args.length > 0 ? args[0] : "localhost:9092";
        boolean describe = args.length > 1 && args[1].equals("describe");
        boolean insync = args.length > 1 && args[1].equals("insync");
        int expected = args.length > 1 && !describe && !insync ? Integer.parseInt(args[1]) : 1;
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "4000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        int code = 1;
        try (Admin admin = Admin.create(props)) {
            var nodes = admin.describeCluster(new DescribeClusterOptions().timeoutMs(4000)).nodes().get(5, TimeUnit.SECONDS);
            String ids = nodes.stream().map(Node::id).sorted().map(String::valueOf).collect(Collectors.joining(","));
            System.out.println("brokers=" + nodes.size() + " ids=" + ids);
            code = nodes.size() >= expected ? 0 : 1;
            if (describe) {
                describe(admin);
            }
            if (insync && code == 0) {
                List<TopicPartitionInfo> partitions = partitions(admin);
                long under = partitions.stream().filter(p -> p.isr().size() < p.replicas().size()).count();
                long notPreferred = partitions.stream().filter(ClusterProbe::notPreferred).count();
                if (under == 0 && notPreferred > 0) {
                    // Partitions that need no election answer with an error; they are counted below.
                    admin.electLeaders(ElectionType.PREFERRED, null).partitions().get(10, TimeUnit.SECONDS);
                    notPreferred = partitions(admin).stream().filter(ClusterProbe::notPreferred).count();
                }
                System.out.println("under-replicated=" + under + " not-preferred=" + notPreferred);
                code = under == 0 && notPreferred == 0 ? 0 : 1;
            }
        } catch (Exception e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            System.out.println("no answer: " + cause.getClass().getSimpleName() + ": " + cause.getMessage());
        }
        System.exit(code);
    }

    private static String ids(Collection<Node> nodes) {
        return nodes.stream().map(Node::id).map(String::valueOf).collect(Collectors.joining(","));
    }

    private static boolean notPreferred(TopicPartitionInfo p) {
        return p.leader() == null || p.replicas().isEmpty() || p.leader().id() != p.replicas().get(0).id();
    }

    /** Every partition of every topic, internal ones too. */
    private static List<TopicPartitionInfo> partitions(Admin admin) throws Exception {
        Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get(5, TimeUnit.SECONDS);
        List<TopicPartitionInfo> partitions = new ArrayList<>();
        for (TopicDescription topic : admin.describeTopics(names).allTopicNames().get(5, TimeUnit.SECONDS).values()) {
            partitions.addAll(topic.partitions());
        }
        return partitions;
    }

    private static void describe(Admin admin) throws Exception {
        Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get(10, TimeUnit.SECONDS);
        Map<String, TopicDescription> topics = new TreeMap<>(admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS));
        List<ConfigResource> resources = new ArrayList<>();
        for (String name : topics.keySet()) {
            resources.add(new ConfigResource(ConfigResource.Type.TOPIC, name));
        }
        Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get(10, TimeUnit.SECONDS);
        Map<TopicPartition, OffsetSpec> latest = new TreeMap<>((a, b) -> a.toString().compareTo(b.toString()));
        System.out.println("topics:");
        for (TopicDescription topic : topics.values()) {
            Config config = configs.get(new ConfigResource(ConfigResource.Type.TOPIC, topic.name()));
            String minIsr = config == null || config.get("min.insync.replicas") == null ? "?" : config.get("min.insync.replicas").value();
            int rf = topic.partitions().isEmpty() ? 0 : topic.partitions().get(0).replicas().size();
            long underReplicated = topic.partitions().stream().filter(p -> p.isr().size() < p.replicas().size()).count();
            System.out.printf("  %-28s partitions=%d rf=%d min.insync.replicas=%s under-replicated=%d%n",
                topic.name(), topic.partitions().size(), rf, minIsr, underReplicated);
            if (!topic.name().startsWith("__")) {
                for (TopicPartitionInfo p : topic.partitions()) {
                    System.out.printf("    %d: leader=%s replicas=%s isr=%s%n", p.partition(),
                        p.leader() == null ? "none" : String.valueOf(p.leader().id()), ids(p.replicas()), ids(p.isr()));
                    latest.put(new TopicPartition(topic.name(), p.partition()), OffsetSpec.latest());
                }
            }
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(latest).all().get(10, TimeUnit.SECONDS);
        System.out.println("groups:");
        List<String> groupIds = new ArrayList<>();
        for (ConsumerGroupListing g : admin.listConsumerGroups().all().get(10, TimeUnit.SECONDS)) {
            groupIds.add(g.groupId());
        }
        groupIds.sort(String::compareTo);
        Map<String, ConsumerGroupDescription> groups = admin.describeConsumerGroups(groupIds).all().get(10, TimeUnit.SECONDS);
        for (String id : groupIds) {
            ConsumerGroupDescription g = groups.get(id);
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(id).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
            long lag = 0;
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
                var end = ends.get(e.getKey());
                if (end != null && e.getValue() != null) {
                    lag += Math.max(0, end.offset() - e.getValue().offset());
                }
            }
            System.out.printf("  %-22s state=%s coordinator=%s members=%d committed-partitions=%d lag=%d%n", id, g.state(),
                g.coordinator() == null ? "none" : String.valueOf(g.coordinator().id()), g.members().size(), committed.size(), lag);
            for (MemberDescription m : g.members()) {
                System.out.printf("    %s (%s) partitions=%d%n", m.clientId(), m.host(), m.assignment().topicPartitions().size());
            }
        }
    }
}
