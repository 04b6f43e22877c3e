package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.Test;

/**
 * EXPORT KEY cut short at every persistent write in turn (PROTOCOL.md §4.2 step 6: the export is counted
 * "persistent, atomic"): afterwards the key's LIST KEYS entry is what it was, or what it was with the count
 * one higher (never lower, never anything else), INFO is unchanged, the key itself is intact (a fresh
 * export loads it into an EI, proved by INTERNAL AUTHENTICATE), and the limit still holds.
 */
public class TearingExportTest {

    private static final byte[] SN = Hex.decode("4B4C0000000000E2");
    private static final byte[] KEY = Hex.decode("8899AABBCCDDEEFF0011223344556677");
    private static final byte[] OTHER_KEY = Hex.decode("101112131415161718191A1B1C1D1E1F");
    private static final int REF1 = 0x03;
    private static final int OTHER_REF1 = 0x04;
    private static final int SLOT = 0x01;
    private static final int LIMIT = 3;
    private static final int EXPORTS_BEFORE = 1;
    private static final int ENTRY_COUNT = 10;
    private static final byte[] DATA = Hex.decode("CAFE");

    private static byte[] exportApdu(byte[] challenge) {
        byte[] data = RefCrypto.concat(new byte[] {REF1, SLOT}, challenge, new byte[] {(byte) SN.length}, SN);
        return RefCrypto.concat(Hex.decode("804A0000"), new byte[] {(byte) data.length}, data, new byte[] {0});
    }

    /** A torn AS holding KEY (limit LIMIT, exported EXPORTS_BEFORE times) and another key, PIN verified. */
    private static Card as(int exportsBefore) {
        Card as = Tearing.tornAs();
        Setup.transportKey(as, CardSet.T);
        Setup.appKey(as, REF1, 0x01, 1, false, LIMIT, KEY);
        Setup.appKey(as, OTHER_REF1, 0x01, 1, false, 0xFFFF, OTHER_KEY);
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        for (int i = 0; i < exportsBefore; i++) {
            as.ok(as.send(exportApdu(new byte[16])));
        }
        return as;
    }

    private static int count(byte[] entry) {
        return (entry[ENTRY_COUNT] & 0xFF) << 8 | entry[ENTRY_COUNT + 1] & 0xFF;
    }

    /** Cuts an export at every write; returns the export count after each cut, in order. */
    private static List<Integer> tear(int exportsBefore) {
        List<Integer> counts = new ArrayList<>();
        String[] infoBefore = new String[1];
        byte[][] entriesBefore = new byte[2][];
        Tearing.tearAtEveryWrite(() -> {
            Card as = as(exportsBefore);
            infoBefore[0] = Hex.encode(as.info());
            entriesBefore[0] = Tearing.entry(as, REF1);
            entriesBefore[1] = Tearing.entry(as, OTHER_REF1);
            return new Tearing.Attempt(as, exportApdu(Hex.decode("000102030405060708090A0B0C0D0E0F")));
        }, (as, k) -> {
            assertEquals("INFO, cut at " + k, infoBefore[0], Hex.encode(as.info()));
            assertArrayEquals("the other key, cut at " + k, entriesBefore[1], Tearing.entry(as, OTHER_REF1));
            byte[] entry = Tearing.entry(as, REF1);
            int count = count(entry);
            assertTrue("count " + count + " after a cut at " + k, count == exportsBefore || count == exportsBefore + 1);
            entry[ENTRY_COUNT] = entriesBefore[0][ENTRY_COUNT];
            entry[ENTRY_COUNT + 1] = entriesBefore[0][ENTRY_COUNT + 1];
            assertArrayEquals("the key's entry besides its count, cut at " + k, entriesBefore[0], entry);
            assertKeyIntact(as, count);
            counts.add(count);
        });
        return counts;
    }

    /** The AS still exports the very key, up to its limit and not beyond. */
    private static void assertKeyIntact(Card as, int count) {
        Setup.verify(as, Setup.PIN);
        for (int done = count; done < LIMIT; done++) {
            Card ei = Setup.operationalEi(CardSet.T, SN, SLOT, 16, 0x01);
            byte[] block = as.ok(as.send(exportApdu(Setup.challenge(ei))));
            ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
            assertArrayEquals(RefCrypto.cmac(KEY, DATA), ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, DATA, true)));
        }
        assertEquals("the limit holds", 0x6983, as.send(exportApdu(new byte[16])).sw);
    }

    /**
     * The count moves at most once, from {@code before} to {@code before + 1}, and never back. The count is
     * one atomic write, the command's last: every cut before it leaves the count where it was (the
     * uncut command, which counts, is {@link Tearing#tearAtEveryWrite}'s first run).
     */
    private static void assertOneStep(List<Integer> counts, int before) {
        int firstCounted = counts.contains(before + 1) ? counts.indexOf(before + 1) : counts.size();
        assertTrue("no cut before the command's first write left the export counted: " + counts, firstCounted > 0);
        for (int k = 0; k < counts.size(); k++) {
            assertEquals("after a cut at write " + (k + 1) + " of " + counts.size(),
                    k < firstCounted ? before : before + 1, (int) counts.get(k));
        }
    }

    @Test
    public void theCountMovesOnceAndTheKeyStaysWhereverTheExportIsCut() {
        assertOneStep(tear(EXPORTS_BEFORE), EXPORTS_BEFORE);
    }

    @Test
    public void theLastAllowedExportCutShortNeverOpensAnotherOne() {
        assertOneStep(tear(LIMIT - 1), LIMIT - 1);
    }
}
