package keyload.applet;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The test vectors of PROTOCOL.md §6, read from the project's docs/PROTOCOL.md (no copy in code). */
final class Vectors {

    static final Path PROTOCOL = Path.of("docs", "PROTOCOL.md");

    private static final Pattern HEADING = Pattern.compile("^### (V\\d+):");
    private static final Pattern VALUE = Pattern.compile("^\\s+([A-Za-z_0-9]+)\\s*=\\s*([0-9A-F]+)");
    private static final Pattern PARAMETER = Pattern.compile("(REF1|REF2|usage|version|diversify)=(\\w+)");
    private static final Pattern APDU = Pattern.compile("^\\s+(EXPORT KEY\\s+->\\s+AS|AS response|IMPORT KEY\\s+->\\s+EI|EI response)\\s*:\\s*([0-9A-F]+)");

    /** One vector: its hex values and parameters by name, and its four APDU lines. */
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

        int number(String key) {
            return Integer.parseInt(values.get(key), 16);
        }

        boolean diversify() {
            return Boolean.parseBoolean(values.get("diversify").toLowerCase());
        }

        @Override
        public String toString() {
            return name;
        }
    }

    private Vectors() {
    }

    static List<Vector> all() throws IOException {
        List<Vector> vectors = new ArrayList<>();
        Vector current = null;
        for (String line : Files.readAllLines(PROTOCOL)) {
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
                current.values.put(apdu.group(1).replaceAll("\\s+->\\s+", " to ").replace(' ', '_'), apdu.group(2));
                continue;
            }
            Matcher value = VALUE.matcher(line);
            if (value.find()) {
                current.values.put(value.group(1), value.group(2));
            }
            Matcher parameter = PARAMETER.matcher(line);
            while (parameter.find()) {
                current.values.put(parameter.group(1), parameter.group(2));
            }
        }
        if (vectors.size() < 3) {
            throw new IllegalStateException("expected the three vectors of " + PROTOCOL + ", found " + vectors.size());
        }
        return vectors;
    }
}
