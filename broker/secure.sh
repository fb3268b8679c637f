# shellcheck shell=bash disable=SC2034  # (sets globals kafka.sh uses)
# The SASL_SSL-only broker of `KAFKA_SECURITY=sasl_ssl kafka.sh up`. Sourced by kafka.sh, whose
# globals (PORT, MTLS_PORT, CONTROLLER_PORT, DATA) it uses; TLS material comes from tls.sh.
#
# Listeners, all on 127.0.0.1:
#   SASL_SSL   PORT             clients and inter-broker traffic, SCRAM-SHA-512 (users voix, admin)
#   MTLS       MTLS_PORT        SSL with ssl.client.auth=required: a certificate from ca.pem is
#                               the credential (principal User:voix for client-cert.pem)
#   CONTROLLER CONTROLLER_PORT  SASL_SSL with PLAIN, only the admin user. Not advertised, but
#                               since KIP-919 an admin client can bootstrap from a controller
#                               (--bootstrap-controller) and alter configs there: a PLAINTEXT one
#                               would let any local process past SASL. SCRAM is not possible
#                               here: its users live in the metadata log the controllers serve.
# No authorizer: every authenticated user may do everything (enough for a local test broker).

SCRAM_MECHANISM=SCRAM-SHA-512
CLIENT_USER=voix
ADMIN_USER="admin"

# Config, TLS material, client settings and SCRAM_ARGS (for format_storage) for $DATA.
secure_prepare() {
  local tls="$DATA/tls"
  # client.env is sourced by shells and split on '=' by parsers: its paths cannot be quoted.
  [[ "$DATA" =~ ^[A-Za-z0-9._/+-]+$ ]] ||
    die "KAFKA_DATA_DIR $DATA: only letters, digits and ._/+- can go unquoted into client.env"
  # The SCRAM users were written with these passwords at format time; new ones would lock
  # the broker out of its own listener.
  if [[ -f "$DATA/kraft-logs/meta.properties" && ! -s "$tls/admin-password" ]]; then
    die "$tls/admin-password is gone but $DATA was formatted with it: down, rm -rf $DATA, up"
  fi
  make_tls_material "$tls"
  ADMIN_PASSWORD="$(<"$tls/admin-password")"
  CLIENT_PASSWORD="$(<"$tls/client-password")"
  (
    umask 077   # server.properties and client.properties hold passwords
    write_secure_config
    write_client_settings
  )
  # Passwords on the storage tool's command line are visible in ps for a moment: the tool has
  # no other way to take them. (Hex: no ',' or ']' to break its [name=...,password=...] syntax.)
  SCRAM_ARGS=(--add-scram "$SCRAM_MECHANISM=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]"
              --add-scram "$SCRAM_MECHANISM=[name=$CLIENT_USER,password=$CLIENT_PASSWORD]")
}

write_secure_config() {
  local tls="$DATA/tls"
  cat >"$DATA/server.properties" <<EOF
# Written by KAFKA_SECURITY=sasl_ssl broker/kafka.sh up: edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$PORT,MTLS://127.0.0.1:$MTLS_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT,MTLS://127.0.0.1:$MTLS_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL

# SASL_SSL: SCRAM-SHA-512 only; the broker talks to itself as the admin user.
sasl.enabled.mechanisms=$SCRAM_MECHANISM
sasl.mechanism.inter.broker.protocol=$SCRAM_MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$ADMIN_PASSWORD";

# CONTROLLER: PLAIN, with the admin as its only user (user_NAME="password" lines).
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$ADMIN_USER" password="$ADMIN_PASSWORD" user_$ADMIN_USER="$ADMIN_PASSWORD";

# TLS on every listener with the broker certificate (SAN IP:127.0.0.1, DNS:localhost).
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker-keystore.pem
ssl.key.password=$(<"$tls/broker-key-password")
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
# MTLS: a client certificate is the credential; CN=voix becomes User:voix, as over SCRAM.
listener.name.mtls.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT

EOF
  storage_properties 1 1 >>"$DATA/server.properties"
}

# client.env and client-mtls.env (for the app and test harnesses: plain KEY=VALUE lines, no
# comments, no quotes) and client.properties (for the readiness probe and Kafka's Java tools).
write_client_settings() {
  local tls="$DATA/tls"
  cat >"$DATA/client.env" <<EOF
KAFKA_BOOTSTRAP=127.0.0.1:$PORT
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=$SCRAM_MECHANISM
KAFKA_SASL_USERNAME=$CLIENT_USER
KAFKA_SASL_PASSWORD_FILE=$tls/client-password
KAFKA_SSL_CAFILE=$tls/ca.pem
EOF
  cat >"$DATA/client-mtls.env" <<EOF
KAFKA_BOOTSTRAP=127.0.0.1:$MTLS_PORT
KAFKA_SECURITY_PROTOCOL=SSL
KAFKA_SSL_CAFILE=$tls/ca.pem
KAFKA_SSL_CERTFILE=$tls/client-cert.pem
KAFKA_SSL_KEYFILE=$tls/client-key.pem
EOF
  cat >"$DATA/client.properties" <<EOF
bootstrap.servers=127.0.0.1:$PORT
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM_MECHANISM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$CLIENT_USER" password="$CLIENT_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
EOF
  # The env files hold no secret themselves: readable like the rest of the data dir.
  chmod 644 "$DATA/client.env" "$DATA/client-mtls.env"
}

secure_summary() {
  echo "  SASL_SSL ($SCRAM_MECHANISM, user $CLIENT_USER) on 127.0.0.1:$PORT: settings in $DATA/client.env"
  echo "  mutual TLS (SSL) on 127.0.0.1:$MTLS_PORT: settings in $DATA/client-mtls.env"
}
