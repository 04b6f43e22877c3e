package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

/**
 * Transport key rotation (PROTOCOL.md §9) cut short at every persistent write in turn, key-object bytes
 * included: IMPORT TRANSPORT KEY on the EI (to a key of the same length and to a longer one), RETIRE
 * TRANSPORT KEY and PUT NEXT TRANSPORT KEY on the AS. Afterwards the card holds the old T or the new one,
 * whole: INFO's length, KCV and version agree, and a key block made under the T it claims loads; the EI's
 * keys are untouched; the EI's retry counter is at its limit or one lower, never higher; and the card
 * still completes the rotation.
 */
public class TearingRotationTest {

    private static final byte[] SN = Hex.decode("4B4C0000000000E7");
    private static final byte[] T_OLD_SHORT = Hex.decode("101112131415161718191A1B1C1D1E1F");
    private static final byte[] KEY = Hex.decode("000102030405060708090A0B0C0D0E0F");
    private static final byte[] PROOF_KEY = Hex.decode("F0E1D2C3B4A5968778695A4B3C2D1E0F");
    private static final int REF1 = 0x03;
    private static final int PROOF_REF1 = 0x04;
    private static final int SLOT = 0x01;
    private static final int PROOF_SLOT = 0x02;
    private static final int NEW_VERSION = 2;
    private static final int RETRY_LIMIT = 5;
    private static final byte[] DATA = Hex.decode("0A0B0C");

    /** An AS of T holding KEY and PROOF_KEY, with {@code next} as the next T when not null; locked, PIN verified. */
    private static Card as(Card as, byte[] t, byte[] next) {
        Setup.transportKey(as, t);
        Setup.appKey(as, REF1, 0x01, 1, false, 0xFFFF, KEY);
        Setup.appKey(as, PROOF_REF1, 0x01, 1, false, 0xFFFF, PROOF_KEY);
        if (next != null) {
            Setup.nextTransportKey(as, NEW_VERSION, next);
        }
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        return as;
    }

    /** A fresh EI of {@code t} (torn or not) with KEY in SLOT and an empty PROOF_SLOT. */
    private static Card ei(Card ei, byte[] t, Card oldAs) {
        Setup.transportKey(ei, t);
        Setup.serial(ei, SN);
        ei.ok(ei.command(0x80, 0x58, 0, 0, new byte[] {RETRY_LIMIT}));
        Setup.slot(ei, SLOT, 16, 0x01, true);
        Setup.slot(ei, PROOF_SLOT, 16, 0x01, true);
        Setup.lock(ei);
        assertEquals(0x9000, RotationTest.load(oldAs, ei, REF1, SLOT, 0));
        return ei;
    }

    /** Which T the card says it holds ("old" or "new"), checked whole against INFO's length, KCV and version. */
    private static String held(Card card, byte[] tOld, byte[] tNew, int k) {
        byte[] info = card.info();
        byte[] kcv = Arrays.copyOfRange(info, 4, 7);
        int version = RotationTest.transportVersion(card);
        boolean isNew = Arrays.equals(RefCrypto.kcv(tNew), kcv);
        assertTrue("KCV(T) " + Hex.encode(kcv) + ", cut at " + k, isNew || Arrays.equals(RefCrypto.kcv(tOld), kcv));
        assertEquals("T length, cut at " + k, (isNew ? tNew : tOld).length, info[3]);
        assertEquals("T version, cut at " + k, isNew ? NEW_VERSION : 1, version);
        return isNew ? "new" : "old";
    }

    private static void assertOneSwitch(List<String> held) {
        assertOneSwitch(held, false);
    }

    /**
     * Old before the one-byte commit, new after it; the commit is the command's last write when nothing
     * is cleared after it ({@code switchIsLastWrite}: no key was replaced), and then no cut leaves "new".
     */
    private static void assertOneSwitch(List<String> held, boolean switchIsLastWrite) {
        int firstNew = held.contains("new") ? held.indexOf("new") : held.size();
        assertTrue("no cut before the first write changed T: " + held, firstNew > 0);
        assertEquals("a cut after the commit leaves the new T: " + held, switchIsLastWrite, firstNew == held.size());
        for (int k = 0; k < held.size(); k++) {
            assertEquals("after a cut at write " + (k + 1) + ": " + held, k < firstNew ? "old" : "new", held.get(k));
        }
    }

