package keyload.applet;

import static keyload.applet.Refusals.refused;
import static keyload.applet.Refusals.refusedSpendingATry;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

/** Every status word of PROTOCOL.md §4.4 the AS can return, with nothing stored changed. */
public class AsStatusWordsTest {

    private static final byte[] T128 = Hex.decode("404142434445464748494A4B4C4D4E4F");
    private static final byte[] KEY256 = new byte[32];
    private static final byte[] SN = Hex.decode("4B4C000000000001");

    private static Card setupAs() {
        Card as = Card.as();
        Setup.transportKey(as, T128);
        Setup.appKey(as, 0x03, 0x01, 1, false, 1, Hex.decode("00112233445566778899AABBCCDDEEFF"));
        return as;
    }

    private static Card lockedAs() {
        Card as = setupAs();
        Setup.appKey(as, 0x20, 0x04, 1, false, 0xFFFF, KEY256);
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        return as;
    }

    private static byte[] export(int ref1, int ref2, byte[] sn) {
        byte[] data = RefCrypto.concat(new byte[] {(byte) ref1, (byte) ref2}, new byte[16], new byte[] {(byte) sn.length}, sn);
        return RefCrypto.concat(Hex.decode("804A0000"), new byte[] {(byte) data.length}, data, new byte[] {0});
    }

    @Test
    public void classInstructionAndParameters() {
        Card as = lockedAs();
        refused(as, 0x6E00, "8440000000");
        refused(as, 0x6E00, "0040000000");
        refused(as, 0x6E00, "8020008104" + "31323334");
        refused(as, 0x6D00, "80FF000000");
        refused(as, 0x6D00, "804C000000");          // IMPORT KEY is the EI's
        refused(as, 0x6D00, "0084000010");          // GET CHALLENGE is the EI's
        refused(as, 0x6A86, "8040010000");
        refused(as, 0x6A86, "0020008004" + "31323334");
        refused(as, 0x6A82, "00A4040009F04B45594C4F41440300");
    }

    @Test
    public void setupCommands() {
        Card as = setupAs();
        refused(as, 0x6700, "80500000 0F 404142434445464748494A4B4C4D4E".replace(" ", ""));
        refused(as, 0x6700, "8054000009030100010000FFFF00");
        refused(as, 0x6700, "805A000003313233");
        refused(as, 0x6700, "805A000011" + "3132333435363738393031323334353637");
        refused(as, 0x6A80, RefCrypto.concat(Hex.decode("8054000017" + "00010001000001"), new byte[16]));
        refused(as, 0x6A80, RefCrypto.concat(Hex.decode("8054000017" + "80010001000001"), new byte[16]));
        refused(as, 0x6A80, RefCrypto.concat(Hex.decode("8054000017" + "03030001000001"), new byte[16]));
        refused(as, 0x6A80, RefCrypto.concat(Hex.decode("8054000017" + "03010000000001"), new byte[16]));
        refused(as, 0x6A80, RefCrypto.concat(Hex.decode("8054000017" + "03010001020001"), new byte[16]));
        refused(as, 0x6985, "805E0000");            // no PIN yet
        refused(as, 0x6985, "804A000000");          // EXPORT KEY before LOCK
        refused(as, 0x6985, "0020008104" + "31323334");
        for (int ref = 0x30; ref < 0x30 + 15; ref++) {
            Setup.appKey(as, ref, 0x01, 1, false, 1, new byte[16]);
        }
        refused(as, 0x6A84, RefCrypto.concat(Hex.decode("8054000017" + "70010001000001"), new byte[16]));
        Setup.pin(as, Setup.PIN);
        refused(as, 0x6700, "805E000001" + "00");
        Setup.lock(as);
        refused(as, 0x6985, "8050000010" + "404142434445464748494A4B4C4D4E4F");
        refused(as, 0x6985, "805A000004" + "31323334");
        refused(as, 0x6985, "805E0000");
    }

    @Test
    public void exportChecksInTheirOrder() {
        Card as = lockedAs();
        refused(as, 0x6982, export(0x03, 0x01, SN));
        Setup.verify(as, Setup.PIN);
        refused(as, 0x6700, export(0x03, 0x01, Hex.decode("01020304050607")));
        refused(as, 0x6700, export(0x03, 0x01, new byte[17]));
        byte[] inconsistent = export(0x03, 0x01, SN);
        inconsistent[5 + 18] = 9;                    // len(SN) says 9, 8 bytes follow
        refused(as, 0x6700, inconsistent);
        refused(as, 0x6700, "804A0000020301");
        refused(as, 0x6A88, export(0x04, 0x01, SN));
        refused(as, 0x6A88, export(0x00, 0x01, SN));
        refused(as, 0x6A80, export(0x03, 0x00, SN));
        refused(as, 0x6A80, export(0x03, 0x80, SN));
        refused(as, 0x6985, export(0x20, 0x01, SN));  // AES-256 key, AES-128 transport key
        assertEquals(0x9000, as.send(export(0x03, 0x01, SN)).sw);
        refused(as, 0x6983, export(0x03, 0x01, SN));  // limit 1 reached
    }

    @Test
    public void pinTriesThenBlocked() {
        Card as = lockedAs();
        byte[] wrong = Hex.decode("002000810439393939");
        refusedSpendingATry(as, 0x63C2, wrong);
        refusedSpendingATry(as, 0x63C1, Hex.decode("0020008111" + "3132333435363738393031323334353637"));
        Setup.verify(as, Setup.PIN);                  // a good PIN gives the tries back
        assertEquals(3, as.info()[7]);
        refusedSpendingATry(as, 0x63C2, wrong);
        refusedSpendingATry(as, 0x63C1, wrong);
        refusedSpendingATry(as, 0x63C0, wrong);
        refused(as, 0x6983, Hex.decode("002000810431323334"));
        refused(as, 0x6982, export(0x03, 0x01, SN));
        as.powerCycle();
        refused(as, 0x6983, Hex.decode("002000810431323334"));
    }

    /** PROTOCOL.md §8 amendment 2 (v1 spent a try here). */
    @Test
    public void aVerifyWithoutDataAsksAndSpendsNothing() {
        Card as = lockedAs();
        refused(as, 0x63C3, Hex.decode("00200081"));
        refused(as, 0x63C3, Hex.decode("0020008100"));  // Lc = 0 is no data either
        Setup.verify(as, Setup.PIN);
        assertEquals(0x9000, as.send("00200081").sw);
        assertEquals(3, as.info()[7]);
        as.select();                                   // a new selection forgets the verification
        refused(as, 0x63C3, Hex.decode("00200081"));
        byte[] wrong = Hex.decode("002000810439393939");
        refusedSpendingATry(as, 0x63C2, wrong);
        refused(as, 0x63C2, Hex.decode("00200081"));
        refusedSpendingATry(as, 0x63C1, wrong);
        refusedSpendingATry(as, 0x63C0, wrong);
        refused(as, 0x6983, Hex.decode("00200081"));
        assertEquals(0, as.info()[7]);
    }

    @Test
    public void pinVerificationEndsWithTheSelection() {
        Card as = lockedAs();
        Setup.verify(as, Setup.PIN);
        as.select();
        refused(as, 0x6982, export(0x03, 0x01, SN));
    }
}
