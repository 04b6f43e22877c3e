package keyload.station;

import java.util.HexFormat;
import java.util.Locale;

/**
 * The transmission protocol a simulated card offers in its answer to reset, which pcscd negotiates and the
 * host's PC/SC connection then uses, and the way the card's answers reach the host over it.
 *
 * <p>Real keyload cards are of both kinds: many SAM-format and older contact cards speak T=0 only. A T=0
 * card cannot send response data in the same exchange as the command, nor learn the host's Le for a command
 * carrying data, so its runtime answers 61xx and 6Cxx where a T=1 card answers at once; see
 * {@link T0Transmission}. The station can play either kind, reader by reader.
 */
public enum CardProtocol {

    /**
     * T=0 only: TS 3B, T0 09 (no interface bytes, so T=0 is implied; no TCK for a T=0-only card), the
     * historical bytes 80 57 "KEYLOAD" as in the T=1 ATR.
     */
    T0("3B0980574B45594C4F4144"),

    /**
     * T=1 only: TS 3B, T0 89 (TD1 follows, 9 historical bytes), TD1 01 (T=1, no further interface bytes),
     * historical bytes 80 (COMPACT-TLV follows) 57 "KEYLOAD" (card issuer's data), TCK 0E.
     */
    T1("3B890180574B45594C4F41440E");

    private final byte[] atr;

    CardProtocol(String atrHex) {
        this.atr = HexFormat.of().parseHex(atrHex);
    }

    /** The answer to reset of a card speaking this protocol. */
    public byte[] atr() {
        return atr.clone();
    }

    /** How a fresh card of this protocol sends its answers; T=0 keeps state between commands. */
    Transmission newTransmission() {
        return this == T0 ? new T0Transmission() : Transmission.DIRECT;
    }

    /**
     * Parses {@code T0} or {@code T1} (case-insensitive, "T=0" also accepted).
     *
     * @throws IllegalArgumentException naming the accepted words
     */
    public static CardProtocol parse(String word) {
        String normalized = word.toUpperCase(Locale.ROOT).replace("=", "");
        for (CardProtocol protocol : values()) {
            if (protocol.name().equals(normalized)) {
                return protocol;
            }
        }
        throw new IllegalArgumentException("a card protocol is T0 or T1, got '" + word + "'");
    }
}
