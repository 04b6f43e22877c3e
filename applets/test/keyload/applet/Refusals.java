package keyload.applet;

import static org.junit.Assert.assertEquals;

/**
 * Sends a command that must be refused and checks that it was, with the expected status word, and that
 * INFO and LIST KEYS are byte for byte what they were (PROTOCOL.md §4.4: nothing stored changes on an
 * error), except the try counter where §4 lets it move.
 */
final class Refusals {

    /** INFO offsets of the try counter and the life cycle, which a failed verification may change. */
    private static final int INFO_STATE = 2;
    private static final int INFO_TRIES_LEFT = 7;

    private Refusals() {
    }

    static void refused(Card card, int sw, String apdu) {
        refused(card, sw, Hex.decode(apdu), false);
    }

    static void refused(Card card, int sw, byte[] apdu) {
        refused(card, sw, apdu, false);
    }

    /** A refusal that may spend a try (and so block): INFO's counter and state are left out of the comparison. */
    static void refusedSpendingATry(Card card, int sw, byte[] apdu) {
        refused(card, sw, apdu, true);
    }

    private static void refused(Card card, int sw, byte[] apdu, boolean triesMayMove) {
        String before = snapshot(card, triesMayMove);
        Card.Response response = card.send(apdu);
        assertEquals(Hex.encode(apdu), String.format("%04X", sw), String.format("%04X", response.sw));
        assertEquals("stored state changed by " + Hex.encode(apdu), before, snapshot(card, triesMayMove));
    }

    private static String snapshot(Card card, boolean maskTries) {
        byte[] info = card.info();
        if (maskTries) {
            info[INFO_TRIES_LEFT] = 0;
            info[INFO_STATE] = 0;
        }
        return Hex.encode(info) + "/" + Hex.encode(card.listKeys());
    }
}
