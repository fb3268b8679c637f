#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A self-contained local Kafka broker (single-node KRaft), jars fetched from Maven Central.
# Also: a SASL_SSL-only variant (KAFKA_SECURITY=sasl_ssl, helpers in secure.sh and tls.sh) and a
# local N-node cluster (cluster-* commands, in cluster.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # paths work from any cwd/worktree
LIB="$HERE/lib"

die() { echo "kafka.sh: $*" >&2; exit 1; }

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
SECURITY="${KAFKA_SECURITY:-plaintext}"
# The secured broker has its own default port and data dir, so it runs beside the usual one.
case "$SECURITY" in
  plaintext) default_port=9092 default_data="$HERE/data" ;;
  sasl_ssl) default_port=9094 default_data="$HERE/secure" ;;
  *) die "KAFKA_SECURITY must be plaintext or sasl_ssl, not '$SECURITY'" ;;
esac
PORT="${KAFKA_PORT:-$default_port}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1000))}"
MTLS_PORT="${KAFKA_MTLS_PORT:-$((PORT + 1))}"              # sasl_ssl only
DATA="$(realpath -m "${KAFKA_DATA_DIR:-$default_data}")"   # a relative one is taken from the cwd
HEAP="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
TIMEOUT="${KAFKA_UP_TIMEOUT:-60}"
PIDFILE="$DATA/kafka.pid"
LOG="$DATA/logs/server.log"
NAME="kafka"   # how messages name the broker ("kafka node 2" in a cluster)

# shellcheck source=tls.sh
source "$HERE/tls.sh"
# shellcheck source=secure.sh
source "$HERE/secure.sh"
# shellcheck source=cluster.sh
source "$HERE/cluster.sh"

usage() {
  cat <<EOF
Usage: broker/kafka.sh COMMAND

Single broker (PLAINTEXT on 127.0.0.1:9092 by default):
  install   fetch the Kafka $KAFKA_VERSION jars into broker/lib (skipped when already there)
  up        start the broker in the background and wait until it serves clients;
            a no-op if something already answers on the port
  down      stop it (SIGTERM, then SIGKILL after 30 s); harmless if not running
  status    print running/stopped; exit 0 if running, 3 if not
  kill      SIGKILL the broker (for fault-injection tests)
  logs      tail -f the server log

  With KAFKA_SECURITY=sasl_ssl, up/down/status/kill/logs act on a broker that admits clients
  only over SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:9094 and over mutual TLS (SSL, a client
  certificate signed by its CA required) on 9095; data in broker/secure. Its first start makes
  a private CA, certificates and random passwords in DATA/tls/ and SCRAM users admin
  (inter-broker) and voix (clients). Client settings, KEY=VALUE lines:
    DATA/client.env        KAFKA_BOOTSTRAP KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM
                           KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD_FILE KAFKA_SSL_CAFILE
    DATA/client-mtls.env   KAFKA_BOOTSTRAP KAFKA_SECURITY_PROTOCOL=SSL KAFKA_SSL_CAFILE
                           KAFKA_SSL_CERTFILE KAFKA_SSL_KEYFILE
    DATA/client.properties the same for Java clients (--command-config of Kafka's tools)
  DATA/tls/wrong-ca.pem and wrong-client-*.pem come from an unrelated CA, for failure tests.
  The controller listener is SASL_SSL too (PLAIN, admin only): SCRAM users live in the
  metadata log, which controllers cannot read before they authenticate one another.

Local N-node cluster (PLAINTEXT, every node broker+controller, ports 19092.. by default):
  cluster-up       start NODES nodes (default 3) and wait until the cluster reports all of them
                   as brokers; prints the bootstrap list (last line); a no-op if all run
  cluster-down     stop every node (SIGTERM in parallel, SIGKILL after 30 s)
  cluster-status   each node's state; exit 0 if all nodes run, 3 if not
  cluster-kill N   SIGKILL node N (1..NODES)
  cluster-start N  start node N again and wait until it is back in the cluster
  Internal topics, default.replication.factor: RF = min(3, NODES); min.insync.replicas and
  the transaction log's min ISR = max(1, RF-1).

Environment (defaults):
  KAFKA_PORT=9092 (9094 with sasl_ssl)  KAFKA_CONTROLLER_PORT=KAFKA_PORT+1000
  KAFKA_DATA_DIR=broker/data (broker/secure with sasl_ssl)  KAFKA_SECURITY=plaintext|sasl_ssl
  KAFKA_MTLS_PORT=KAFKA_PORT+1 (sasl_ssl only)
  KAFKA_VERSION=4.4.0  KAFKA_HEAP_OPTS="-Xms256m -Xmx1g"  KAFKA_UP_TIMEOUT=60 (seconds; 120
  for the cluster commands)
  NODES=3  KAFKA_CLUSTER_DIR=broker/cluster  KAFKA_CLUSTER_PORT=19092 (node N: +N-1; its
  controller: +1000)  KAFKA_CLUSTER_HEAP_OPTS="-Xms128m -Xmx512m" (per node)
Brokers with different ports and data dirs run side by side; the data dir holds
server.properties, the pid file, the logs (logs/server.log) and the topic data. A cluster
keeps one such dir per node (KAFKA_CLUSTER_DIR/node-N) and remembers its NODES.
EOF
}

install() {
  local stamp="$LIB/kafka-$KAFKA_VERSION.stamp" probe="$LIB/classes/KafkaReady.class"
  [[ -f "$stamp" && "$probe" -nt "$HERE/KafkaReady.java" ]] && return 0
  mkdir -p "$LIB"
  exec 8>"$LIB/.install.lock"; flock 8               # concurrent installs wait for each other
  if [[ ! -f "$stamp" ]]; then
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars into $LIB" >&2
    # Start empty: jars of another version on the classpath would clash.
    find "$LIB" -mindepth 1 -maxdepth 1 ! -name .install.lock -exec rm -rf {} +
    local out   # shown only on failure: even with -q, Debian's mvn prints stray colour codes
    out="$(mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
      -DincludeScope=runtime -DoutputDirectory="$LIB" 2>&1)" || { echo "$out" >&2; die "mvn failed"; }
    touch "$stamp"
  fi
  # Compiled once rather than run as source on each `up`: the probe starts ~1 s sooner.
  [[ "$probe" -nt "$HERE/KafkaReady.java" ]] ||
    javac -d "$LIB/classes" -cp "$LIB/*" "$HERE/KafkaReady.java"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid from the pid file, if that process is alive and is this data dir's broker
# (a zombie's cmdline is empty; a recycled pid runs something else).
running_pid() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && grep -qF "$DATA/server.properties" "/proc/$pid/cmdline" 2>/dev/null \
    && echo "$pid"
}

