#!/usr/bin/env bash
# TLS material and passwords for the SASL_SSL broker (`KAFKA_SECURITY=sasl_ssl kafka.sh up`),
# made with Debian's openssl. Sourced by kafka.sh; also runnable alone: `bash broker/tls.sh DIR`.
#
# DIR after make_tls_material (all made once, then kept; a leaf certificate that expires within a
# day is made again from the same CA, so clients that trust ca.pem keep working):
#   ca.pem ca-key.pem              the private CA every client trusts (KAFKA_SSL_CAFILE)
#   broker-cert.pem                the broker's certificate: SAN IP:127.0.0.1, DNS:localhost
#   broker-keystore.pem            Kafka's PEM keystore: encrypted PKCS#8 key + cert + CA
#   broker-key-password            the password of that key (Kafka needs one for a PEM keystore)
#   client-cert.pem client-key.pem a client certificate (CN=voix) for the mutual-TLS listener
#   wrong-ca.pem                   an unrelated CA, for "wrong CA" tests (its key: wrong-ca-key.pem)
#   wrong-client-cert.pem wrong-client-key.pem   a client certificate signed by the wrong CA
#   client-password admin-password the SCRAM passwords of the users voix and admin
# Keys and passwords are 0600, the directory 0700.
set -euo pipefail

TLS_DAYS_CA=3650
TLS_DAYS_LEAF=825   # what browsers accept; irrelevant here but keeps the certificates ordinary

# An openssl config with just the extensions sections: `-config` keeps the system openssl.cnf
# from adding its own (duplicate) extensions.
tls_openssl_config() {
  cat <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
# The broker is also a TLS client: of its own SASL_SSL listener (inter-broker) and controller.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

# True if the certificate exists and is still valid tomorrow.
tls_cert_fresh() { [[ -f "$1" ]] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

tls_leaf_ok() { tls_cert_fresh "$1/$2-cert.pem" && [[ -f "$1/$2-key.pem" ]]; }

# A 48-hex-digit random secret: hex needs no quoting in JAAS configs or env files.
tls_secret() { [[ -s "$1" ]] || openssl rand -hex 24 >"$1"; }

# tls_ca DIR NAME CN: a self-signed EC P-256 CA, NAME.pem and NAME-key.pem.
tls_ca() {
  local dir="$1" name="$2" cn="$3"
  [[ -f "$dir/$name.pem" && -f "$dir/$name-key.pem" ]] && return 0
  openssl req -x509 -new -config <(tls_openssl_config) -extensions ca \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc -keyout "$dir/$name-key.pem" \
    -subj "/O=voix-ingest local/CN=$cn" -days "$TLS_DAYS_CA" -sha256 -out "$dir/$name.pem" 2>/dev/null
}

# tls_leaf DIR NAME CN EXTENSIONS CA: a new NAME-cert.pem and unencrypted NAME-key.pem signed by CA.
tls_leaf() {
  local dir="$1" name="$2" cn="$3" ext="$4" ca="$5"
  openssl req -new -config <(tls_openssl_config) -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -noenc -keyout "$dir/$name-key.pem" -subj "/O=voix-ingest local/CN=$cn" \
    -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$TLS_DAYS_LEAF" -sha256 \
    -extfile <(tls_openssl_config) -extensions "$ext" -out "$dir/$name-cert.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
}

# The broker's PEM keystore from a new broker-key.pem. Kafka insists on a key password for a
# PEM keystore file and then reads the key as encrypted PKCS#8 through a SecretKeyFactory named
# after the algorithm: openssl's default PBES2 fails there ("PBES2 SecretKeyFactory not
# available" on Java 17), PKCS#5 v1.5-style PBE-SHA1-3DES works. Weak, but the password lies
# beside the key anyway: the encryption only satisfies Kafka. The plain key is dropped.
tls_broker_keystore() {
  local dir="$1"
  tls_secret "$dir/broker-key-password"
  {
    openssl pkcs8 -topk8 -in "$dir/broker-key.pem" -v1 PBE-SHA1-3DES \
      -passout "file:$dir/broker-key-password"
    cat "$dir/broker-cert.pem" "$dir/ca.pem"
  } >"$dir/broker-keystore.pem.tmp"
  mv "$dir/broker-keystore.pem.tmp" "$dir/broker-keystore.pem"
  rm -f "$dir/broker-key.pem"
}

# make_tls_material DIR: everything listed at the top, made where missing (idempotent).
make_tls_material() {
  local dir="$1"
  mkdir -p "$dir"
  chmod 700 "$dir"
  (
    umask 077
    tls_ca "$dir" ca "voix-ingest local CA"
    tls_ca "$dir" wrong-ca "unrelated CA (for wrong-CA tests)"
    if ! tls_cert_fresh "$dir/broker-cert.pem" || [[ ! -f "$dir/broker-keystore.pem" ]]; then
      tls_leaf "$dir" broker localhost server ca
      tls_broker_keystore "$dir"
    fi
    tls_leaf_ok "$dir" client || tls_leaf "$dir" client voix client ca
    tls_leaf_ok "$dir" wrong-client || tls_leaf "$dir" wrong-client voix client wrong-ca
    tls_secret "$dir/client-password"
    tls_secret "$dir/admin-password"
  )
  chmod 644 "$dir"/ca.pem "$dir"/wrong-ca.pem "$dir"/*-cert.pem
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  [[ $# -eq 1 ]] || { echo "usage: bash broker/tls.sh DIR" >&2; exit 2; }
  make_tls_material "$1"
  ls -l "$1"
fi
