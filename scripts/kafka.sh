#!/usr/bin/env bash
# Manage a real Apache Kafka single-node KRaft broker (combined broker+controller)
# for txform's integration / exactly-once tests. Bound to 127.0.0.1 only.
#
# The broker is assembled from Maven Central (no Docker, no kafka.apache.org
# tarball): scripts/kafka/pom.xml + `mvn dependency:copy-dependencies`.
#
# Usage: scripts/kafka.sh <command>
#   setup        assemble broker jars into $STATE/lib (idempotent)
#   setup-tools  assemble kafka-tools jars into $STATE/tools-lib (idempotent; heavy)
#   start        setup if needed, format storage once, start broker, wait until ready
#   stop         SIGTERM, wait up to 30 s, then SIGKILL (idempotent)
#   kill         SIGKILL immediately (fault injection); `start` afterwards keeps data
#   restart      stop + start
#   status       print running/stopped; exit 0 if running, 1 otherwise
#   bootstrap    print 127.0.0.1:<port>
#   reset        stop and delete the data dir (jars are kept)
#   logs [N]     print the last N (default 30) broker log lines
#   tool CLASS [ARGS...]
#                run a kafka-tools main class with the tools classpath (runs
#                setup-tools if needed), e.g.
#                scripts/kafka.sh tool org.apache.kafka.tools.TopicCommand \
#                    --bootstrap-server "$(scripts/kafka.sh bootstrap)" --list
#   tools-classpath
#                print the classpath for kafka-tools (runs setup-tools if needed)
#
# Environment:
#   TXFORM_KAFKA_DIR            state dir (default <repo>/.kafka): lib/, tools-lib/,
#                               data/, server.properties, kafka.log, kafka.pid
#   TXFORM_KAFKA_PORT           broker port (default 9092); controller = port + 1
#   TXFORM_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 120)
#   TXFORM_KAFKA_HEAP           JVM -Xmx (default 1g)
#   TXFORM_KAFKA_JAVA_OPTS      extra JVM options for the broker
#   TXFORM_KAFKA_EXTRA_CONFIG   extra server.properties lines (newline separated),
#                               appended last so they override the defaults
#   TXFORM_KAFKA_FORMAT_ARGS    extra arguments for the one-time storage format
#                               (newline separated), e.g. `--add-scram` users
set -euo pipefail

KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J_CONF="$SCRIPT_DIR/kafka/log4j2.properties"

STATE="${TXFORM_KAFKA_DIR:-$REPO_DIR/.kafka}"
PORT="${TXFORM_KAFKA_PORT:-9092}"
CPORT=$((PORT + 1))
HOST=127.0.0.1
START_TIMEOUT="${TXFORM_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT=30
HEAP="${TXFORM_KAFKA_HEAP:-1g}"

LIB="$STATE/lib"
TOOLS_LIB="$STATE/tools-lib"
DATA="$STATE/data"
CONF="$STATE/server.properties"
LOG="$STATE/kafka.log"
PIDFILE="$STATE/kafka.pid"
LOCKFILE="$STATE/.lock"
MARKER_NAME=".txform-assembled"
LIB_MARKER_CONTENT="kafka_2.13=$KAFKA_VERSION log4j-slf4j-impl=$LOG4J_VERSION"
TOOLS_MARKER_CONTENT="kafka-tools=$KAFKA_VERSION log4j-slf4j-impl=$LOG4J_VERSION"
PORT_MARKER="$DATA/.txform-controller-port"

log() { echo "kafka: $*" >&2; }
die() { echo "kafka: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

need_java() {
    command -v java >/dev/null 2>&1 || die "java not found on PATH (Kafka $KAFKA_VERSION needs Java 17+)"
}

# Serialize concurrent invocations (parallel test runners). fd 9 must NOT leak
# into the broker process, or the lock would be held for the broker's lifetime.
lock_state() {
    mkdir -p "$STATE"
    exec 9>"$LOCKFILE"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
}

port_open() { # port_open PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Print the broker pid if the pid file names a live process that is our broker.
broker_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must be kafka.Kafka on our config.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        local cmd
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        [[ "$cmd" == *kafka.Kafka*"$CONF"* ]] || return 1
    fi
    echo "$pid"
}

# True once PID no longer holds resources. A SIGKILLed multi-threaded JVM can
# show its main thread as a zombie while other threads are still tearing down
# (sockets still open), so a zombie only counts as gone once it has no other
# threads left (i.e. it is merely waiting to be reaped).
proc_gone() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 0
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -z "$state" ]] && return 0
    if [[ "$state" == Z ]]; then
        local tasks
        tasks="$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        ((tasks <= 1)) && return 0
    fi
    return 1
}