# True once the process has exited and so closed its port and log-dir lock: gone, or a zombie
# with no thread left ("Zl" still has some). A dying process loses its cmdline before that.
exited() { local st; st="$(ps -o stat= -p "$1")" || return 0; [[ "$st" == Z* && "$st" != *l* ]]; }

# storage_properties RF MIN_ISR: the log dir, topic defaults and internal-topic replication
# every broker mode shares (single node: 1 and 1).
storage_properties() {
  local rf="$1" min_isr="$2"
  cat <<EOF
log.dirs=$DATA/kraft-logs
num.partitions=6
auto.create.topics.enable=true
# $rf replica(s) per partition; acks=all needs $min_isr of them in sync.
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
# Fault tests kill and restart brokers: a SIGKILLed broker is fenced 3 s after its last
# heartbeat (default 9 s), and its restart can register again soon.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
}

write_config() {
  cat >"$DATA/server.properties" <<EOF
# Written by broker/kafka.sh up: edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
EOF
  storage_properties 1 1 >>"$DATA/server.properties"
}

# JVM options shared by the storage tool and the broker; $HEAP is split into words on purpose.
java_opts() {
  read -ra heap <<<"$HEAP"
  JAVA_OPTS=("${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true -Dkafka.logs.dir="$DATA/logs"
    -Dlog4j2.configurationFile="$HERE/log4j2.xml" -cp "$LIB/*")
}

