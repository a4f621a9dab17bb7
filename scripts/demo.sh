#!/usr/bin/env bash
# The demo, end to end on a fresh machine: installs prerequisites, starts a local Kafka broker (assembled
# from Maven Central), builds txform and the example plugins, seeds a sample topic with JSON orders,
# runs pipeline.toml (filter paid orders, reshape them, copy them exactly once) and shows the output as
# a read_committed reader sees it. Safe to run again: each run seeds orders tagged with its own run id.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ORDERS="${DEMO_ORDERS:-1000}"
IN=txform-demo-input
OUT=txform-demo-output
WORK=.demo
mkdir -p "$WORK"

bash scripts/setup.sh
scripts/kafka.sh start
BOOTSTRAP="$(scripts/kafka.sh bootstrap)"
kafka_tool() { scripts/kafka.sh tool "$@"; }

echo "demo: building txform and the example plugins (release)"
cargo build --release --locked -p txform -p txform-passthrough -p txform-json-transform

for topic in "$IN" "$OUT"; do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
        --create --if-not-exists --topic "$topic" --partitions 3 >/dev/null
done

run="run-$(date +%s)"
echo "demo: seeding $ORDERS orders tagged $run into $IN"
for i in $(seq 1 "$ORDERS"); do
    status=pending
    [ $((i % 2)) -eq 0 ] && status=paid
    printf 'order-%s|{"run":"%s","id":%d,"customer":"c-%d","amount":%d.%02d,"status":"%s","note":"internal"}\n' \
        "$i" "$run" "$i" $((i % 7)) $((i % 100)) $((i % 97)) "$status"
done | kafka_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" --topic "$IN" \
    --property parse.key=true --property key.separator='|' >/dev/null
expected=$((ORDERS / 2))

echo "demo: running target/release/txform run pipeline.toml (log: $WORK/txform.log)"
target/release/txform run pipeline.toml >"$WORK/txform.log" 2>&1 &
txform_pid=$!
trap 'kill "$txform_pid" 2>/dev/null || true' EXIT

# Read the output as a read_committed reader until this run's paid orders are all there.
seen=0
for _ in $(seq 1 30); do
    kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" --topic "$OUT" \
        --from-beginning --isolation-level read_committed --timeout-ms 4000 \
        --property print.key=true --property key.separator=' => ' 2>/dev/null | grep "\"$run\"" >"$WORK/output.txt" || true
    seen=$(wc -l <"$WORK/output.txt")
    [ "$seen" -ge "$expected" ] && break
    kill -0 "$txform_pid" 2>/dev/null || { echo "demo: txform exited early:"; tail -20 "$WORK/txform.log"; exit 1; }
done

kill -TERM "$txform_pid"
wait "$txform_pid" || { echo "demo: txform did not stop cleanly:"; tail -20 "$WORK/txform.log"; exit 1; }
trap - EXIT

echo
echo "demo: first output records (key => value), as a read_committed reader sees them:"
head -5 "$WORK/output.txt"
echo "..."
grep -E "txform starting|stopping" "$WORK/txform.log" | sed 's/^/txform log: /'
echo
echo "demo: seeded $ORDERS orders, $expected paid; read_committed output for $run: $seen records"
if [ "$seen" -ne "$expected" ]; then
    echo "demo: FAILED: expected exactly $expected output records" >&2
    exit 1
fi
echo "demo: ok"
