package keyload.applet;

import static keyload.applet.Refusals.refused;
import static keyload.applet.Refusals.refusedSpendingATry;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import javax.crypto.Cipher;
import org.junit.Test;

/** Every status word of PROTOCOL.md §4.4 the EI can return, with nothing stored changed. */
public class EiStatusWordsTest {

    private static final byte[] T = Hex.decode("404142434445464748494A4B4C4D4E4F");
    private static final byte[] SN = Hex.decode("4B4C000000000001");
    private static final byte[] TA = Hex.decode("00112233445566778899AABBCCDDEEFF");
    private static final byte[] TA24 = Arrays.copyOf(TA, 24);
    private static final int SLOT = 0x01;
    private static final int SLOT_NO_IMPORT = 0x02;
    private static final int SLOT_MAC = 0x03;
    private static final int SLOT_24 = 0x04;

    private static Card setupEi() {
        Card ei = Card.ei();
        Setup.transportKey(ei, T);
        Setup.slot(ei, SLOT, 16, 0x01, true);
        return ei;
    }

    private static Card lockedEi() {
        Card ei = setupEi();
        Setup.serial(ei, SN);
        Setup.slot(ei, SLOT_NO_IMPORT, 16, 0x01, false);
        Setup.slot(ei, SLOT_MAC, 16, 0x02, true);
        Setup.slot(ei, SLOT_24, 24, 0x01, true);
        Setup.lock(ei);
        return ei;
    }

    private static byte[] importApdu(byte[] block) {
        return RefCrypto.concat(Hex.decode("804C0000"), new byte[] {(byte) block.length}, block);
    }

    /** A fresh challenge and a block for it, as an AS of the set would build it. */
    private static byte[] validImport(Card ei, int ref2, int usage, int version, byte[] key) {
        byte[] r = Setup.challenge(ei);
        return importApdu(new RefCrypto.Load(T, key, SN, r, 0x03, ref2, usage, version, false).block());
    }

    /** A block whose plain text is {@code plain} (key and padding) with a SAS and a CAS that verify. */
    private static byte[] sealed(Card ei, int ref2, int keyLength, byte[] plain, byte[] sas) {
        byte[] r = Setup.challenge(ei);
        RefCrypto.Load keys = new RefCrypto.Load(T, TA, SN, r, 0x03, ref2, 0x01, 1, false);
        byte[] header = {1, (byte) ref2, (byte) keyLength, 1, 0, 1, 0, 3};
        byte[] enc = RefCrypto.aes(Cipher.ENCRYPT_MODE, "AES/CBC/NoPadding", keys.kEnc, plain);
        byte[] body = RefCrypto.concat(header, enc, sas);
        return importApdu(RefCrypto.concat(body, RefCrypto.cmac(keys.kMac, body)));
    }

    @Test
    public void classInstructionAndParameters() {
        Card ei = lockedEi();
        refused(ei, 0x6E00, "A040000000");
        refused(ei, 0x6E00, "8084000010");
        refused(ei, 0x6D00, "804A000000");          // EXPORT KEY is the AS's
        refused(ei, 0x6D00, "0020008104" + "31323334");
        refused(ei, 0x6D00, "805A000004" + "31323334");
        refused(ei, 0x6A86, "0084010010");
        refused(ei, 0x6A86, "804C000100");
        refused(ei, 0x6A86, "0088000001" + "00");
        refused(ei, 0x6A86, "0088008001" + "00");
        refused(ei, 0x6A86, "0088010101" + "00");
    }

    @Test
    public void setupCommands() {
        Card ei = setupEi();
        refused(ei, 0x6700, "8052000007" + "01020304050607");
        refused(ei, 0x6700, "8052000011" + "0102030405060708090A0B0C0D0E0F1011");
        refused(ei, 0x6700, "8056000003" + "011001");
        refused(ei, 0x6700, "8056000005" + "0110010100");
        refused(ei, 0x6A80, "8056000004" + "00100101");
        refused(ei, 0x6A80, "8056000004" + "02110101");
        refused(ei, 0x6A80, "8056000004" + "02100301");
        refused(ei, 0x6A80, "8056000004" + "02100103");
        refused(ei, 0x6700, "8058000002" + "0505");
        refused(ei, 0x6A80, "8058000001" + "00");
        refused(ei, 0x6A80, "8058000001" + "10");
        refused(ei, 0x6985, "805E0000");            // no serial yet
        refused(ei, 0x6985, "0084000010");          // GET CHALLENGE before LOCK
        refused(ei, 0x6985, "804C000000");
        for (int ref = 0x10; ref < 0x10 + 15; ref++) {
            Setup.slot(ei, ref, 16, 0x02, true);
        }
        refused(ei, 0x6A84, "8056000004" + "70100101");
        Setup.serial(ei, SN);
        ei.ok(ei.send("8058000001" + "05"));
        assertEquals(5, ei.info()[7]);
        assertEquals(5, ei.info()[8]);
        Setup.lock(ei);
        refused(ei, 0x6985, "8052000008" + "0102030405060708");
        refused(ei, 0x6985, "8056000004" + "02100101");
        refused(ei, 0x6985, "8058000001" + "05");
        refused(ei, 0x6985, "805E0000");
    }