    private static List<String> tearImport(byte[] tOld, byte[] tNew) {
        Card rotating = as(Card.as(), tOld, tNew);
        Card newAs = as(Card.as(), tNew, null);
        List<String> held = new ArrayList<>();
        Tearing.tearAtEveryWrite(() -> {
            Card ei = ei(Tearing.tornEi(), tOld, rotating);
            byte[] block = RotationTest.exportTransport(rotating, Setup.challenge(ei), SN);
            return new Tearing.Attempt(ei, RefCrypto.concat(Hex.decode("80660000"), new byte[] {(byte) block.length},
                    block));
        }, (ei, k) -> {
            String t = held(ei, tOld, tNew, k);
            int tries = RotationTest.tries(ei);
            assertTrue("tries " + tries + " after a cut at " + k,
                    tries == RETRY_LIMIT || tries == RETRY_LIMIT - 1 && t.equals("old"));
            assertArrayEquals("the slot's key, cut at " + k, RefCrypto.cmac(KEY, DATA),
                    ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, DATA, true)));
            // the T it claims is the one it holds: a key sealed under it loads
            assertEquals("a load under the " + t + " T, cut at " + k, 0x9000,
                    RotationTest.load(t.equals("new") ? newAs : rotating, ei, PROOF_REF1, PROOF_SLOT, 0));
            if (t.equals("old")) {
                assertEquals("the rotation completes after a cut at " + k, 0x9000, RotationTest.rotate(rotating, ei));
                assertEquals("new", held(ei, tOld, tNew, k));
            }
            assertArrayEquals(RefCrypto.cmac(KEY, DATA), ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, DATA, true)));
            held.add(t);
        });
        return held;
    }

    @Test
    public void anEiHoldsTheOldOrTheNewTransportKeyWhereverTheRotationIsCut() {
        assertOneSwitch(tearImport(CardSet.T, RotationTest.T_NEW));
    }

    @Test
    public void anEiRotatedToALongerTransportKeyHoldsOneOrTheOtherWhereverItIsCut() {
        assertOneSwitch(tearImport(T_OLD_SHORT, RotationTest.T_NEW));
    }

    /** Proves the AS's current T by a load into a fresh EI of that T, and its next T (if any) likewise. */
    private static void proveAs(Card as, byte[] current, byte[] next, int k) {
        Setup.verify(as, Setup.PIN);
        Card ei = ei(Card.ei(), current, as);
        assertEquals("a load under the current T, cut at " + k, 0x9000,
                RotationTest.load(as, ei, PROOF_REF1, PROOF_SLOT, 0));
        if (next != null) {
            Card rotated = ei(Card.ei(), next, as(Card.as(), next, null));
            assertEquals("a load under the next T, cut at " + k, 0x9000,
                    RotationTest.load(as, rotated, PROOF_REF1, PROOF_SLOT, NEW_VERSION));
        }
    }

    @Test
    public void theAsHoldsItsTransportKeysBeforeOrAfterTheRetirementWhereverItIsCut() {
        byte[] tNew = RotationTest.T_NEW;
        List<String> held = new ArrayList<>();
        Tearing.tearAtEveryWrite(() -> {
            Card as = as(Tearing.tornAs(), T_OLD_SHORT, tNew);
            return new Tearing.Attempt(as, Hex.decode("80640000020002"));
        }, (as, k) -> {
            String t = held(as, T_OLD_SHORT, tNew, k);
            byte[] extension = RotationTest.extension(as);
            String next = t.equals("old") ? "20" + Hex.encode(RefCrypto.kcv(tNew)) + "0002" : "00000000" + "0000";
            assertEquals("the next T, cut at " + k, next, Hex.encode(Arrays.copyOfRange(extension, 2, 8)));
            proveAs(as, t.equals("old") ? T_OLD_SHORT : tNew, t.equals("old") ? tNew : null, k);
            held.add(t);
        });
        assertOneSwitch(held);
    }

    @Test
    public void theAsHoldsNoNextTransportKeyOrAWholeOneWherePutNextTransportKeyIsCut() {
        byte[] tNew = RotationTest.T_NEW;
        List<String> held = new ArrayList<>();
        Tearing.tearAtEveryWrite(() -> {
            Card as = Tearing.tornAs();
            Setup.transportKey(as, T_OLD_SHORT);
            Setup.appKey(as, REF1, 0x01, 1, false, 0xFFFF, KEY);
            Setup.appKey(as, PROOF_REF1, 0x01, 1, false, 0xFFFF, PROOF_KEY);
            byte[] data = RefCrypto.concat(new byte[] {0, NEW_VERSION}, tNew);
            return new Tearing.Attempt(as, RefCrypto.concat(Hex.decode("80600000"), new byte[] {(byte) data.length},
                    data));
        }, (as, k) -> {
            byte[] extension = RotationTest.extension(as);
            boolean isNew = extension[2] != 0;
            assertEquals("the next T, cut at " + k, isNew ? "0001" + "20" + Hex.encode(RefCrypto.kcv(tNew)) + "0002"
                    : "0001000000000000", Hex.encode(extension));
            Setup.pin(as, Setup.PIN);
            Setup.lock(as);
            proveAs(as, T_OLD_SHORT, isNew ? tNew : null, k);
            held.add(isNew ? "new" : "old");
        });
        assertOneSwitch(held, true);
    }
}
