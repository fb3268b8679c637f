# shellcheck shell=bash disable=SC2034  # (sets globals kafka.sh uses)
# A local N-node KRaft cluster on 127.0.0.1 (`kafka.sh cluster-*`). Sourced by kafka.sh: each
# node is a broker like the single one, with PORT, CONTROLLER_PORT, DATA, ... pointed at it by
# cluster_node. Every node is broker+controller; the controllers form a static quorum
# (controller.quorum.voters), so a majority of the nodes must run for the cluster to work.

CLUSTER_DIR="$(realpath -m "${KAFKA_CLUSTER_DIR:-$HERE/cluster}")"
CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-19092}"
CLUSTER_HEAP="${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx512m}"   # 3 nodes + a broker on 2 cores
CLUSTER_TIMEOUT="${KAFKA_UP_TIMEOUT:-120}"   # N JVMs boot at once on a small box

# The cluster's size: the one it was formatted with (KAFKA_CLUSTER_DIR/nodes), else NODES or 3.
# A formatted cluster cannot change its voters by restarting with another NODES.
cluster_size() {
  cluster_check_security
  local stored
  stored="$(cat "$CLUSTER_DIR/nodes" 2>/dev/null)" || stored=""
  if [[ -n "$stored" ]]; then
    [[ -z "${NODES:-}" || "$NODES" == "$stored" ]] ||
      die "$CLUSTER_DIR holds a $stored-node cluster, not NODES=$NODES: cluster-down, rm -rf it"
    echo "$stored"
  else
    [[ "${NODES:-3}" =~ ^[1-9][0-9]*$ ]] || die "NODES must be a positive number, not '$NODES'"
    echo "${NODES:-3}"
  fi
}

# The cluster has no secured variant: refuse rather than write sasl_ssl into PLAINTEXT nodes.
cluster_check_security() {
  [[ "$SECURITY" == plaintext ]] || die "the local cluster is PLAINTEXT only (unset KAFKA_SECURITY)"
}

# cluster_node I: point the single-broker globals at node I.
cluster_node() {
  NODE="$1"
  PORT=$((CLUSTER_PORT + NODE - 1))
  CONTROLLER_PORT=$((PORT + 1000))
  DATA="$CLUSTER_DIR/node-$NODE"
  PIDFILE="$DATA/kafka.pid"
  LOG="$DATA/logs/server.log"
  HEAP="$CLUSTER_HEAP"
  NAME="kafka node $NODE"
}

# cluster_node_arg N COUNT: N must name a node of this cluster.
cluster_node_arg() {
  [[ "$1" =~ ^[1-9][0-9]*$ && "$1" -le "$2" ]] || die "node must be 1..$2, not '$1'"
}

cluster_bootstrap() {
  local n="$1" i list=()
  for ((i = 1; i <= n; i++)); do list+=("127.0.0.1:$((CLUSTER_PORT + i - 1))"); done
  (IFS=,; echo "${list[*]}")
}

# write_cluster_config N: server.properties of the current node (cluster_node) in an N-node cluster.
write_cluster_config() {
  local n="$1" i voters=()
  local rf=$((n < 3 ? n : 3))
  local min_isr=$((rf > 1 ? rf - 1 : 1))
  for ((i = 1; i <= n; i++)); do voters+=("$i@127.0.0.1:$((CLUSTER_PORT + i - 1 + 1000))"); done
  cat >"$DATA/server.properties" <<EOF
# Written by broker/kafka.sh cluster-up/cluster-start: edits are overwritten.
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
EOF
  storage_properties "$rf" "$min_isr" >>"$DATA/server.properties"
}

# The nodes' processes must not hold the cluster lock; launch_broker closes fd 9 for them.
cluster_lock() { mkdir -p "$CLUSTER_DIR"; exec 9>"$CLUSTER_DIR/.up.lock"; flock 9; }

# cluster_start_nodes N CLUSTER_ID NODE...: start these nodes of an N-node cluster (not awaited).
cluster_start_nodes() {
  local n="$1" id="$2" i pid pids=()
  for i in "${@:3}"; do
    cluster_node "$i"
    running_pid >/dev/null &&
      die "$NAME: pid $(running_pid) runs but port $PORT does not answer: cluster-kill $i"
    mkdir -p "$DATA/logs"
    write_cluster_config "$n"
    # Format new nodes all at once and before any boots: each format is a JVM start of its
    # own, which would compete with the booting nodes for the CPU (a first cluster-up took
    # 65 s with formats and boots interleaved).
    (format_storage "$id") & pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || exit 1; done   # format_storage said why
  for i in "${@:3}"; do cluster_node "$i"; launch_broker; done
}

