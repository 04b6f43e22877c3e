package keyload.applet;

import java.util.HexFormat;

/** Hex for test readability. */
final class Hex {
    private Hex() {
    }

    static byte[] decode(String hex) {
        return HexFormat.of().parseHex(hex.replaceAll("\\s", ""));
    }

    static String encode(byte[] bytes) {
        return HexFormat.of().withUpperCase().formatHex(bytes);
    }
}
