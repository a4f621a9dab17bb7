package txform.bench;

import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The stateful side of txform's benchmark: {@code groupByKey().count()} over a keyed topic, each
 * update written to the output as key -> the running count as decimal text, the same output as
 * txform's count plugin. The count store is Kafka Streams' default (RocksDB, backed by a
 * changelog topic written in the same transaction under exactly_once_v2).
 *
 * <p>Usage and lifecycle as {@link StreamsCopy}: {@code StreamsCount BOOTSTRAP INPUT OUTPUT
 * APPLICATION_ID STATE_DIR [key=value ...]}; runs until SIGTERM; exit code 1 if the topology died.
 * The benchmark passes {@code statestore.cache.max.bytes=0} so that every input emits its count.
 */
public final class StreamsCount {
    private StreamsCount() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 5) {
            System.err.println(
                "usage: StreamsCount BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR [key=value ...]");
            System.exit(2);
        }
        Properties props = StreamsCopy.properties(args);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[1], Consumed.with(Serdes.String(), Serdes.ByteArray()))
            .groupByKey()
            .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts"))
            .toStream()
            .mapValues(count -> Long.toString(count))
            .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

        StreamsCopy.runUntilStopped(new KafkaStreams(builder.build(), props), "StreamsCount");
    }
}