# The shared cluster id, made once (and the size it was made for, see cluster_size).
cluster_id() {
  if [[ ! -s "$CLUSTER_DIR/cluster.id" ]]; then
    compgen -G "$CLUSTER_DIR/node-*/kraft-logs/meta.properties" >/dev/null &&
      die "$CLUSTER_DIR/cluster.id is gone but its nodes are formatted: cluster-down, rm -rf it"
    new_cluster_id >"$CLUSTER_DIR/cluster.id"
    echo "$1" >"$CLUSTER_DIR/nodes"
  fi
  cat "$CLUSTER_DIR/cluster.id"
}

cluster_up() {
  install
  cluster_lock
  local n i id
  n="$(cluster_size)"
  id="$(cluster_id "$n")"
  local todo=()
  for ((i = 1; i <= n; i++)); do cluster_node "$i"; port_open "$PORT" || todo+=("$i"); done
  if ((${#todo[@]})); then
    cluster_start_nodes "$n" "$id" "${todo[@]}"
    # Every node must be a live broker: a quorum alone (a majority) is not the whole cluster.
    await_ready "$(cluster_bootstrap "$n")" "$CLUSTER_TIMEOUT" "$CLUSTER_DIR/ready.log" --brokers "$n"
    echo "kafka $KAFKA_VERSION: $n-node cluster up (started ${#STARTED[@]} node(s), data $CLUSTER_DIR); bootstrap:"
  else
    echo "kafka: $n-node cluster already running (data $CLUSTER_DIR); bootstrap:"
  fi
  cluster_bootstrap "$n"
}

cluster_start() {
  install
  local n id
  n="$(cluster_size)"
  cluster_node_arg "$1" "$n"
  [[ -f "$CLUSTER_DIR/cluster.id" ]] || die "no cluster in $CLUSTER_DIR: cluster-up first"
  cluster_lock
  id="$(cluster_id "$n")"
  cluster_node "$1"
  port_open "$PORT" && { echo "$NAME: already answering on 127.0.0.1:$PORT"; return 0; }
  cluster_start_nodes "$n" "$id" "$1"
  cluster_node "$1"
  # Asked of the node itself: it lists itself once registered and unfenced.
  await_ready "127.0.0.1:$PORT" "$CLUSTER_TIMEOUT" "$DATA/logs/ready.log" --node "$1"
  echo "$NAME: back in the cluster on 127.0.0.1:$PORT (pid ${STARTED[0]})"
}

cluster_kill() {
  local n
  n="$(cluster_size)"
  cluster_node_arg "$1" "$n"
  cluster_node "$1"
  kill_broker
}

# All nodes at once: stopped one by one, the last ones would lose the controller quorum and
# wait for it in their controlled shutdown.
cluster_down() {
  local n i pid pids=() nodes=()
  n="$(cluster_size)"
  for ((i = 1; i <= n; i++)); do
    cluster_node "$i"
    pid="$(running_pid)" && { pids+=("$pid"); nodes+=("$i"); }
  done
  ((${#pids[@]})) || { echo "kafka: no node of the cluster in $CLUSTER_DIR is running"; return 0; }
  NAME="kafka cluster"
  terminate "${pids[@]}"
  for i in "${nodes[@]}"; do rm -f "$CLUSTER_DIR/node-$i/kafka.pid"; done
  echo "kafka: stopped node(s) ${nodes[*]} (pids ${pids[*]}) of $CLUSTER_DIR"
}

cluster_status() {
  local n i pid down=0
  n="$(cluster_size)"
  for ((i = 1; i <= n; i++)); do
    cluster_node "$i"
    if pid="$(running_pid)"; then
      echo "$NAME: running, pid $pid, port $PORT, data $DATA"
    else
      echo "$NAME: stopped (port $PORT, data $DATA)"; down=1
    fi
  done
  echo "bootstrap: $(cluster_bootstrap "$n")"
  ((down == 0)) || exit 3
}
