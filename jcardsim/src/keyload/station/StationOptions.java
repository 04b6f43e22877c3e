package keyload.station;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The station's command line: {@code --vpcd-host HOST --control-port PORT --reader PORT=ROLE[:T0|:T1][@TIMING]
 * ... [--role NAME=class:AIDHEX ...] [--timing NAME=power_up_ms:X,apdu_ms:X,byte_us:X,INS:X... ...]}.
 */
public record StationOptions(String vpcdHost, int controlPort, Map<Integer, ReaderSpec> readers, Roles roles,
                             Map<String, CardTiming> timings) {

    static final String DEFAULT_VPCD_HOST = "127.0.0.1";
    static final int DEFAULT_CONTROL_PORT = 35990;

    public static final String USAGE = "usage: keyload.station.Station [--vpcd-host HOST] [--control-port PORT]"
            + " --reader PORT=AS|EI|EMPTY|ROLE[:T0|:T1][@TIMING] ... [--role NAME=applet.Class:AIDHEX ...]"
            + " [--timing NAME=power_up_ms:X,apdu_ms:X,byte_us:X,INS:X... ...]";

    /**
     * Parses the arguments; every role named by a reader must be known once all --role options are read.
     *
     * @throws IllegalArgumentException with a message for the user
     */
    public static StationOptions parse(String... args) {
        String host = DEFAULT_VPCD_HOST;
        int controlPort = DEFAULT_CONTROL_PORT;
        Map<Integer, ReaderSpec> readers = new LinkedHashMap<>();
        Roles roles = new Roles();
        Map<String, CardTiming> timings = new LinkedHashMap<>();
        timings.put(CardTiming.NONE.name(), CardTiming.NONE);
        for (int i = 0; i < args.length; i++) {
            String option = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException(option + " needs a value; " + USAGE);
            }
            String value = args[++i];
            switch (option) {
                case "--vpcd-host" -> host = value;
                case "--control-port" -> controlPort = port(value);
                case "--role" -> roles.add(AppletRole.parse(value));
                case "--timing" -> {
                    CardTiming timing = CardTiming.parse(value);
                    if (timings.put(timing.name(), timing) != null) {
                        throw new IllegalArgumentException("timing " + timing.name() + " given twice (or named none)");
                    }
                }
                case "--reader" -> {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("--reader expects PORT=ROLE[:T0|:T1][@TIMING], got '" + value + "'");
                    }
                    int port = port(value.substring(0, eq));
                    if (readers.put(port, ReaderSpec.parse(value.substring(eq + 1))) != null) {
                        throw new IllegalArgumentException("reader port " + port + " given twice");
                    }
                }
                default -> throw new IllegalArgumentException("unknown option " + option + "; " + USAGE);
            }
        }
        if (readers.isEmpty()) {
            throw new IllegalArgumentException("no --reader given; " + USAGE);
        }
        for (ReaderSpec reader : readers.values()) {
            if (!Roles.isEmpty(reader.role())) {
                roles.lookup(reader.role());
            }
            if (!timings.containsKey(reader.timing())) {
                throw new IllegalArgumentException("reader timing " + reader.timing() + " is not defined by a --timing option");
            }
        }
        return new StationOptions(host, controlPort, readers, roles, Map.copyOf(timings));
    }

    private static int port(String word) {
        try {
            int port = Integer.parseInt(word);
            if (port >= 0 && port <= 0xFFFF) {
                return port;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the offending word
        }
        throw new IllegalArgumentException("not a TCP port: '" + word + "'");
    }
}
