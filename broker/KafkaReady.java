// Readiness probe for `kafka.sh up` and `cluster-up` (compiled by `kafka.sh install` into lib/classes).
// kafka-tools (TopicCommand) is not on Maven Central for every Kafka version, kafka-clients is.
// A KRaft broker only serves requests once it is registered and unfenced, so a successful
// describeCluster + listTopics means clients can really use it. Describing a consumer group
// also makes a fresh broker create __consumer_offsets now, so the first consumer group to
// join does not meet COORDINATOR_NOT_AVAILABLE.
// Usage: java -cp 'lib/*:lib/classes' KafkaReady BOOTSTRAP TIMEOUT_MS [OPTIONS]   (exit 0 ready, 1 not)
//   --command-config FILE  client properties (security.protocol, sasl.*, ssl.*) for a secured broker
//   --brokers N            ready only once the cluster reports at least N live brokers (default 1)
//   --node ID              ... and node ID is one of them (a restarted cluster node is back)
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.errors.AuthenticationException;
import org.apache.kafka.common.errors.GroupIdNotFoundException;

public class KafkaReady {
    // Wrong credentials or a wrong CA do not heal: give up after this many failures in a row
    // (a few seconds) rather than at the timeout, so `up` says why quickly.
    private static final int MAX_AUTH_FAILURES = 10;

    public static void main(String[] args) throws IOException {
        if (args.length < 2) usage();
        long deadline = System.currentTimeMillis() + Long.parseLong(args[1]);
        Properties p = new Properties();
        int minBrokers = 1;
        Integer nodeId = null;
        for (int i = 2; i < args.length; i += 2) {
            if (i + 1 >= args.length) usage();
            switch (args[i]) {
                case "--command-config":
                    try (InputStream in = new FileInputStream(args[i + 1])) { p.load(in); }
                    break;
                case "--brokers": minBrokers = Integer.parseInt(args[i + 1]); break;
                case "--node": nodeId = Integer.valueOf(args[i + 1]); break;
                default: usage();
            }
        }
        final Integer wantedNode = nodeId;  // for the lambda below
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        // The broker may still be booting: retry often, not after up to 1 s.
        p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        p.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, "200");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "timed out";
        int authFailures = 0;
        try (Admin admin = Admin.create(p)) {
            while (System.currentTimeMillis() < deadline) {
                try {
                    Collection<Node> nodes = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS);
                    authFailures = 0;
                    if (nodes.size() < minBrokers) {
                        last = nodes.size() + " of " + minBrokers + " brokers are up";
                    } else if (wantedNode != null && nodes.stream().noneMatch(n -> n.id() == wantedNode)) {
                        last = "node " + wantedNode + " is not (yet) in the cluster";
                    } else {
                        // Only now: with all brokers registered, __consumer_offsets gets its full
                        // replication factor.
                        admin.listTopics().names().get(3, TimeUnit.SECONDS);
                        try {
                            admin.describeConsumerGroups(List.of("kafka-sh-ready")).all().get(3, TimeUnit.SECONDS);
                        } catch (ExecutionException e) {
                            if (!(e.getCause() instanceof GroupIdNotFoundException)) throw e;  // fine: no such group
                        }
                        System.out.println("ready: " + nodes.size() + " broker(s) at " + args[0]);
                        System.exit(0);
                    }
                } catch (Exception e) {
                    Throwable cause = e.getCause() != null ? e.getCause() : e;
                    last = String.valueOf(cause);
                    if (cause instanceof AuthenticationException && ++authFailures >= MAX_AUTH_FAILURES) break;
                }
                Thread.sleep(200);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("not ready: " + last);
        System.exit(1);
    }

    private static void usage() {
        System.err.println("usage: KafkaReady BOOTSTRAP TIMEOUT_MS [--command-config FILE] [--brokers N] [--node ID]");
        System.exit(2);
    }
}
