package keyload.station;

import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;

/**
 * A timing model of a real card and reader, which a reader of the station applies before it answers: a
 * fixed cost per APDU, a cost per byte on the wire (command and response), an extra cost per instruction
 * (the card's own work) and a cost per power-up (ATR and PPS). A model, not a measurement: the profiles and
 * their sources are written where they are defined (the station supervisor's timing profiles).
 *
 * <p>Written on the command line as {@code NAME=power_up_ms:X,apdu_ms:X,byte_us:X,INS:X,...}, where each
 * {@code INS} is an instruction byte in hex and X its extra milliseconds; values may have decimals.
 */
public record CardTiming(String name, long powerUpNanos, long apduNanos, long byteNanos,
                         Map<Integer, Long> instructionNanos) {

    /** No model: answer as fast as jCardSim computes. */
    public static final CardTiming NONE = new CardTiming("none", 0, 0, 0, Map.of());

    private static final long NANOS_PER_MS = 1_000_000L;
    private static final long NANOS_PER_US = 1_000L;
    private static final String FORM = "--timing expects NAME=power_up_ms:X,apdu_ms:X,byte_us:X[,INS:X...]";

    public CardTiming {
        instructionNanos = Map.copyOf(instructionNanos);
    }

    /**
     * Parses {@code NAME=key:value,...}.
     *
     * @throws IllegalArgumentException naming the expected form
     */
    public static CardTiming parse(String spec) {
        int eq = spec.indexOf('=');
        if (eq <= 0) {
            throw new IllegalArgumentException(FORM + ", got '" + spec + "'");
        }
        long powerUp = 0;
        long apdu = 0;
        long perByte = 0;
        Map<Integer, Long> instructions = new HashMap<>();
        for (String item : spec.substring(eq + 1).split(",")) {
            int colon = item.indexOf(':');
            if (colon <= 0) {
                throw new IllegalArgumentException(FORM + ", got the item '" + item + "'");
            }
            String key = item.substring(0, colon).trim().toLowerCase(Locale.ROOT);
            double value = number(item.substring(colon + 1), key);
            switch (key) {
                case "power_up_ms" -> powerUp = Math.round(value * NANOS_PER_MS);
                case "apdu_ms" -> apdu = Math.round(value * NANOS_PER_MS);
                case "byte_us" -> perByte = Math.round(value * NANOS_PER_US);
                default -> instructions.put(instruction(key), Math.round(value * NANOS_PER_MS));
            }
        }
        return new CardTiming(spec.substring(0, eq), powerUp, apdu, perByte, instructions);
    }

    /** What the model makes one exchange cost: fixed, bytes on the wire, and the instruction's own work. */
    public long exchangeNanos(byte[] command, byte[] response) {
        long instruction = command.length > 1 ? instructionNanos.getOrDefault(command[1] & 0xFF, 0L) : 0L;
        return apduNanos + byteNanos * (command.length + response.length) + instruction;
    }

    /** Waits until {@code deadline} (a System.nanoTime value); returns at once when it has passed. */
    public static void waitUntil(long deadline) {
        long left;
        while ((left = deadline - System.nanoTime()) > 0) {
            LockSupport.parkNanos(left);
        }
    }

    @Override
    public String toString() {
        return name;
    }

    private static double number(String word, String key) {
        try {
            double value = Double.parseDouble(word.trim());
            if (value >= 0 && value < 1e6) {
                return value;
            }
        } catch (NumberFormatException ignored) {
            // reported below with the offending word
        }
        throw new IllegalArgumentException("--timing: " + key + " needs a number of 0 or more, got '" + word + "'");
    }

    private static int instruction(String key) {
        if (key.length() == 2) {
            try {
                return Integer.parseInt(key, 16);
            } catch (NumberFormatException ignored) {
                // reported below
            }
        }
        throw new IllegalArgumentException("--timing: unknown item '" + key
                + "' (power_up_ms, apdu_ms, byte_us, or an instruction byte in hex such as 4A)");
    }
}
