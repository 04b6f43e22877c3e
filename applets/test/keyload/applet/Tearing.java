package keyload.applet;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.function.Supplier;
import keyload.tearing.PowerCut;
import keyload.tearing.TornAppletLoader;

/**
 * What the tearing tests share: cards whose applet classes cut the power at a chosen persistent write
 * ({@link TornAppletLoader}), and the loop that tears a command at each of its writes in turn.
 */
final class Tearing {

    private static final TornAppletLoader LOADER = new TornAppletLoader();

    /** One torn command: the card it runs on, and the APDU, prepared afresh for every cut. */
    static final class Attempt {
        final Card card;
        final byte[] apdu;

        Attempt(Card card, byte[] apdu) {
            this.card = card;
            this.apdu = apdu;
        }
    }

    private Tearing() {
    }

    static Card tornAs() {
        return new Card(Card.AS_AID, LOADER.applet(AsApplet.class.getName()));
    }

    static Card tornEi() {
        return new Card(Card.EI_AID, LOADER.applet(EiApplet.class.getName()));
    }

    /**
     * For k = 1 .. (writes of the whole command): prepares a fresh attempt, cuts the power at its k-th
     * persistent write, powers the card up again (transient memory cleared, applet selected) and hands the
     * card and k to {@code check}.
     */
    static int tearAtEveryWrite(Supplier<Attempt> prepare, Check check) {
        int total = counted(prepare);
        assertTrue("a command that stores something writes persistent memory", total > 0);
        System.out.println("tearing: " + total + " persistent writes in " + caller());
        for (int k = 1; k <= total; k++) {
            Attempt attempt = prepare.get();
            PowerCut.arm(k);
            try {
                attempt.card.send(attempt.apdu);
            } catch (PowerCut.Lost expected) {
                // the simulator passed the power loss on; either way the command is cut
            } finally {
                assertTrue("cut at write " + k + " of " + total, PowerCut.tripped());
                PowerCut.disarm();
            }
            attempt.card.powerCycle();
            check.after(attempt.card, k);
        }
        return total;
    }

    private static String caller() {
        for (StackTraceElement frame : new Throwable().getStackTrace()) {
            if (frame.getMethodName().startsWith("a") || frame.getMethodName().startsWith("the")) {
                return frame.getClassName().replaceAll(".*\\.", "") + "." + frame.getMethodName();
            }
        }
        return "?";
    }

    /** The persistent writes of the whole command when nothing cuts it; it must succeed. */
    private static int counted(Supplier<Attempt> prepare) {
        Attempt attempt = prepare.get();
        PowerCut.count();
        Card.Response response;
        int writes;
        try {
            response = attempt.card.send(attempt.apdu);
        } finally {
            writes = PowerCut.disarm();
        }
        assertEquals("the command runs to its end when not cut", 0x9000, response.sw);
        return writes;
    }

    /** What must hold after a cut. */
    interface Check {
        void after(Card card, int k);
    }

    /** The 14-byte LIST KEYS entry of {@code ref}. */
    static byte[] entry(Card card, int ref) {
        byte[] list = card.listKeys();
        for (int i = 0; i < list.length; i += 14) {
            if (list[i] == ref) {
                return Arrays.copyOfRange(list, i, i + 14);
            }
        }
        throw new AssertionError("no entry " + ref);
    }
}
