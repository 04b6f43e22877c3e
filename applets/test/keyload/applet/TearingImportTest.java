package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

/**
 * IMPORT KEY cut short at every persistent write in turn (PROTOCOL.md §4.3 step 10: "old key or new key,
 * never a mix"): afterwards the slot holds the old key or the new one, whole (its KCV and version in
 * LIST KEYS, and INTERNAL AUTHENTICATE with its bytes), nothing else on the card changed, the retry
 * counter is back at its limit or one lower (spent before the check, §4.3 step 4) but never higher, and
 * the card still takes the key.
 */
public class TearingImportTest {

    private static final byte[] SN = Hex.decode("4B4C0000000000E1");
    private static final byte[] OLD_KEY = Hex.decode("000102030405060708090A0B0C0D0E0F");
    private static final byte[] NEW_KEY = Hex.decode("F0E1D2C3B4A5968778695A4B3C2D1E0F");
    private static final byte[] OTHER_KEY = Hex.decode("55555555555555555555555555555555");
    private static final int REF1 = 0x03;
    private static final int OTHER_REF1 = 0x04;
    private static final int SLOT = 0x01;
    private static final int OTHER_SLOT = 0x02;
    private static final int OLD_VERSION = 1;
    private static final int NEW_VERSION = 2;
    private static final int RETRY_LIMIT = 5;
    private static final int INFO_TRIES = 7;
    private static final byte[] DATA = Hex.decode("0011223344");

    private static Card exporter(int version, byte[] key) {
        Card as = Card.as();
        Setup.transportKey(as, CardSet.T);
        Setup.appKey(as, REF1, 0x01, version, false, 0xFFFF, key);
        Setup.appKey(as, OTHER_REF1, 0x01, 1, false, 0xFFFF, OTHER_KEY);
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        return as;
    }

    private static byte[] export(Card as, int ref1, int ref2, byte[] challenge) {
        byte[] data = RefCrypto.concat(new byte[] {(byte) ref1, (byte) ref2}, challenge, new byte[] {(byte) SN.length},
                SN);
        return as.ok(as.command(0x80, 0x4A, 0, 0, data, true));
    }

    private static void load(Card as, Card ei, int ref1, int slot) {
        byte[] block = export(as, ref1, slot, Setup.challenge(ei));
        ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
    }

    /** A torn EI with two slots (the other one loaded), the old key in SLOT when {@code oldKeyIn}. */
    private static Card ei(Card oldAs, boolean oldKeyIn) {
        Card ei = Tearing.tornEi();
        Setup.transportKey(ei, CardSet.T);
        Setup.serial(ei, SN);
        ei.ok(ei.command(0x80, 0x58, 0, 0, new byte[] {RETRY_LIMIT}));
        Setup.slot(ei, SLOT, 16, 0x01, true);
        Setup.slot(ei, OTHER_SLOT, 16, 0x01, true);
        Setup.lock(ei);
        load(oldAs, ei, OTHER_REF1, OTHER_SLOT);
        if (oldKeyIn) {
            load(oldAs, ei, REF1, SLOT);
        }
        return ei;
    }

    /** What a card must look like after a cut, and which key it ended with. */
    private static final class Expectations {
        final String infoBefore;
        final byte[] otherSlotBefore;

        Expectations(Card ei) {
            infoBefore = Hex.encode(withoutTries(ei.info()));
            otherSlotBefore = Tearing.entry(ei, OTHER_SLOT);
        }

        /** Checks the card and returns "old", "new" or "empty". */
        String check(Card ei, Card newAs, int k) {
            byte[] info = ei.info();
            assertEquals("INFO besides the tries, cut at " + k, infoBefore, Hex.encode(withoutTries(info)));
            assertArrayEquals("the other slot, cut at " + k, otherSlotBefore, Tearing.entry(ei, OTHER_SLOT));
            byte[] slot = Tearing.entry(ei, SLOT);
            String held = held(ei, slot, k);
            int tries = info[INFO_TRIES];
            assertTrue("tries " + tries + " after a cut at " + k,
                    tries == RETRY_LIMIT || tries == RETRY_LIMIT - 1 && !held.equals("new"));
            // the card is whole: the key goes in now
            load(newAs, ei, REF1, SLOT);
            assertArrayEquals(RefCrypto.cmac(NEW_KEY, DATA), ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, DATA, true)));
            return held;
        }

        private static String held(Card ei, byte[] slot, int k) {
            int version = (slot[4] & 0xFF) << 8 | slot[5] & 0xFF;
            byte[] kcv = Arrays.copyOfRange(slot, 7, 10);
            Card.Response proof = ei.command(0x00, 0x88, 0x00, SLOT, DATA, true);
            if (slot[1] == 0) {
                assertEquals("an empty slot, cut at " + k, 0, version);
                assertArrayEquals(new byte[3], kcv);
                assertEquals(0x6A88, proof.sw);
                return "empty";
            }
            boolean isNew = version == NEW_VERSION;
            byte[] key = isNew ? NEW_KEY : OLD_KEY;
            assertEquals("version, cut at " + k, isNew ? NEW_VERSION : OLD_VERSION, version);
            assertArrayEquals("KCV, cut at " + k, RefCrypto.kcv(key), kcv);
            assertArrayEquals("the key itself, cut at " + k, RefCrypto.cmac(key, DATA), ei.ok(proof));
            return isNew ? "new" : "old";
        }

        private static byte[] withoutTries(byte[] info) {
            byte[] copy = info.clone();
            copy[INFO_TRIES] = 0;
            return copy;
        }
    }

    /** Cuts the import of NEW_KEY at every write; returns what the slot held after each cut, in order. */
    private static List<String> tear(boolean oldKeyIn) {
        Card oldAs = exporter(OLD_VERSION, OLD_KEY);
        Card newAs = exporter(NEW_VERSION, NEW_KEY);
        List<String> held = new ArrayList<>();
        Expectations[] expected = new Expectations[1];
        Tearing.tearAtEveryWrite(() -> {
            Card ei = ei(oldAs, oldKeyIn);
            expected[0] = new Expectations(ei);
            byte[] block = export(newAs, REF1, SLOT, Setup.challenge(ei));
            return new Tearing.Attempt(ei, RefCrypto.concat(Hex.decode("804C0000"), new byte[] {(byte) block.length},
                    block));
        }, (ei, k) -> held.add(expected[0].check(ei, newAs, k)));
        return held;
    }

    /** The slot switches once from the old content to the new key, and never back. */
    private static void assertOneSwitch(List<String> held, String before, boolean switchIsLastWrite) {
        int firstNew = held.contains("new") ? held.indexOf("new") : held.size();
        assertTrue("no cut before the first write left the key stored: " + held, firstNew > 0);
        // The commit is one byte; after it, only the replaced key is cleared (none for an empty slot).
        assertEquals("a cut after the commit leaves the new key: " + held, switchIsLastWrite, firstNew == held.size());
        for (int k = 0; k < held.size(); k++) {
            assertEquals("after a cut at write " + (k + 1) + " of " + held.size(), k < firstNew ? before : "new",
                    held.get(k));
        }
    }

    @Test
    public void aSlotHoldsItsOldKeyOrTheNewOneWhereverTheImportIsCut() {
        assertOneSwitch(tear(true), "old", false);
    }

    @Test
    public void anEmptySlotIsEmptyOrHoldsTheNewKeyWhereverTheImportIsCut() {
        assertOneSwitch(tear(false), "empty", true);
    }
}
