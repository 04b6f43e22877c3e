package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;

import java.io.IOException;
import java.lang.reflect.Field;
import java.util.Arrays;
import org.junit.Test;

/**
 * Transport key rotation, PROTOCOL.md §9: the vectors of §9.8 byte for byte, a rotation that keeps the
 * EI's keys, EXPORT KEY under the next T for a rotated EI, RETIRE, and every refusal (replay, another EI,
 * another T, an older or equal version, a wrong shape), each leaving the card as it was.
 */
public class RotationTest {

    static final byte[] T_NEW = Hex.decode("E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF");
    static final int NEW_VERSION = 0x0002;
    private static final byte[] SN_A = Hex.decode("4B4C0000000000A1");
    private static final byte[] SN_B = Hex.decode("4B4C0000000000B2");
    private static final byte[] DATA = Hex.decode("00112233");
    private static final int INFO_TRIES = 7;

    // ------------------------------------------------------------------ helpers

    /** The 8 INFO bytes after the SN (§9.2). */
    static byte[] extension(Card card) {
        byte[] info = card.info();
        int end = 11 + info[10];
        assertEquals("INFO with the §9 extension", end + 8, info.length);
        return Arrays.copyOfRange(info, end, end + 8);
    }

    static int transportVersion(Card card) {
        byte[] extension = extension(card);
        return (extension[0] & 0xFF) << 8 | extension[1] & 0xFF;
    }

    static byte[] transportKcv(Card card) {
        return Arrays.copyOfRange(card.info(), 4, 7);
    }

    static byte[] exportTransport(Card as, byte[] r, byte[] sn) {
        return as.ok(exportTransportResponse(as, r, sn));
    }

    static Card.Response exportTransportResponse(Card as, byte[] r, byte[] sn) {
        return as.command(0x80, 0x62, 0, 0, RefCrypto.concat(r, new byte[] {(byte) sn.length}, sn), true);
    }

    static int importTransport(Card ei, byte[] block) {
        return ei.command(0x80, 0x66, 0, 0, block).sw;
    }

    /** GET CHALLENGE, EXPORT TRANSPORT KEY, IMPORT TRANSPORT KEY: the import's status word. */
    static int rotate(Card as, Card ei) {
        byte[] block = exportTransport(as, Setup.challenge(ei), CardSet.serial(ei));
        return importTransport(ei, block);
    }

    /** A load of {@code ref1} into {@code ref2} with EXPORT KEY's P1P2 = {@code selector}. */
    static int load(Card as, Card ei, int ref1, int ref2, int selector) {
        byte[] sn = CardSet.serial(ei);
        byte[] data = RefCrypto.concat(new byte[] {(byte) ref1, (byte) ref2}, Setup.challenge(ei),
                new byte[] {(byte) sn.length}, sn);
        Card.Response block = as.command(0x80, 0x4A, selector >> 8, selector & 0xFF, data, true);
        if (block.sw != 0x9000) {
            return block.sw;
        }
        return ei.command(0x80, 0x4C, 0, 0, block.data).sw;
    }

    /** INFO without its try counter, and LIST KEYS: what a refusal that may spend a try must leave as it was. */
    static String state(Card card) {
        byte[] info = card.info();
        info[INFO_TRIES] = 0;
        return Hex.encode(info) + "/" + Hex.encode(card.listKeys());
    }

    static int tries(Card card) {
        return card.info()[INFO_TRIES];
    }

    private static byte[] authenticate(Card ei, int slot) {
        return ei.ok(ei.command(0x00, 0x88, 0x00, slot, DATA, true));
    }

    private static CardSet rotating() {
        return CardSet.withKeys(1, 0xFFFF, T_NEW, NEW_VERSION);
    }

    // ------------------------------------------------------------------ vectors (§9.8)

