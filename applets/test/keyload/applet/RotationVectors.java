package keyload.applet;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The transport key rotation vectors of PROTOCOL.md §9.8 (R1, R2, ...), read from docs/PROTOCOL.md. */
final class RotationVectors {

    private static final Pattern HEADING = Pattern.compile("^### (R\\d+):");
    private static final Pattern VALUE = Pattern.compile("^\\s+([A-Za-z_0-9]+)\\s*=\\s*([0-9A-F]+)");
    private static final Pattern APDU = Pattern.compile(
            "^\\s+(EXPORT TRANSPORT KEY -> AS|AS response|IMPORT TRANSPORT KEY -> EI|EI response)\\s*:\\s*([0-9A-F]+)");

    /** One vector: its values by name (T, T_new, SN, R, version, T1, ..., and the four APDU lines). */
    static final class Vector {
        final String name;
        final Map<String, String> values = new HashMap<>();

        Vector(String name) {
            this.name = name;
        }

        byte[] bytes(String key) {
            String hex = values.get(key);
            if (hex == null) {
                throw new IllegalArgumentException(name + " has no " + key);
            }
            return Hex.decode(hex);
        }

        int version() {
            return Integer.parseInt(values.get("version"), 16);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    private RotationVectors() {
    }

    static List<Vector> all() throws IOException {
        List<Vector> vectors = new ArrayList<>();
        Vector current = null;
        for (String line : Files.readAllLines(Vectors.PROTOCOL)) {
            Matcher heading = HEADING.matcher(line);
            if (heading.find()) {
                current = new Vector(heading.group(1));
                vectors.add(current);
                continue;
            }
            if (current == null) {
                continue;
            }
            if (line.startsWith("## ")) {
                break;
            }
            Matcher apdu = APDU.matcher(line);
            if (apdu.find()) {
                current.values.put(apdu.group(1).replace(" -> ", " to ").replace(' ', '_'), apdu.group(2));
                continue;
            }
            Matcher value = VALUE.matcher(line);
            if (value.find()) {
                current.values.put(value.group(1), value.group(2));
            }
        }
        if (vectors.size() < 3) {
            throw new IllegalStateException("expected the rotation vectors of " + Vectors.PROTOCOL + " §9.8, found "
                    + vectors.size());
        }
        return vectors;
    }
}
