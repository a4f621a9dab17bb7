#!/usr/bin/env bash
# A secured single-node Kafka for txform's tests: the broker of scripts/kafka.sh with
#   - SASL_SSL on 127.0.0.1:9392 (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN and OAUTHBEARER with Kafka's
#     unsecured-JWT validator, for the OIDC test's local token endpoint, kafka/oidc-token-server.py),
#   - mutual TLS on 127.0.0.1:9394 (client certificates; the principal is the certificate's CN),
#   - the controller on 9393 (PLAINTEXT, loopback only),
#   - StandardAuthorizer, nothing allowed without an ACL, super-user `admin`,
#   - SCRAM users created at format time and the ACLs of scripts/kafka/SecureSetup.java.
# Certificates come from a throw-away CA the script makes itself (openssl). Every password here is
# a test fixture of this throw-away broker; the tests look for them in txform's output.
#
# Usage: scripts/kafka-secure.sh start|stop|kill|status|reset|logs|bootstrap|mtls-bootstrap|tls-dir
# State: TXFORM_KAFKA_SECURE_DIR (default <repo>/.kafka-secure); tls/ holds the certificates.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE="${TXFORM_KAFKA_SECURE_DIR:-$REPO_DIR/.kafka-secure}"
TLS="$STATE/tls"
HOST=127.0.0.1
SASL_PORT=9392
CONTROLLER_PORT=9393
MTLS_PORT=9394

# Throw-away credentials of the test broker (see the header).
ADMIN_PASSWORD=admin-secret-0f6b
STORE_PASSWORD=store-secret-91c2
export TXFORM_SECURE_APP_PASSWORD=app-scram-secret-7d41
CLIENT_KEY_PASSWORD=client-key-secret-3e88
USERS=(app no-txn no-group no-sink no-dlq)

log() { echo "kafka-secure: $*" >&2; }
die() { echo "kafka-secure: error: $*" >&2; exit 1; }

kafka() {
    TXFORM_KAFKA_DIR="$STATE" TXFORM_KAFKA_PORT="$SASL_PORT" "$SCRIPT_DIR/kafka.sh" "$@"
}

# sign NAME SUBJECT SAN: a key and a certificate for NAME signed by the test CA.
sign() {
    local name=$1 subject=$2 san=$3
    openssl req -new -newkey rsa:2048 -nodes -keyout "$TLS/$name.key" -subj "$subject" \
        -out "$TLS/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" >"$TLS/$name.ext"
    openssl x509 -req -in "$TLS/$name.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$TLS/$name.ext" -out "$TLS/$name.pem" 2>/dev/null
    rm -f "$TLS/$name.csr" "$TLS/$name.ext"
}

# The CA, the broker's keystore, a client certificate (CN=mtls-app, key encrypted) and a second CA
# that signed nothing the broker has (for the untrusted-certificate test). Made once.
certificates() {
    [[ -f "$TLS/.done" ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (scripts/setup.sh installs it)"
    rm -rf "$TLS"
    mkdir -p "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=txform test CA" \
        -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=some other CA" \
        -keyout "$TLS/other-ca.key" -out "$TLS/other-ca.pem" 2>/dev/null
    # Only the IP address: connecting as `localhost` is the wrong-host-name test.
    sign broker "/CN=txform test broker" "IP:$HOST"
    openssl pkcs12 -export -in "$TLS/broker.pem" -inkey "$TLS/broker.key" -name broker \
        -passout "pass:$STORE_PASSWORD" -out "$TLS/broker.p12"
    sign client "/CN=mtls-app" "DNS:mtls-app"
    openssl pkey -in "$TLS/client.key" -aes256 -passout "pass:$CLIENT_KEY_PASSWORD" \
        -out "$TLS/client-encrypted.key"
    mv "$TLS/client-encrypted.key" "$TLS/client.key"
    rm -f "$TLS/broker.key" "$TLS/ca.srl"
    touch "$TLS/.done"
}

scram_users() {
    local scram='--add-scram'$'\n'"SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]"
    local user
    for user in "${USERS[@]}"; do
        scram+=$'\n''--add-scram'$'\n'"SCRAM-SHA-512=[name=$user,password=$TXFORM_SECURE_APP_PASSWORD]"
        scram+=$'\n''--add-scram'$'\n'"SCRAM-SHA-256=[name=$user,password=$TXFORM_SECURE_APP_PASSWORD]"
    done
    printf '%s' "$scram"
}

broker_config() {
    local plain_users="user_admin=\"$ADMIN_PASSWORD\"" user
    for user in "${USERS[@]}"; do
        plain_users+=" user_$user=\"$TXFORM_SECURE_APP_PASSWORD\""
    done
    cat <<EOF
listeners=SASL_SSL://$HOST:$SASL_PORT,SSL://$HOST:$MTLS_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOST:$SASL_PORT,SSL://$HOST:$MTLS_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="admin";
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$ADMIN_PASSWORD" $plain_users;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
listener.name.ssl.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS
EOF
}

admin_properties() {
    cat >"$STATE/admin.properties" <<EOF
bootstrap.servers=$HOST:$SASL_PORT
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
EOF
}

acls() {
    [[ -f "$STATE/.acls-done" ]] && return 0
    admin_properties
    local lib="$STATE/lib"
    java -Xmx256m -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
        -Dtxform.kafka.log.level=WARN -cp "$lib/*" "$SCRIPT_DIR/kafka/SecureSetup.java" \
        "$STATE/admin.properties" >&2 || die "creating the ACLs failed"
    touch "$STATE/.acls-done"
}

cmd_start() {
    mkdir -p "$STATE"
    certificates
    TXFORM_KAFKA_EXTRA_CONFIG="$(broker_config)" TXFORM_KAFKA_FORMAT_ARGS="$(scram_users)" kafka start
    acls
}

case "${1:-}" in
    start) cmd_start ;;
    stop | kill | status | logs) kafka "$@" ;;
    reset) kafka reset; rm -f "$STATE/.acls-done" ;;
    bootstrap) echo "$HOST:$SASL_PORT" ;;
    mtls-bootstrap) echo "$HOST:$MTLS_PORT" ;;
    tls-dir) echo "$TLS" ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