    @Test
    public void oracleReproducesEveryRotationVector() throws IOException {
        for (Vectors.Vector v : RotationVectors.all()) {
            byte[] block = RefCrypto.transportBlock(v.bytes("T"), v.bytes("T_new"), v.version(), v.bytes("SN"),
                    v.bytes("R"));
            byte[] t1 = RefCrypto.kdf(v.bytes("T"), 0x10, v.bytes("T").length, v.bytes("SN"));
            assertArrayEquals(v + " T1", v.bytes("T1"), t1);
            byte[] context = RefCrypto.concat(v.bytes("R"), new byte[] {0});
            assertArrayEquals(v + " K_enc", v.bytes("K_enc"), RefCrypto.kdf(t1, 0x11, t1.length, context));
            assertArrayEquals(v + " K_mac", v.bytes("K_mac"), RefCrypto.kdf(t1, 0x12, t1.length, context));
            assertEquals(v + " block", Hex.encode(RefCrypto.concat(v.bytes("header"), v.bytes("encT"), v.bytes("SAS"),
                    v.bytes("CAS"))), Hex.encode(block));
            assertEquals(v + " AS response", Hex.encode(v.bytes("AS_response")), Hex.encode(block) + "9000");
        }
    }

    @Test
    public void asExportsExactlyTheRotationVectorResponse() throws IOException {
        for (Vectors.Vector v : RotationVectors.all()) {
            Card as = Card.as();
            Setup.transportKey(as, v.bytes("T"));
            Setup.appKey(as, 0x03, 0x01, 1, false, 0xFFFF, CardSet.TA_AUTH);
            Setup.nextTransportKey(as, v.version(), v.bytes("T_new"));
            Setup.pin(as, Setup.PIN);
            Setup.lock(as);
            Setup.verify(as, Setup.PIN);
            Card.Response response = as.send(v.bytes("EXPORT_TRANSPORT_KEY_to_AS"));
            assertEquals(v + " response", Hex.encode(v.bytes("AS_response")),
                    Hex.encode(response.data) + String.format("%04X", response.sw));
        }
    }

    @Test
    public void eiTakesTheRotationVectorBlockForTheVectorChallenge() throws Exception {
        for (Vectors.Vector v : RotationVectors.all()) {
            Card ei = Setup.operationalEi(v.bytes("T"), v.bytes("SN"), 0x01, 16, 0x01);
            assertEquals(1, transportVersion(ei));
            Setup.challenge(ei);
            Field transients = EiApplet.class.getDeclaredField("transients");
            transients.setAccessible(true);
            System.arraycopy(v.bytes("R"), 0, ((Transients) transients.get(ei.applet())).challenge, 0, 16);
            assertEquals(v + " import", 0x9000, ei.send(v.bytes("IMPORT_TRANSPORT_KEY_to_EI")).sw);
            assertArrayEquals(v + " KCV(T)", RefCrypto.kcv(v.bytes("T_new")), transportKcv(ei));
            assertEquals(v + " T length", v.bytes("T_new").length, ei.info()[3]);
            assertEquals(v + " version", v.version(), transportVersion(ei));
        }
    }

    // ------------------------------------------------------------------ a rotation

    @Test
    public void infoReportsTheTransportKeyVersionAndTheNextKey() {
        CardSet set = rotating();
        assertEquals("0001" + "20" + Hex.encode(RefCrypto.kcv(T_NEW)) + "0002", Hex.encode(extension(set.as)));
        assertEquals("0001000000000000", Hex.encode(extension(CardSet.ei(SN_A))));
        assertEquals("0000000000000000", Hex.encode(extension(Card.ei())));
    }

    @Test
    public void aRotatedEiKeepsItsKeysAndTakesKeysUnderTheNewTransportKey() {
        CardSet set = rotating();
        Card ei = CardSet.ei(SN_A);
        set.loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH);
        String slots = Hex.encode(ei.listKeys());
        int tries = ei.info()[INFO_TRIES];

        assertEquals(0x9000, rotate(set.as, ei));
        assertArrayEquals(RefCrypto.kcv(T_NEW), transportKcv(ei));
        assertEquals(NEW_VERSION, transportVersion(ei));
        assertEquals("the slots are untouched", slots, Hex.encode(ei.listKeys()));
        assertEquals(tries, ei.info()[INFO_TRIES]);
        assertArrayEquals(RefCrypto.cmac(CardSet.TA_AUTH, DATA), authenticate(ei, CardSet.SLOT_AUTH));

