// Readiness probe for `kafka.sh up` (compiled by `kafka.sh install` into lib/classes).
// kafka-tools (TopicCommand) is not on Maven Central for every Kafka version, kafka-clients is.
// A KRaft broker only serves requests once it is registered and unfenced, so a successful
// describeCluster + listTopics means clients can really use it. Describing a consumer group
// also makes a fresh broker create __consumer_offsets now, so the first consumer group to
// join does not meet COORDINATOR_NOT_AVAILABLE.
// Usage: java -cp 'lib/*:lib/classes' KafkaReady HOST:PORT TIMEOUT_MS   (exit 0 ready, 1 not)
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.errors.GroupIdNotFoundException;

public class KafkaReady {
    public static void main(String[] args) {
        long deadline = System.currentTimeMillis() + Long.parseLong(args[1]);
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        // The broker may still be booting: retry often, not after up to 1 s.
        p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        p.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, "200");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "timed out";
        try (Admin admin = Admin.create(p)) {
            while (System.currentTimeMillis() < deadline) {
                try {
                    int nodes = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS).size();
                    admin.listTopics().names().get(3, TimeUnit.SECONDS);
                    try {
                        admin.describeConsumerGroups(List.of("kafka-sh-ready")).all().get(3, TimeUnit.SECONDS);
                    } catch (ExecutionException e) {
                        if (!(e.getCause() instanceof GroupIdNotFoundException)) throw e;  // fine: no such group
                    }
                    if (nodes > 0) {
                        System.out.println("ready: " + nodes + " broker(s) at " + args[0]);
                        System.exit(0);
                    }
                } catch (Exception e) {
                    last = String.valueOf(e.getCause() != null ? e.getCause() : e);
                }
                Thread.sleep(200);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("not ready: " + last);
        System.exit(1);
    }
}