# A random cluster id: 16 bytes in URL-safe base64 (as `StorageTool random-uuid` prints).
new_cluster_id() { head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='; }

# A data dir formatted for one security mode cannot serve another: the SCRAM users are written
# at format time only. $DATA/security records the mode (none: an older, plaintext data dir).
check_data_mode() {
  [[ -f "$DATA/kraft-logs/meta.properties" ]] || return 0
  local mode
  mode="$(cat "$DATA/security" 2>/dev/null || echo plaintext)"
  [[ "$mode" == "$SECURITY" ]] ||
    die "$DATA holds a $mode broker, not $SECURITY: use another KAFKA_DATA_DIR (or down + rm -rf it)"
}

# format_storage CLUSTER_ID [STORAGE_TOOL_ARGS...]: format $DATA once (needs write_config first).
format_storage() {
  [[ -f "$DATA/kraft-logs/meta.properties" ]] && return 0
  java_opts
  # The id may start with '-', hence --cluster-id=ID rather than -t ID.
  java "${JAVA_OPTS[@]}" kafka.tools.StorageTool format --cluster-id="$1" \
    --config "$DATA/server.properties" "${@:2}" \
    >"$DATA/logs/format.log" 2>&1 || { cat "$DATA/logs/format.log" >&2; die "storage format failed"; }
  echo "$SECURITY" >"$DATA/security"
}

# Start the broker of $DATA in the background; its pid goes to $PIDFILE and STARTED.
STARTED=() STARTED_DATA=()
launch_broker() {
  java_opts
  # 8>&- 9>&-: the broker must not inherit (and so hold on to) the install/up locks.
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$DATA/server.properties" \
    >"$DATA/logs/console.log" 2>&1 </dev/null 8>&- 9>&- &
  echo "$!" >"$PIDFILE"
  STARTED+=("$!") STARTED_DATA+=("$DATA")
}

# await_ready BOOTSTRAP TIMEOUT READY_LOG [KafkaReady OPTIONS...]: probe while the broker(s) of
# STARTED boot (the probe's own JVM start overlaps theirs). An open port is not enough: KRaft
# opens it before the broker is unfenced, so the probe asks for metadata until it answers.
await_ready() {
  local bootstrap="$1" timeout="$2" ready_log="$3" pid
  java -cp "$LIB/*:$LIB/classes" KafkaReady "$bootstrap" "$((timeout * 1000))" "${@:4}" \
    >/dev/null 2>"$ready_log" 8>&- 9>&- &
  local probe=$!
  local deadline=$((SECONDS + timeout + 5))
  while kill -0 "$probe" 2>/dev/null; do
    for pid in "${STARTED[@]}"; do
      kill -0 "$pid" 2>/dev/null || { kill "$probe"; fail_start "pid $pid exited"; }
    done
    ((SECONDS < deadline)) || { kill "$probe"; fail_start "not ready after ${timeout}s"; }
    sleep 0.1
  done
  wait "$probe" || fail_start "$(tail -1 "$ready_log")"
}

# A failed start leaves no half-started broker behind: kill what this command started.
fail_start() {
  local i
  echo "kafka.sh: $1" >&2
  for i in "${!STARTED[@]}"; do
    kill -KILL "${STARTED[i]}" 2>/dev/null || true   # it may have exited by itself
    rm -f "${STARTED_DATA[i]}/kafka.pid"
    echo "--- last 40 lines of ${STARTED_DATA[i]}/logs/server.log:" >&2
    tail -n 40 "${STARTED_DATA[i]}/logs/server.log" >&2 2>/dev/null || true
    tail -n 20 "${STARTED_DATA[i]}/logs/console.log" >&2 2>/dev/null || true
  done
  exit 1
}

up() {
  install
  port_open "$PORT" && { echo "kafka: already answering on 127.0.0.1:$PORT"; return 0; }
  mkdir -p "$DATA/logs"
  exec 9>"$DATA/.up.lock"; flock 9                   # two `up`s on one data dir: one starts it
  port_open "$PORT" && { echo "kafka: already answering on 127.0.0.1:$PORT"; return 0; }
  running_pid >/dev/null && die "pid $(running_pid) runs but 127.0.0.1:$PORT does not answer: try down"
  check_data_mode
  if [[ "$SECURITY" == sasl_ssl ]]; then
    secure_prepare                                   # config, TLS material, client settings
    format_storage "$(new_cluster_id)" "${SCRAM_ARGS[@]}"
  else
    write_config
    format_storage "$(new_cluster_id)"
  fi
  launch_broker
  local -a probe_opts=()
  [[ "$SECURITY" == sasl_ssl ]] && probe_opts=(--command-config "$DATA/client.properties")
  await_ready "127.0.0.1:$PORT" "$TIMEOUT" "$DATA/logs/ready.log" "${probe_opts[@]}"
  echo "kafka $KAFKA_VERSION: up on 127.0.0.1:$PORT (pid ${STARTED[0]}, data $DATA)"
  [[ "$SECURITY" != sasl_ssl ]] || secure_summary
}

# terminate PIDS...: SIGTERM (a controlled shutdown, ~2 s) all at once, SIGKILL after 30 s.
terminate() {
  local pid left
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 300); do
    left=0
    for pid; do exited "$pid" || left=1; done
    ((left)) || return 0
    sleep 0.1
  done
  for pid; do
    exited "$pid" && continue
    echo "$NAME: pid $pid ignored SIGTERM for 30 s, killing it" >&2; kill -KILL "$pid"
    for _ in $(seq 100); do exited "$pid" && break; sleep 0.05; done
  done
}

down() {
  local pid
  pid="$(running_pid)" || { rm -f "$PIDFILE"; echo "$NAME: not running (port $PORT)"; return 0; }
  terminate "$pid"
  rm -f "$PIDFILE"; echo "$NAME: stopped pid $pid (port $PORT)"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "$NAME: running, pid $pid, port $PORT, data $DATA"
  else
    echo "$NAME: stopped (port $PORT, data $DATA)"; exit 3
  fi
}

kill_broker() {
  local pid
  pid="$(running_pid)" || { echo "$NAME: not running (port $PORT)"; return 0; }
  kill -KILL "$pid"
  for _ in $(seq 100); do exited "$pid" && break; sleep 0.05; done   # its port is closed then
  rm -f "$PIDFILE"; echo "$NAME: killed pid $pid (port $PORT)"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  kill) kill_broker ;;
  logs) exec tail -n 100 -F "$LOG" ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  cluster-status) cluster_status ;;
  cluster-kill) cluster_kill "${2:-}" ;;
  cluster-start) cluster_start "${2:-}" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