    @Test
    public void importNeedsAFreshChallenge() {
        Card ei = lockedEi();
        byte[] apdu = validImport(ei, SLOT, 1, 1, TA);
        ei.select();                                  // a new selection forgets the challenge
        refused(ei, 0x6985, apdu);
        byte[] again = validImport(ei, SLOT, 1, 1, TA);
        assertEquals(0x9000, ei.send(again).sw);
        refused(ei, 0x6985, again);                  // no replay
    }

    @Test
    public void importBlockChecksInTheirOrder() {
        Card ei = lockedEi();
        Setup.challenge(ei);
        refused(ei, 0x6700, "804C000007" + "01011001000100");
        byte[] badFormat = validImport(ei, SLOT, 1, 1, TA);
        badFormat[5] = 2;
        refused(ei, 0x6A80, badFormat);
        byte[] badLength = validImport(ei, SLOT, 1, 1, TA);
        badLength[7] = 0x11;
        refused(ei, 0x6A80, badLength);
        byte[] truncated = validImport(ei, SLOT, 1, 1, TA);
        refused(ei, 0x6700, Arrays.copyOf(RefCrypto.concat(new byte[] {truncated[0], truncated[1], 0, 0, 0x2F},
                Arrays.copyOfRange(truncated, 5, 52)), 52));

        byte[] tampered = validImport(ei, SLOT, 1, 1, TA);
        tampered[20] ^= 1;
        refusedSpendingATry(ei, 0x63C9, tampered);
        refusedSpendingATry(ei, 0x6A88, validImport(ei, 0x33, 1, 1, TA));  // the counter moves back up
        assertEquals("a good CAS gives the tries back", 10, ei.info()[7]);
        refused(ei, 0x6986, validImport(ei, SLOT_NO_IMPORT, 1, 1, TA));
        refused(ei, 0x6A80, validImport(ei, SLOT_MAC, 1, 1, TA));       // usage
        refused(ei, 0x6A80, validImport(ei, SLOT_24, 1, 1, TA));        // key length
        byte[] plain = Arrays.copyOf(TA24, 32);
        plain[31] = 1;
        refused(ei, 0x6A80, sealed(ei, SLOT_24, 24, plain, RefCrypto.kcv8(TA24)));  // padding
        refusedSpendingATry(ei, 0x6982, sealed(ei, SLOT, 16, TA, RefCrypto.kcv8(TA24)));
        assertEquals("a SAS mismatch spends a try", 9, ei.info()[7]);
        refusedSpendingATry(ei, 0x6A80, validImport(ei, SLOT, 1, 0, TA)); // version 0; tries back to 10
        assertEquals(0x9000, ei.send(validImport(ei, SLOT, 1, 2, TA)).sw);
        refused(ei, 0x6A80, validImport(ei, SLOT, 1, 1, TA));            // older
        byte[] otherKey = TA.clone();
        otherKey[0] ^= 1;
        refused(ei, 0x6A80, validImport(ei, SLOT, 1, 2, otherKey));     // same version, other key
    }

    @Test
    public void retriesRunOutAndTheCardStaysBlocked() {
        Card ei = lockedEi();
        assertEquals(0x9000, ei.send(validImport(ei, SLOT, 1, 1, TA)).sw);
        ei.ok(ei.send("0084000010"));
        for (int left = 9; left >= 0; left--) {
            byte[] tampered = validImport(ei, SLOT, 1, 1, TA);
            tampered[tampered.length - 1] ^= 0x55;
            refusedSpendingATry(ei, 0x63C0 | left, tampered);
        }
        assertEquals((byte) 0xFF, ei.info()[2]);
        refused(ei, 0x6983, "0084000010");
        refused(ei, 0x6983, "804C000000");
        // PROTOCOL.md §8 amendment 1: a BLOCKED EI keeps serving the keys it holds (v1 answered 6985).
        byte[] data = Hex.decode("0011223344");
        assertEquals(Hex.encode(RefCrypto.cmac(TA, data)),
                Hex.encode(ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, data, true))));
        refused(ei, 0x6A88, "0088000301" + "00");    // the MAC slot is empty
        ei.powerCycle();
        assertEquals((byte) 0xFF, ei.info()[2]);
        refused(ei, 0x6983, "0084000010");
    }

    @Test
    public void challengeAndAuthenticate() {
        Card ei = lockedEi();
        refused(ei, 0x6700, "0084000008");
        refused(ei, 0x6700, "00840000");
        assertEquals(16, ei.send("0084000000").data.length);
        refused(ei, 0x6A88, "0088000101" + "00");    // slot empty
        refused(ei, 0x6A88, "0088003301" + "00");    // slot undefined
        assertEquals(0x9000, ei.send(validImport(ei, SLOT, 1, 1, TA)).sw);
        assertEquals(0x9000, ei.send(validImport(ei, SLOT_MAC, 2, 1, TA)).sw);
        refused(ei, 0x6700, "0088000100");
        refused(ei, 0x6700, RefCrypto.concat(Hex.decode("0088000141"), new byte[65]));
        refused(ei, 0x6985, "0088000301" + "00");    // a MAC key cannot authenticate
        assertEquals(0x9000, ei.send(RefCrypto.concat(Hex.decode("0088000140"), new byte[64])).sw);
    }
}
