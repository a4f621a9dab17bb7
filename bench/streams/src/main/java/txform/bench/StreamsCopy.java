package txform.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams side of txform's benchmark: copies every record of one topic to another through
 * an identity {@code mapValues}, the Streams equivalent of txform's passthrough plugin.
 *
 * <p>Runs until SIGTERM (the benchmark stops it once its read_committed reader has seen every
 * record), then closes cleanly. Exit code 1 if the topology died.
 *
 * <p>Usage: {@code StreamsCopy BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR [key=value ...]};
 * each {@code key=value} is a StreamsConfig (or client) property, e.g.
 * {@code processing.guarantee=exactly_once_v2 commit.interval.ms=100}.
 */
public final class StreamsCopy {
    private StreamsCopy() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 5) {
            System.err.println(
                "usage: StreamsCopy BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR [key=value ...]");
            System.exit(2);
        }
        Properties props = properties(args);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[1], Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .mapValues(value -> value)
            .to(args[2], Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        runUntilStopped(new KafkaStreams(builder.build(), props), "StreamsCopy");
    }

    /** The properties of {@code args}: BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR [key=value ...]. */
    static Properties properties(String[] args) {
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        // Read a fresh application's input from the beginning, as every other system does.
        props.put("auto.offset.reset", "earliest");
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("expected key=value, got " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        return props;
    }

    /**
     * Starts {@code streams} and waits until SIGTERM (the shutdown hook closes it) or until the
     * topology dies (then exits with 1).
     */
    static void runUntilStopped(KafkaStreams streams, String name) throws InterruptedException {
        CountDownLatch stopped = new CountDownLatch(1);
        final int[] exitCode = {0};
        streams.setUncaughtExceptionHandler(error -> {
            System.err.println(name + ": stream thread died: " + error);
            exitCode[0] = 1;
            stopped.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            System.err.println(name + ": state " + before + " -> " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        // Leave the group on SIGTERM (Streams' default is to stay until session.timeout.ms, 45 s):
        // a restart then rejoins at once, so the stateful benchmark times the restore, not the
        // old member's session time-out; txform's consumer leaves the group on close too.
        KafkaStreams.CloseOptions leave =
            new KafkaStreams.CloseOptions().leaveGroup(true).timeout(Duration.ofSeconds(30));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(leave);
            stopped.countDown();
        }, name + "-shutdown"));

        streams.start();
        stopped.await();
        // On SIGTERM the shutdown hook is closing the client; calling System.exit from here would
        // block until it finishes anyway, so only a dead topology exits explicitly (with 1).
        if (exitCode[0] != 0) {
            streams.close(Duration.ofSeconds(30));
            System.exit(exitCode[0]);
        }
    }
}
