package keyload.applet;

import static org.junit.Assert.assertEquals;

import java.util.Arrays;

/**
 * An AS and EI cards of one set, with the values the test oracle needs, and the three-APDU load of
 * PROTOCOL.md §5 between them.
 */
final class CardSet {

    static final byte[] T = Hex.decode("404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F");
    static final byte[] TA_AUTH = Hex.decode("00112233445566778899AABBCCDDEEFF");
    static final byte[] TA_MAC = Hex.decode("8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B");
    static final byte[] TA_ENC = Hex.decode("FFEEDDCCBBAA99887766554433221100F0E1D2C3B4A5968778695A4B3C2D1E0F");
    static final int REF_AUTH = 0x03;
    static final int REF_MAC = 0x10;
    static final int REF_ENC = 0x7F;
    static final int SLOT_AUTH = 0x01;
    static final int SLOT_MAC = 0x05;
    static final int SLOT_ENC = 0x0F;

    final Card as;

    private CardSet(Card as) {
        this.as = as;
    }

    /** An AS holding three keys (the MAC key diversified per unit), locked, PIN verified. */
    static CardSet withKeys(int authVersion, int exportLimit) {
        return withKeys(authVersion, exportLimit, null, 0);
    }

    /**
     * {@link #withKeys(int, int)} holding {@code nextT} of {@code nextVersion} as the next transport key of a
     * rotation campaign (PROTOCOL.md §9) when it is not null.
     */
    static CardSet withKeys(int authVersion, int exportLimit, byte[] nextT, int nextVersion) {
        Card as = Card.as();
        Setup.transportKey(as, T);
        if (nextT != null) {
            Setup.nextTransportKey(as, nextVersion, nextT);
        }
        Setup.appKey(as, REF_AUTH, 0x01, authVersion, false, exportLimit, TA_AUTH);
        Setup.appKey(as, REF_MAC, 0x02, 0x0102, true, 0xFFFF, TA_MAC);
        Setup.appKey(as, REF_ENC, 0x04, 0xFFFF, false, 0xFFFF, TA_ENC);
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        return new CardSet(as);
    }

    /** A locked EI of the set with a slot for each of the three keys. */
    static Card ei(byte[] sn) {
        Card ei = Card.ei();
        Setup.transportKey(ei, T);
        Setup.serial(ei, sn);
        Setup.slot(ei, SLOT_AUTH, 16, 0x01, true);
        Setup.slot(ei, SLOT_MAC, 24, 0x02, true);
        Setup.slot(ei, SLOT_ENC, 32, 0x04, true);
        Setup.lock(ei);
        return ei;
    }

    static byte[] serial(Card ei) {
        byte[] info = ei.info();
        return Arrays.copyOfRange(info, 11, 11 + info[10]);
    }

    /** EXPORT KEY for this EI and challenge: the key block. */
    byte[] export(int ref1, int ref2, byte[] r, byte[] sn) {
        byte[] data = RefCrypto.concat(new byte[] {(byte) ref1, (byte) ref2}, r, new byte[] {(byte) sn.length}, sn);
        return as.ok(as.command(0x80, 0x4A, 0, 0, data, true));
    }

    /** GET CHALLENGE, EXPORT KEY, IMPORT KEY: the status word of the import. */
    int load(Card ei, int ref1, int ref2) {
        byte[] r = Setup.challenge(ei);
        byte[] block = export(ref1, ref2, r, serial(ei));
        return ei.command(0x80, 0x4C, 0, 0, block).sw;
    }

    void loadOk(Card ei, int ref1, int ref2) {
        assertEquals(0x9000, load(ei, ref1, ref2));
    }
}
