package keyload.station;

import java.util.Locale;
import java.util.Map;

/**
 * The control line protocol, one command per line, answered by zero or more lines then {@code OK}, or
 * by one line {@code ERR <reason>}:
 *
 * <pre>
 * STATUS                           one line per reader "PORT ROLE|EMPTY connected|waiting|removed APDUS", then OK
 * TIMES                            one line per reader "PORT APDUS CARD_NANOS" (time spent in jCardSim), then OK
 * INSERT PORT ROLE                 a fresh blank card; OK once vpcd has taken it
 * REMOVE PORT                      the card leaves the reader (kept as its last removed card)
 * REINSERT PORT                    the last removed card goes back; OK once vpcd has taken it
 * SWAP PORT [ROLE]                 REMOVE then INSERT a fresh card (default: the same role)
 * PULL PORT N before|after         the card leaves at the N-th APDU from now, without answering it
 * STALL PORT N                     the card stays but never answers the N-th APDU from now (until removed)
 * TIMING PORT NAME                 the reader follows timing model NAME (one of --timing, or none) from now on
 * QUIT                             OK, then the station stops
 * </pre>
 */
public final class ControlProtocol {

    /** One reply; {@code quit} asks the server to stop the station once the reply is sent. */
    public record Reply(String text, boolean quit) {
        static Reply ok(String lines) {
            return new Reply(lines + "OK\n", false);
        }

        static Reply error(String reason) {
            return new Reply("ERR " + reason.replaceAll("[\r\n]+", " ") + "\n", false);
        }
    }

    /** How long INSERT, REINSERT and SWAP wait for vpcd to take the card. */
    static final long CONNECT_WAIT_MS = 10_000;

    private static final String USAGE = "commands: STATUS, TIMES, INSERT PORT ROLE, REMOVE PORT, REINSERT PORT, "
            + "SWAP PORT [ROLE], PULL PORT N before|after, STALL PORT N, TIMING PORT NAME, QUIT";

    private final Map<Integer, CardReader> readers;
    private final Roles roles;
    private final Map<String, CardTiming> timings;

    public ControlProtocol(Map<Integer, CardReader> readers, Roles roles) {
        this(readers, roles, Map.of(CardTiming.NONE.name(), CardTiming.NONE));
    }

    /** With the timing models a reader may be switched to (TIMING). */
    public ControlProtocol(Map<Integer, CardReader> readers, Roles roles, Map<String, CardTiming> timings) {
        this.readers = readers;
        this.roles = roles;
        this.timings = timings;
    }

    /** Handles one command line; never throws for a bad command. */
    public Reply handle(String line) throws InterruptedException {
        String[] words = line.trim().split("\\s+");
        String command = words[0].toUpperCase(Locale.ROOT);
        try {
            return switch (command) {
                case "STATUS" -> expectArgs(words, 0, 0, () -> Reply.ok(status()));
                case "TIMES" -> expectArgs(words, 0, 0, () -> Reply.ok(times()));
                case "INSERT" -> expectArgs(words, 2, 2, () -> insert(reader(words[1]), words[2]));
                case "REMOVE" -> expectArgs(words, 1, 1, () -> {
                    reader(words[1]).remove();
                    return Reply.ok("");
                });
                case "REINSERT" -> expectArgs(words, 1, 1, () -> {
                    CardReader reader = reader(words[1]);
                    reader.reinsert();
                    reader.awaitConnected(CONNECT_WAIT_MS);
                    return Reply.ok("");
                });
                case "SWAP" -> expectArgs(words, 1, 2, () -> swap(reader(words[1]), words.length > 2 ? words[2] : null));
                case "PULL" -> expectArgs(words, 3, 3, () -> {
                    reader(words[1]).armPull(number(words[2]), CardReader.PullMoment.parse(words[3]));
                    return Reply.ok("");
                });
                case "STALL" -> expectArgs(words, 2, 2, () -> {
                    reader(words[1]).armPull(number(words[2]), CardReader.PullMoment.STALL);
                    return Reply.ok("");
                });
                case "TIMING" -> expectArgs(words, 2, 2, () -> {
                    CardTiming timing = timings.get(words[2]);
                    if (timing == null) {
                        throw new IllegalArgumentException("no timing model " + words[2] + "; the station knows "
                                + String.join(", ", timings.keySet()));
                    }
                    reader(words[1]).setTiming(timing);
                    return Reply.ok("");
                });
                case "QUIT" -> expectArgs(words, 0, 0, () -> new Reply("OK\n", true));
                case "" -> Reply.error("empty command; " + USAGE);
                default -> Reply.error("unknown command " + words[0] + "; " + USAGE);
            };
        } catch (IllegalArgumentException | IllegalStateException e) {
            return Reply.error(e.getMessage());
        }
    }

    private String status() {
        StringBuilder lines = new StringBuilder();
        for (CardReader reader : readers.values()) {
            lines.append(reader.port()).append(' ').append(reader.roleName()).append(' ')
                    .append(reader.state()).append(' ').append(reader.apduCount()).append('\n');
        }
        return lines.toString();
    }

    /** APDUs and card-side nanoseconds per reader, read under one lock each so that they agree. */
    private String times() {
        StringBuilder lines = new StringBuilder();
        for (CardReader reader : readers.values()) {
            CardReader.Usage usage = reader.usage();
            lines.append(reader.port()).append(' ').append(usage.apdus()).append(' ').append(usage.cardNanos())
                    .append('\n');
        }
        return lines.toString();
    }

    private Reply insert(CardReader reader, String roleName) throws InterruptedException {
        if (Roles.isEmpty(roleName)) {
            throw new IllegalArgumentException("INSERT needs a card role; use REMOVE to empty a reader");
        }
        reader.insert(SimulatedCard.blank(roles.lookup(roleName), reader.protocol()));
        reader.awaitConnected(CONNECT_WAIT_MS);
        return Reply.ok("");
    }

    /** REMOVE (if a card is in) then INSERT a fresh card; role EMPTY leaves the reader empty. */
    private Reply swap(CardReader reader, String roleName) throws InterruptedException {
        String role = roleName != null ? roleName : reader.roleName();
        if (roleName == null && Roles.isEmpty(role)) {
            throw new IllegalArgumentException("reader " + reader.port() + " is empty: say which role to insert");
        }
        SimulatedCard fresh = Roles.isEmpty(role) ? null : SimulatedCard.blank(roles.lookup(role), reader.protocol());
        reader.removeIfAny();
        if (fresh == null) {
            return Reply.ok("");
        }
        reader.insert(fresh);
        reader.awaitConnected(CONNECT_WAIT_MS);
        return Reply.ok("");
    }

    private CardReader reader(String portWord) {
        CardReader reader = readers.get(number(portWord));
        if (reader == null) {
            throw new IllegalArgumentException("no reader on port " + portWord + " (readers: " + readers.keySet() + ")");
        }
        return reader;
    }

    private static int number(String word) {
        try {
            return Integer.parseInt(word);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("expected a number, got '" + word + "'", e);
        }
    }

    @FunctionalInterface
    private interface Action {
        Reply run() throws InterruptedException;
    }

    private static Reply expectArgs(String[] words, int min, int max, Action action) throws InterruptedException {
        int given = words.length - 1;
        if (given < min || given > max) {
            return Reply.error(words[0] + " takes " + (min == max ? String.valueOf(min) : min + " to " + max)
                    + " argument(s), got " + given + "; " + USAGE);
        }
        return action.run();
    }
}
