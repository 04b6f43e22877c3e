package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;

import java.util.Arrays;
import org.junit.Test;

/** Whole loads from an AS into EIs, checked against the independent oracle (RefCrypto). */
public class KeyLoadTest {

    private static final byte[] SN_A = Hex.decode("4B4C000000000001");
    private static final byte[] SN_B = Hex.decode("0123456789ABCDEFFEDCBA9876543210");
    private static final byte[] DATA = Hex.decode("000102030405060708090A0B0C0D0E0F1011");

    private static byte[] entry(Card ei, int ref) {
        byte[] list = ei.listKeys();
        for (int i = 0; i < list.length; i += 14) {
            if (list[i] == ref) {
                return Arrays.copyOfRange(list, i, i + 14);
            }
        }
        throw new AssertionError("no entry " + ref);
    }

    @Test
    public void eachEiStoresTheKeysAndAuthenticatesWithThem() {
        CardSet cardSet = CardSet.withKeys(0x0001, 0xFFFF);
        for (byte[] sn : new byte[][] {SN_A, SN_B}) {
            Card ei = CardSet.ei(sn);
            cardSet.loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH);
            cardSet.loadOk(ei, CardSet.REF_MAC, CardSet.SLOT_MAC);
            cardSet.loadOk(ei, CardSet.REF_ENC, CardSet.SLOT_ENC);

            byte[] macUnit = RefCrypto.kdf(CardSet.TA_MAC, 0x20, 24, sn);
            assertArrayEquals(RefCrypto.kcv(CardSet.TA_AUTH), Arrays.copyOfRange(entry(ei, CardSet.SLOT_AUTH), 7, 10));
            assertArrayEquals(RefCrypto.kcv(macUnit), Arrays.copyOfRange(entry(ei, CardSet.SLOT_MAC), 7, 10));
            assertArrayEquals(RefCrypto.kcv(CardSet.TA_ENC), Arrays.copyOfRange(entry(ei, CardSet.SLOT_ENC), 7, 10));
            assertEquals("loaded", 1, entry(ei, CardSet.SLOT_MAC)[1]);
            assertEquals("version", 0x0102, (entry(ei, CardSet.SLOT_MAC)[4] & 0xFF) << 8 | entry(ei, CardSet.SLOT_MAC)[5] & 0xFF);

            byte[] mac = ei.ok(ei.command(0x00, 0x88, 0x00, CardSet.SLOT_AUTH, DATA, true));
            assertArrayEquals(RefCrypto.cmac(CardSet.TA_AUTH, DATA), mac);
        }
    }

    @Test
    public void diversifiedKeysDifferPerUnit() {
        CardSet cardSet = CardSet.withKeys(0x0001, 0xFFFF);
        Card a = CardSet.ei(SN_A);
        Card b = CardSet.ei(SN_B);
        cardSet.loadOk(a, CardSet.REF_MAC, CardSet.SLOT_MAC);
        cardSet.loadOk(b, CardSet.REF_MAC, CardSet.SLOT_MAC);
        assertFalse(Arrays.equals(Arrays.copyOfRange(entry(a, CardSet.SLOT_MAC), 7, 10),
                Arrays.copyOfRange(entry(b, CardSet.SLOT_MAC), 7, 10)));
    }

    @Test
    public void exportsAreCountedAgainstTheLimit() {
        CardSet cardSet = CardSet.withKeys(0x0001, 2);
        cardSet.loadOk(CardSet.ei(SN_A), CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        cardSet.loadOk(CardSet.ei(SN_B), CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        byte[] list = cardSet.as.listKeys();
        assertEquals("count", 2, list[11]);
        byte[] data = RefCrypto.concat(new byte[] {(byte) CardSet.REF_AUTH, 1}, new byte[16], new byte[] {8}, SN_A);
        assertEquals(0x6983, cardSet.as.command(0x80, 0x4A, 0, 0, data, true).sw);
    }

    @Test
    public void theBlockIsWhatTheOracleComputes() {
        CardSet cardSet = CardSet.withKeys(0x0001, 0xFFFF);
        Card ei = CardSet.ei(SN_B);
        byte[] r = Setup.challenge(ei);
        byte[] block = cardSet.export(CardSet.REF_MAC, CardSet.SLOT_MAC, r, SN_B);
        RefCrypto.Load expected = new RefCrypto.Load(CardSet.T, CardSet.TA_MAC, SN_B, r, CardSet.REF_MAC,
                CardSet.SLOT_MAC, 0x02, 0x0102, true);
        assertArrayEquals(expected.block(), block);
    }

    @Test
    public void sameVersionSameKeyIsAcceptedAgainAndOlderIsRefused() {
        Card ei = CardSet.ei(SN_A);
        CardSet.withKeys(0x0005, 0xFFFF).loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        String before = ei.snapshot();
        CardSet.withKeys(0x0005, 0xFFFF).loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        assertEquals(before, ei.snapshot());
        assertEquals(0x6A80, CardSet.withKeys(0x0004, 0xFFFF).load(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH));
        assertEquals(before, ei.snapshot());
        CardSet.withKeys(0x0006, 0xFFFF).loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        assertEquals(6, entry(ei, CardSet.SLOT_AUTH)[5]);
    }
}
