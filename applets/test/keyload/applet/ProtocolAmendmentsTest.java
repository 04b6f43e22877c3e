package keyload.applet;

import static keyload.applet.Refusals.refused;
import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.lang.reflect.Field;
import java.util.Arrays;
import org.junit.Test;

/**
 * PROTOCOL.md §8, the v1.1 amendments, as the applets implement them, and the INTERNAL AUTHENTICATE rule
 * of docs/PROTOCOL.md §7. Amendments 1 and 2 are also in {@link EiStatusWordsTest} and
 * {@link AsStatusWordsTest}.
 */
public class ProtocolAmendmentsTest {

    private static final byte[] SN = Hex.decode("4B4C0000000000A1");
    private static final byte[] OTHER_SN = Hex.decode("4B4C0000000000A2");
    private static final byte[] TA = Hex.decode("00112233445566778899AABBCCDDEEFF");
    private static final byte[] OTHER_TA = Hex.decode("0F112233445566778899AABBCCDDEEFF");
    private static final int REF1 = 0x03;
    private static final int SLOT = 0x01;
    private static final int ENTRY_COUNT = 10;

    private static byte[] exportData(byte[] r) {
        return RefCrypto.concat(new byte[] {REF1, SLOT}, r, new byte[] {(byte) SN.length}, SN);
    }

    private static int count(Card as) {
        byte[] entry = Tearing.entry(as, REF1);
        return (entry[ENTRY_COUNT] & 0xFF) << 8 | entry[ENTRY_COUNT + 1] & 0xFF;
    }

    /** Amendment 3: no Le, or a wrong one, is 6700 and counts nothing; 00 and the block's length work. */
    @Test
    public void exportKeyChecksLeBeforeCounting() {
        Card as = Setup.operationalAs(CardSet.T, REF1, 0x01, 1, false, 2, TA);
        byte[] data = exportData(new byte[16]);
        byte[] header = Hex.decode("804A0000");
        byte[] lc = {(byte) data.length};
        refused(as, 0x6700, RefCrypto.concat(header, lc, data));                        // case 3
        refused(as, 0x6700, RefCrypto.concat(header, lc, data, new byte[] {0x10}));      // too short
        refused(as, 0x6700, RefCrypto.concat(header, lc, data, new byte[] {0x31}));      // not the block's
        assertEquals(0, count(as));
        Card.Response exact = as.send(RefCrypto.concat(header, lc, data, new byte[] {0x30}));
        assertEquals(0x9000, exact.sw);
        assertEquals(0x30, exact.data.length);
        assertEquals(1, count(as));
        assertEquals(0x9000, as.send(RefCrypto.concat(header, lc, data, new byte[] {0})).sw);
        assertEquals(2, count(as));
        refused(as, 0x6983, RefCrypto.concat(header, lc, data, new byte[] {0}));         // the limit, as before
    }

    /**
     * Amendment 4: a same-version re-import is decided on the whole key, not on the 3-byte KCV: with the
     * slot's recorded KCV changed to that of another key, that key is still refused and the stored one
     * still accepted.
     */
    @Test
    public void aSameVersionReimportComparesTheWholeKey() throws Exception {
        Card ei = Setup.operationalEi(CardSet.T, SN, SLOT, 16, 0x01);
        assertEquals(0x9000, ei.send(importApdu(ei, TA, 5)).sw);
        forgeRecordedKcv(ei, RefCrypto.kcv(OTHER_TA));
        refused(ei, 0x6A80, importApdu(ei, OTHER_TA, 5));
        refused(ei, 0x6A80, importApdu(ei, OTHER_TA, 4));
        refused(ei, 0x9000, importApdu(ei, TA, 5));                                       // no write
        byte[] data = Hex.decode("CAFE");
        assertArrayEquals(RefCrypto.cmac(TA, data), ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, data, true)));
    }

    private static byte[] importApdu(Card ei, byte[] key, int version) {
        byte[] r = Setup.challenge(ei);
        byte[] block = new RefCrypto.Load(CardSet.T, key, SN, r, REF1, SLOT, 0x01, version, false).block();
        return RefCrypto.concat(Hex.decode("804C0000"), new byte[] {(byte) block.length}, block);
    }

    /** Overwrites the KCV in the slot's current record, as a KCV collision would look to the card. */
    private static void forgeRecordedKcv(Card ei, byte[] kcv) throws Exception {
        Field field = EiApplet.class.getDeclaredField("persistent");
        field.setAccessible(true);
        Persistent persistent = (Persistent) field.get(ei.applet());
        byte[] records = persistent.entries.bytes();
        for (short i = 0; i < Protocol.MAX_ENTRIES; i++) {
            short record = persistent.entries.current(i);
            if (records[record] == SLOT) {
                System.arraycopy(kcv, 0, records, record + Protocol.ENTRY_KCV, 3);
                return;
            }
        }
        throw new AssertionError("no slot " + SLOT);
    }

    /** A KDF input block of PROTOCOL.md §2: 11 zero bytes, label, 00, L, counter, context. */
    private static byte[] kdfInput(int label, int bits, int counter, byte[] context) {
        byte[] fixed = new byte[16];
        fixed[11] = (byte) label;
        fixed[13] = (byte) (bits >> 8);
        fixed[14] = (byte) bits;
        fixed[15] = (byte) counter;
        return RefCrypto.concat(fixed, context);
    }

    /**
     * The INTERNAL AUTHENTICATE rule (docs/PROTOCOL.md §7): the CMAC of a KDF input block under an
     * undiversified key is the first block of another unit's TA_unit, so the EI refuses (6A80) every input
     * laid out as a KDF block, and only those.
     */
    @Test
    public void internalAuthenticateRefusesKdfInput() {
        Card ei = Setup.operationalEi(CardSet.T, SN, SLOT, 16, 0x01);
        assertEquals(0x9000, ei.send(importApdu(ei, TA, 1)).sw);
        byte[] attack = kdfInput(0x20, 128, 1, OTHER_SN);
        assertArrayEquals("the threat: this CMAC is another unit's key",
                RefCrypto.kdf(TA, 0x20, 16, OTHER_SN), RefCrypto.cmac(TA, attack));
        for (int label : new int[] {0x10, 0x11, 0x12, 0x20}) {
            for (int bits : new int[] {128, 192, 256}) {
                for (int counter : new int[] {1, 2}) {
                    refused(ei, 0x6A80, authenticate(kdfInput(label, bits, counter, OTHER_SN)));
                    refused(ei, 0x6A80, authenticate(kdfInput(label, bits, counter, new byte[0])));
                }
            }
        }
        byte[][] allowed = {
            new byte[64],                                              // zeros: no label
            kdfInput(0x21, 128, 1, OTHER_SN),                          // not a keyload label
            kdfInput(0x20, 129, 1, OTHER_SN),                          // not an AES length
            Arrays.copyOf(kdfInput(0x20, 128, 1, OTHER_SN), 15),       // shorter than a KDF block
            RefCrypto.concat(new byte[] {1}, Arrays.copyOfRange(attack, 1, attack.length)),
        };
        for (byte[] data : allowed) {
            assertArrayEquals(Hex.encode(data), RefCrypto.cmac(TA, data),
                    ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, data, true)));
        }
    }

    private static byte[] authenticate(byte[] data) {
        return RefCrypto.concat(Hex.decode("008800"), new byte[] {SLOT, (byte) data.length}, data, new byte[] {0});
    }
}
