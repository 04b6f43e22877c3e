package keyload.station;

import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The role table: role name to applet class and AID. The two keyload roles are built in; tests and
 * benchmarks add their own with {@code --role NAME=class:AIDHEX}. The pseudo-role {@link #EMPTY} means
 * "no card in this reader".
 */
public final class Roles {

    /** A reader without a card. */
    public static final String EMPTY = "EMPTY";

    /** The built-in roles, the single place that ties a keyload role to its applet (PROTOCOL.md section 4). */
    private static final AppletRole[] BUILT_IN = {
        new AppletRole("AS", "keyload.applet.AsApplet", HexFormat.of().parseHex("F04B45594C4F414401")),
        new AppletRole("EI", "keyload.applet.EiApplet", HexFormat.of().parseHex("F04B45594C4F414402")),
    };

    private final Map<String, AppletRole> byName = new LinkedHashMap<>();

    /** A table holding the built-in roles only. */
    public Roles() {
        for (AppletRole role : BUILT_IN) {
            byName.put(role.name(), role);
        }
    }

    /** Adds a role, or replaces one of the same name. */
    public void add(AppletRole role) {
        if (role.name().equals(EMPTY)) {
            throw new IllegalArgumentException("EMPTY is reserved for a reader without a card");
        }
        byName.put(role.name(), role);
    }

    /**
     * The role of that name (case-insensitive).
     *
     * @throws IllegalArgumentException listing the known roles when there is none of that name
     */
    public AppletRole lookup(String name) {
        AppletRole role = byName.get(name.toUpperCase(Locale.ROOT));
        if (role == null) {
            throw new IllegalArgumentException("unknown role '" + name + "' (known: " + String.join(", ", byName.keySet())
                    + ", or " + EMPTY + ")");
        }
        return role;
    }

    /** Whether the name is the pseudo-role of an empty reader. */
    public static boolean isEmpty(String name) {
        return EMPTY.equalsIgnoreCase(name);
    }
}