wait_gone() { # wait_gone PID SECONDS -> 0 if the process is gone and its ports are closed
    local pid=$1 deadline=$((SECONDS + $2))
    until proc_gone "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    # Belt and braces: the listeners must be closed before a restart.
    while port_open "$PORT" || port_open "$CPORT"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    return 0
}

tail_log() {
    local n="${1:-30}"
    if [[ -f "$LOG" ]]; then
        echo "---- last $n lines of $LOG ----" >&2
        tail -n "$n" "$LOG" >&2
        echo "----" >&2
    else
        echo "(no log file at $LOG)" >&2
    fi
}

# Ready = "Kafka Server started" in the current log (rotated on every launch)
# AND the broker port accepts TCP. The port opens seconds before the broker
# has registered/unfenced itself, so the port alone is not enough.
broker_ready() {
    grep -q "Kafka Server started" "$LOG" 2>/dev/null && port_open "$PORT"
}

running_line() {
    echo "kafka: running pid=$1 bootstrap=$HOST:$PORT log=$LOG"
}

# ---------------------------------------------------------------- setup

# assemble DIR MARKER_CONTENT [mvn args...]
assemble() {
    local dir=$1 marker=$2
    shift 2
    if [[ -f "$dir/$MARKER_NAME" ]] && [[ "$(cat "$dir/$MARKER_NAME")" == "$marker" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (needed once to fetch Kafka jars from Maven Central)"
    local tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "assembling $marker into $dir (mvn dependency:copy-dependencies) ..."
    local t0=$SECONDS
    # Maven 3.8's -q still prints bare ANSI resets; keep its output for errors only.
    local mvn_out="$STATE/mvn-$$.log"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" "$@" \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$mvn_out" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$mvn_out" | tail -n 40 >&2
        rm -rf "$tmp" "$mvn_out"
        die "mvn dependency:copy-dependencies failed for $marker"
    fi
    rm -f "$mvn_out"
    ls "$tmp"/*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "mvn produced no jars in $tmp"; }
    echo "$marker" >"$tmp/$MARKER_NAME"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "assembled $(find "$dir" -maxdepth 1 -name '*.jar' | wc -l) jars ($(du -sh "$dir" | cut -f1)) in $((SECONDS - t0))s"
}

cmd_setup() {
    assemble "$LIB" "$LIB_MARKER_CONTENT"
}

cmd_setup_tools() {
    assemble "$TOOLS_LIB" "$TOOLS_MARKER_CONTENT" -Ptools
}

# ---------------------------------------------------------------- config / format

write_config() {
    mkdir -p "$DATA"
    local tmp="$CONF.tmp.$$"
    cat >"$tmp" <<EOF
# Generated by scripts/kafka.sh on every start; edits are overwritten.
# Single-node KRaft (combined broker+controller) for txform tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CPORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA

# One node: every replication factor / min.isr must be 1, or transactions time
# out with COORDINATOR_NOT_AVAILABLE.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast groups for tests; allow short client session timeouts.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

auto.create.topics.enable=false
delete.topic.enable=true

# After a SIGKILL the restarted broker cannot register until the previous
# incarnation's session expires (DUPLICATE_BROKER_REGISTRATION); the default
# 9 s session made restart-after-kill take ~14 s. Heartbeats are in-process
# over loopback, so a short session is safe here.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

# Keep the JVM light.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
    if [[ -n "${TXFORM_KAFKA_EXTRA_CONFIG:-}" ]]; then
        printf '\n# TXFORM_KAFKA_EXTRA_CONFIG\n%s\n' "$TXFORM_KAFKA_EXTRA_CONFIG" >>"$tmp"
    fi
    mv "$tmp" "$CONF"
}

storage_tool() {
    java -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONF" -Dtxform.kafka.log.level=WARN \
        -cp "$LIB/*" kafka.tools.StorageTool "$@"
}

format_if_needed() {
    if [[ -f "$DATA/meta.properties" ]]; then
        # --standalone records the controller endpoint in the metadata log, so
        # the controller port cannot change without a reset.
        if [[ -f "$PORT_MARKER" ]] && [[ "$(cat "$PORT_MARKER")" != "$CPORT" ]]; then
            die "data in $DATA was formatted for controller port $(cat "$PORT_MARKER"), now $CPORT (TXFORM_KAFKA_PORT=$PORT); run '$0 reset' or use another TXFORM_KAFKA_DIR"
        fi
        return 0
    fi
    local cluster_id t0=$SECONDS
    cluster_id="$(storage_tool random-uuid | tail -n 1 | tr -d '[:space:]')"
    [[ -n "$cluster_id" ]] || die "StorageTool random-uuid printed nothing"
    local -a format_args=()
    [[ -n "${TXFORM_KAFKA_FORMAT_ARGS:-}" ]] && mapfile -t format_args <<<"$TXFORM_KAFKA_FORMAT_ARGS"
    storage_tool format --standalone -t "$cluster_id" -c "$CONF" "${format_args[@]}" >&2 \
        || die "StorageTool format failed (data dir $DATA)"
    echo "$CPORT" >"$PORT_MARKER"
    log "formatted $DATA (cluster.id=$cluster_id) in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- lifecycle

wait_ready() { # wait_ready PID
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if proc_gone "$pid"; then
            rm -f "$PIDFILE"
            tail_log 30
            die "broker process $pid exited during startup"
        fi
        if broker_ready; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            tail_log 30
            die "broker (pid $pid) not ready after ${START_TIMEOUT}s (no 'Kafka Server started' and/or $HOST:$PORT not accepting connections); it is left running, use '$0 stop' or '$0 kill'"
        fi
        sleep 0.25
    done
}

cmd_start() {
    need_java
    lock_state
    local pid
    if pid="$(broker_pid)"; then
        if broker_ready; then
            running_line "$pid"
            return 0
        fi
        log "pid $pid alive but not ready yet; waiting"
        wait_ready "$pid"
        running_line "$pid"
        return 0
    fi
    rm -f "$PIDFILE"
    if port_open "$PORT"; then
        die "$HOST:$PORT already accepts connections but is not our broker (no live pid in $PIDFILE); stop that process or set TXFORM_KAFKA_PORT"
    fi
    if port_open "$CPORT"; then
        die "controller port $HOST:$CPORT is already in use; stop that process or set TXFORM_KAFKA_PORT"
    fi

    cmd_setup
    write_config
    format_if_needed

    local -a extra_opts=()
    read -r -a extra_opts <<<"${TXFORM_KAFKA_JAVA_OPTS:-}"
    # Keep the previous run's log (e.g. after a `kill`) for post-mortems.
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
    local t0=$SECONDS
    # setsid: own session, so the broker survives the caller's process group
    # being torn down (test harness timeouts, CI steps). The inner bash writes
    # its own pid and then execs java, so the pid file names the JVM itself.
    # shellcheck disable=SC2016
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
        java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J_CONF" \
        "${extra_opts[@]}" \
        -cp "$LIB/*" kafka.Kafka "$CONF" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    local deadline=$((SECONDS + 10))
    until [[ -s "$PIDFILE" ]]; do
        ((SECONDS < deadline)) || { tail_log 30; die "broker launcher did not write $PIDFILE"; }
        sleep 0.05
    done
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    wait_ready "$pid"
    log "started in $((SECONDS - t0))s"
    running_line "$pid"
}

cmd_stop() {
    lock_state
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PIDFILE"
        echo "kafka: stopped"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "pid $pid did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$PIDFILE"
    echo "kafka: stopped (was pid=$pid)"
}

cmd_kill() {
    lock_state
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PIDFILE"
        echo "kafka: stopped (nothing to kill)"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    rm -f "$PIDFILE"
    echo "kafka: killed pid=$pid"
}

cmd_status() {
    local pid
    if pid="$(broker_pid)"; then
        if broker_ready; then
            running_line "$pid"
            return 0
        fi
        echo "kafka: starting/unresponsive pid=$pid bootstrap=$HOST:$PORT (not ready) log=$LOG"
        return 1
    fi
    echo "kafka: stopped"
    return 1
}

cmd_reset() {
    cmd_stop
    lock_state
    rm -rf "$DATA" "$CONF"
    echo "kafka: reset (deleted $DATA; jars kept)"
}

cmd_tools_classpath() {
    need_java
    lock_state
    cmd_setup_tools
    exec 9>&-
    echo "$TOOLS_LIB/*"
}

cmd_tool() {
    [[ $# -ge 1 ]] || die "usage: $0 tool MAIN_CLASS [ARGS...]"
    need_java
    lock_state
    cmd_setup_tools
    exec 9>&-
    exec java -Xmx512m -Dlog4j2.configurationFile="$LOG4J_CONF" \
        -Dtxform.kafka.log.level="${TXFORM_KAFKA_TOOL_LOG_LEVEL:-WARN}" \
        -cp "$TOOLS_LIB/*" "$@"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        setup) need_java; lock_state; cmd_setup; echo "kafka: broker jars in $LIB" ;;
        setup-tools) need_java; lock_state; cmd_setup_tools; echo "kafka: tools jars in $TOOLS_LIB" ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        kill) cmd_kill ;;
        restart) cmd_stop; exec 9>&-; cmd_start ;;
        status) cmd_status ;;
        bootstrap) echo "$HOST:$PORT" ;;
        reset) cmd_reset ;;
        logs) [[ -f "$LOG" ]] && tail -n "${1:-30}" "$LOG" ;;
        tool) cmd_tool "$@" ;;
        tools-classpath) cmd_tools_classpath ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
