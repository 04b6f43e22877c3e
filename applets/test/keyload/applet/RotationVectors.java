package keyload.applet;

import java.io.IOException;
import java.util.List;
import java.util.regex.Pattern;

/**
 * The transport key rotation vectors of PROTOCOL.md §9.8 (R1, R2, ...), read from docs/PROTOCOL.md as
 * {@link Vectors} reads §6: values by name (T, T_new, SN, R, version, T1, ..., and the four APDU lines).
 */
final class RotationVectors {

    private static final Pattern HEADING = Pattern.compile("^### (R\\d+):");
    private static final Pattern APDU = Pattern.compile(
            "^\\s+(EXPORT TRANSPORT KEY -> AS|AS response|IMPORT TRANSPORT KEY -> EI|EI response)\\s*:\\s*([0-9A-F]+)");

    private RotationVectors() {
    }

    static List<Vectors.Vector> all() throws IOException {
        return Vectors.read(HEADING, APDU, null, "the rotation vectors of " + Vectors.PROTOCOL + " §9.8");
    }
}
