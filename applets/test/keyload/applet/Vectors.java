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

    /**
     * One vector: its hex values and parameters by name, and its four APDU lines (keyed as in
     * {@code EXPORT_KEY_to_AS}).
     */
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

        int version() {
            return number("version");
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
        return read(HEADING, APDU, PARAMETER, "the three vectors of " + PROTOCOL);
    }

    /**
     * The vectors of one section of PROTOCOL.md: from the first heading {@code heading} matches to the next
     * {@code ## } heading, each vector's values, APDU lines and (where {@code parameter} is not null) the
     * parameters of its parameter lines. Fewer than three vectors is an error that names {@code expected}.
     */
    static List<Vector> read(Pattern heading, Pattern apdu, Pattern parameter, String expected) throws IOException {
        List<Vector> vectors = new ArrayList<>();
        Vector current = null;
        for (String line : Files.readAllLines(PROTOCOL)) {
            Matcher headingLine = heading.matcher(line);
            if (headingLine.find()) {
                current = new Vector(headingLine.group(1));
                vectors.add(current);
                continue;
            }
            if (current == null) {
                continue;
            }
            if (line.startsWith("## ")) {
                break;
            }
            Matcher apduLine = apdu.matcher(line);
            if (apduLine.find()) {
                current.values.put(apduLine.group(1).replaceAll("\\s+->\\s+", " to ").replace(' ', '_'),
                        apduLine.group(2));
                continue;
            }
            Matcher value = VALUE.matcher(line);
            if (value.find()) {
                current.values.put(value.group(1), value.group(2));
            }
            if (parameter != null) {
                Matcher parameters = parameter.matcher(line);
                while (parameters.find()) {
                    current.values.put(parameters.group(1), parameters.group(2));
                }
            }
        }
        if (vectors.size() < 3) {
            throw new IllegalStateException("expected " + expected + ", found " + vectors.size());
        }
        return vectors;
    }
}
