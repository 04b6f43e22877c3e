package keyload.station;

import java.util.HexFormat;
import java.util.Locale;

/**
 * What a role name means: which applet class a fresh card of that role carries and at which AID.
 *
 * <p>The applet is named by class name, not referenced, so that the station compiles and its tests run
 * before (or without) the real applets: the class is only resolved when a card of that role is made.
 */
public record AppletRole(String name, String appletClassName, byte[] aid) {

    /** Java Card AIDs are 5 to 16 bytes long. */
    private static final int MIN_AID_LENGTH = 5;
    private static final int MAX_AID_LENGTH = 16;

    public AppletRole {
        if (!name.matches("[A-Za-z][A-Za-z0-9_]*")) {
            throw new IllegalArgumentException("role name '" + name + "' must be a word (letters, digits, _)");
        }
        if (aid.length < MIN_AID_LENGTH || aid.length > MAX_AID_LENGTH) {
            throw new IllegalArgumentException("AID of role " + name + " must be 5..16 bytes, got " + aid.length);
        }
        name = name.toUpperCase(Locale.ROOT);
        aid = aid.clone();
    }

    @Override
    public byte[] aid() {
        return aid.clone();
    }

    /**
     * Parses the command-line form {@code NAME=fully.qualified.AppletClass:AIDHEX}.
     *
     * @throws IllegalArgumentException with a message naming the expected form
     */
    public static AppletRole parse(String spec) {
        int eq = spec.indexOf('=');
        int colon = spec.lastIndexOf(':');
        if (eq <= 0 || colon <= eq + 1 || colon == spec.length() - 1) {
            throw new IllegalArgumentException("--role expects NAME=class:AIDHEX, got '" + spec + "'");
        }
        byte[] aid;
        try {
            aid = HexFormat.of().parseHex(spec.substring(colon + 1));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--role " + spec + ": the AID must be hexadecimal", e);
        }
        return new AppletRole(spec.substring(0, eq), spec.substring(eq + 1, colon), aid);
    }

    @Override
    public String toString() {
        return name + "=" + appletClassName + ":" + HexFormat.of().withUpperCase().formatHex(aid);
    }
}
