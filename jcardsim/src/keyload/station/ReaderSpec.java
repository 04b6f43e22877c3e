package keyload.station;

/**
 * What the command line says about one reader: the role of its first card (or {@link Roles#EMPTY}) and the
 * protocol of every card the station puts into it. Written {@code ROLE} or {@code ROLE:T0|T1} (default T1).
 */
public record ReaderSpec(String role, CardProtocol protocol) {

    private static final char PROTOCOL_SEPARATOR = ':';

    /**
     * Parses {@code ROLE[:T0|:T1]}.
     *
     * @throws IllegalArgumentException naming the expected form
     */
    public static ReaderSpec parse(String spec) {
        int colon = spec.indexOf(PROTOCOL_SEPARATOR);
        String role = colon < 0 ? spec : spec.substring(0, colon);
        if (role.isEmpty()) {
            throw new IllegalArgumentException("--reader expects PORT=ROLE[:T0|:T1], got a reader without a role");
        }
        CardProtocol protocol = colon < 0 ? CardProtocol.T1 : CardProtocol.parse(spec.substring(colon + 1));
        return new ReaderSpec(role, protocol);
    }

    @Override
    public String toString() {
        return role + PROTOCOL_SEPARATOR + protocol;
    }
}
