package keyload.station;

/**
 * What the command line says about one reader: the role of its first card (or {@link Roles#EMPTY}), the
 * protocol of every card the station puts into it, and the name of the timing model its cards follow.
 * Written {@code ROLE[:T0|:T1][@TIMING]} (default T1, no timing model).
 */
public record ReaderSpec(String role, CardProtocol protocol, String timing) {

    private static final char PROTOCOL_SEPARATOR = ':';
    private static final char TIMING_SEPARATOR = '@';
    private static final String FORM = "--reader expects PORT=ROLE[:T0|:T1][@TIMING]";

    /** A reader whose cards answer as fast as jCardSim computes. */
    public ReaderSpec(String role, CardProtocol protocol) {
        this(role, protocol, CardTiming.NONE.name());
    }

    /**
     * Parses {@code ROLE[:T0|:T1][@TIMING]}.
     *
     * @throws IllegalArgumentException naming the expected form
     */
    public static ReaderSpec parse(String spec) {
        int at = spec.indexOf(TIMING_SEPARATOR);
        String timing = at < 0 ? CardTiming.NONE.name() : spec.substring(at + 1);
        String card = at < 0 ? spec : spec.substring(0, at);
        if (timing.isEmpty()) {
            throw new IllegalArgumentException(FORM + ", got an empty timing name");
        }
        int colon = card.indexOf(PROTOCOL_SEPARATOR);
        String role = colon < 0 ? card : card.substring(0, colon);
        if (role.isEmpty()) {
            throw new IllegalArgumentException(FORM + ", got a reader without a role");
        }
        CardProtocol protocol = colon < 0 ? CardProtocol.T1 : CardProtocol.parse(card.substring(colon + 1));
        return new ReaderSpec(role, protocol, timing);
    }

    @Override
    public String toString() {
        String base = role + PROTOCOL_SEPARATOR + protocol;
        return timing.equals(CardTiming.NONE.name()) ? base : base + TIMING_SEPARATOR + timing;
    }
}