        // keys under the current T no longer open; under the next T (P1P2 = its version) they do
        assertEquals(0x63C9, set.load(ei, CardSet.REF_MAC, CardSet.SLOT_MAC));
        assertEquals(0x9000, load(set.as, ei, CardSet.REF_MAC, CardSet.SLOT_MAC, NEW_VERSION));
        assertEquals(0x9000, load(set.as, ei, CardSet.REF_ENC, CardSet.SLOT_ENC, NEW_VERSION));
        assertArrayEquals(RefCrypto.cmac(CardSet.TA_AUTH, DATA), authenticate(ei, CardSet.SLOT_AUTH));
    }

    @Test
    public void anEiNotRotatedRefusesBlocksUnderTheNextTransportKey() {
        CardSet set = rotating();
        Card ei = CardSet.ei(SN_A);
        String before = state(ei);
        assertEquals(0x63C9, load(set.as, ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH, NEW_VERSION));
        assertEquals(before, state(ei));
        assertEquals(9, tries(ei));
        set.loadOk(ei, CardSet.REF_AUTH, CardSet.SLOT_AUTH); // a good CAS gives the try back
        assertEquals(10, ei.info()[INFO_TRIES]);
    }

    @Test
    public void aReplayedOrRedirectedRotationIsRefused() {
        CardSet set = rotating();
        Card a = CardSet.ei(SN_A);
        Card b = CardSet.ei(SN_B);
        byte[] block = exportTransport(set.as, Setup.challenge(a), SN_A);
        String bBefore = state(b);
        // the block for A, given to B for B's challenge: its CAS is A's
        Setup.challenge(b);
        assertEquals(0x63C9, importTransport(b, block));
        assertArrayEquals(RefCrypto.kcv(CardSet.T), transportKcv(b));
        assertEquals(0x9000, importTransport(a, block));
        // replay to A: no challenge left, then a fresh challenge the block was not made for
        String aAfter = state(a);
        assertEquals(0x6985, importTransport(a, block));
        Setup.challenge(a);
        assertEquals(0x63C9, importTransport(a, block));
        assertEquals(aAfter, state(a));
        assertEquals(bBefore, state(b));
        assertEquals(9, tries(a));
        assertEquals(9, tries(b));
    }

    @Test
    public void aTransportKeyOfAnEqualOrOlderVersionIsRefused() {
        CardSet set = rotating();
        Card ei = CardSet.ei(SN_A);
        assertEquals(0x9000, rotate(set.as, ei));
        String rotated = ei.snapshot();
        // an AS of the rotated set whose next T has the EI's version: equal
        Card same = Setup.operationalAs(T_NEW, 0x03, 0x01, 1, false, 0xFFFF, CardSet.TA_AUTH);
        Card second = Card.as();
        Setup.transportKey(second, T_NEW);
        Setup.appKey(second, 0x03, 0x01, 1, false, 0xFFFF, CardSet.TA_AUTH);
        Setup.nextTransportKey(second, NEW_VERSION, CardSet.T);
        Setup.pin(second, Setup.PIN);
        Setup.lock(second);
        Setup.verify(second, Setup.PIN);
        assertEquals(0x6A80, rotate(second, ei));
        // older: a block the oracle makes under the EI's T with version 1
        byte[] r = Setup.challenge(ei);
        assertEquals(0x6A80, importTransport(ei, RefCrypto.transportBlock(T_NEW, CardSet.T, 1, SN_A, r)));
        assertEquals(rotated, ei.snapshot());
        assertEquals(0x9000, load(same, ei, 0x03, CardSet.SLOT_AUTH, 0));
    }

    @Test
    public void aBlockUnderAnotherTransportKeyIsRefused() {
        Card ei = CardSet.ei(SN_A);
        String before = state(ei);
        byte[] r = Setup.challenge(ei);
        byte[] other = Hex.decode("0F0E0D0C0B0A09080706050403020100F0E1D2C3B4A5968778695A4B3C2D1E0F");
        assertEquals(0x63C9, importTransport(ei, RefCrypto.transportBlock(other, T_NEW, 2, SN_A, r)));
        assertEquals(before, state(ei));
        assertEquals(9, tries(ei));
    }

    @Test
    public void retireMakesTheNextTransportKeyCurrent() {
        CardSet set = rotating();
        Card rotated = CardSet.ei(SN_A);
        Card left = CardSet.ei(SN_B);
        assertEquals(0x9000, rotate(set.as, rotated));
        assertEquals(0x6A80, set.as.command(0x80, 0x64, 0, 0, new byte[] {0, 3}).sw);
        set.as.ok(set.as.command(0x80, 0x64, 0, 0, new byte[] {0, NEW_VERSION}));
        assertArrayEquals(RefCrypto.kcv(T_NEW), transportKcv(set.as));
        assertEquals("0002000000000000", Hex.encode(extension(set.as)));
        assertEquals(0x9000, load(set.as, rotated, CardSet.REF_AUTH, CardSet.SLOT_AUTH, 0));
        assertEquals(0x9000, load(set.as, rotated, CardSet.REF_MAC, CardSet.SLOT_MAC, NEW_VERSION));
        assertEquals(0x63C9, set.load(left, CardSet.REF_AUTH, CardSet.SLOT_AUTH));
        assertEquals("no next T any more", 0x6A88, set.as.command(0x80, 0x62, 0, 0,
                RefCrypto.concat(new byte[16], new byte[] {8}, SN_B), true).sw);
        assertEquals(0x6A88, set.as.command(0x80, 0x64, 0, 0, new byte[] {0, NEW_VERSION}).sw);
        assertEquals("the old T's version is gone", 0x6A86, load(set.as, left, CardSet.REF_AUTH,
                CardSet.SLOT_AUTH, 0x0001));
    }

    // ------------------------------------------------------------------ refusals

    @Test
    public void theAsRefusesRotationCommandsOutOfOrder() {
        Card blank = Card.as();
        Refusals.refused(blank, 0x6985, Hex.decode("8060000012000210111213141516171819101A1B1C1D1E1F"));
        Setup.transportKey(blank, CardSet.T);
        String before = blank.snapshot();
        Refusals.refused(blank, 0x6700, Hex.decode("80600000020002"));
        Refusals.refused(blank, 0x6A80, RefCrypto.concat(Hex.decode("8060000022"), new byte[] {0, 1}, T_NEW));
        Refusals.refused(blank, 0x6A80, RefCrypto.concat(Hex.decode("8060000012"), new byte[] {0, 2},
                Arrays.copyOf(T_NEW, 16)));
        Refusals.refused(blank, 0x6A86, RefCrypto.concat(Hex.decode("8060010022"), new byte[] {0, 2}, T_NEW));
        assertEquals(before, blank.snapshot());
        Setup.nextTransportKey(blank, 5, T_NEW);
        assertEquals("0001" + "20" + Hex.encode(RefCrypto.kcv(T_NEW)) + "0005", Hex.encode(extension(blank)));
        Setup.nextTransportKey(blank, NEW_VERSION, CardSet.T); // replaced in SETUP
        assertEquals("0001" + "20" + Hex.encode(RefCrypto.kcv(CardSet.T)) + "0002", Hex.encode(extension(blank)));
        assertEquals("no new T under a next T", 0x6985, blank.command(0x80, 0x50, 0, 0, T_NEW).sw);
        assertEquals(0x6985, blank.command(0x80, 0x62, 0, 0, new byte[25], true).sw);

        CardSet set = rotating();
        Card as = set.as;
        String locked = as.snapshot();
        assertEquals(0x6985, as.command(0x80, 0x60, 0, 0, RefCrypto.concat(new byte[] {0, 3}, T_NEW)).sw);
        assertEquals(0x6700, as.command(0x80, 0x62, 0, 0, new byte[24], true).sw);
        assertEquals(0x6700, as.command(0x80, 0x62, 0, 0, RefCrypto.concat(new byte[17], SN_A), true).sw);
        assertEquals("Le other than 00 or 0x40", 0x6700, as.send(RefCrypto.concat(Hex.decode("8062000019"),
                new byte[16], new byte[] {8}, SN_A, new byte[] {0x30})).sw);
        assertEquals(0x6700, as.command(0x80, 0x64, 0, 0, new byte[] {2}).sw);
        assertEquals(0x6A86, as.command(0x80, 0x4A, 0x00, 0x03, new byte[27], true).sw);
        as.powerCycle();
        assertEquals(0x6982, exportTransportResponse(as, new byte[16], SN_A).sw);
        assertEquals(0x6982, as.command(0x80, 0x64, 0, 0, new byte[] {0, NEW_VERSION}).sw);
        assertEquals(locked, as.snapshot());
    }

    @Test
    public void theEiRefusesWhatIsNotATransportKeyBlockForIt() {
        CardSet set = rotating();
        Card ei = CardSet.ei(SN_A);
        String before = ei.snapshot();
        assertEquals("no challenge", 0x6985, importTransport(ei, new byte[48]));
        // an application key block for slot 01, genuine, sent as a transport key block: refused by its shape
        byte[] r = Setup.challenge(ei);
        byte[] application = set.export(CardSet.REF_AUTH, CardSet.SLOT_AUTH, r, SN_A);
        assertEquals(0x6A80, importTransport(ei, application));
        // a transport key block sent to IMPORT KEY: v1 refuses format 02
        byte[] transport = exportTransport(set.as, Setup.challenge(ei), SN_A);
        assertEquals(0x6A80, ei.command(0x80, 0x4C, 0, 0, transport).sw);
        // header fields that must be 00, a wrong length
        for (int field : new int[] {1, 3, 6, 7}) {
            byte[] bent = exportTransport(set.as, Setup.challenge(ei), SN_A);
            bent[field] = 1;
            assertEquals("header byte " + field, 0x6A80, importTransport(ei, bent));
        }
        byte[] cut = Arrays.copyOf(exportTransport(set.as, Setup.challenge(ei), SN_A), 47);
        assertEquals(0x6700, importTransport(ei, cut));
        assertEquals("nothing changed, no try spent", before, ei.snapshot());

        // a new T shorter than T, genuine CAS: refused after the CAS
        Card ei256 = CardSet.ei(SN_B);
        byte[] shorter = RefCrypto.transportBlock(CardSet.T, Arrays.copyOf(T_NEW, 16), 2, SN_B, Setup.challenge(ei256));
        String b = state(ei256);
        assertEquals(0x6A80, importTransport(ei256, shorter));
        // a wrong SAS with a good CAS: 6982 and a try spent
        byte[] sasWrong = forgedSas(CardSet.T, T_NEW, 2, SN_B, Setup.challenge(ei256));
        assertEquals(0x6982, importTransport(ei256, sasWrong));
        assertEquals(b, state(ei256));
        assertEquals(9, tries(ei256));
        assertNotEquals(0x9000, importTransport(Card.ei(), new byte[48]));
    }

    /** A transport key block whose SAS is another key's, its CAS computed over it (only the SAS check fails). */
    private static byte[] forgedSas(byte[] t, byte[] tNew, int version, byte[] sn, byte[] r) {
        byte[] context = RefCrypto.concat(r, new byte[] {0});
        byte[] t1 = RefCrypto.kdf(t, 0x10, t.length, sn);
        byte[] kEnc = RefCrypto.kdf(t1, 0x11, t.length, context);
        byte[] kMac = RefCrypto.kdf(t1, 0x12, t.length, context);
        byte[] header = {2, 0, (byte) tNew.length, 0, (byte) (version >> 8), (byte) version, 0, 0};
        byte[] enc = RefCrypto.aes(javax.crypto.Cipher.ENCRYPT_MODE, "AES/CBC/NoPadding", kEnc, tNew);
        byte[] body = RefCrypto.concat(header, enc, RefCrypto.kcv8(CardSet.TA_AUTH));
        return RefCrypto.concat(body, RefCrypto.cmac(kMac, body));
    }
}
