package keyload.applet;

/** Pre-personalization of test cards through their real SETUP commands. */
final class Setup {

    static final byte[] PIN = Hex.decode("31323334");

    private Setup() {
    }

    static void transportKey(Card card, byte[] t) {
        card.ok(card.command(0x80, 0x50, 0, 0, t));
    }

    /** PUT NEXT TRANSPORT KEY (PROTOCOL.md §9), SETUP. */
    static void nextTransportKey(Card as, int version, byte[] t) {
        as.ok(as.command(0x80, 0x60, 0, 0, RefCrypto.concat(new byte[] {(byte) (version >> 8), (byte) version}, t)));
    }

    static void appKey(Card as, int ref, int usage, int version, boolean diversify, int limit, byte[] key) {
        byte[] fields = {(byte) ref, (byte) usage, (byte) (version >> 8), (byte) version,
            (byte) (diversify ? 1 : 0), (byte) (limit >> 8), (byte) limit};
        as.ok(as.command(0x80, 0x54, 0, 0, RefCrypto.concat(fields, key)));
    }

    static void pin(Card as, byte[] pin) {
        as.ok(as.command(0x80, 0x5A, 0, 0, pin));
    }

    static void serial(Card ei, byte[] sn) {
        ei.ok(ei.command(0x80, 0x52, 0, 0, sn));
    }

    static void slot(Card ei, int ref, int keyLength, int usage, boolean acceptsImport) {
        ei.ok(ei.command(0x80, 0x56, 0, 0, new byte[] {(byte) ref, (byte) keyLength, (byte) usage,
            (byte) (acceptsImport ? 1 : 0)}));
    }

    static void lock(Card card) {
        card.ok(card.send("805E0000"));
    }

    static void verify(Card as, byte[] pin) {
        as.ok(as.command(0x00, 0x20, 0x00, 0x81, pin));
    }

    /** An AS in OPERATIONAL with one key, PIN verified. */
    static Card operationalAs(byte[] t, int ref, int usage, int version, boolean diversify, int limit, byte[] key) {
        Card as = Card.as();
        transportKey(as, t);
        appKey(as, ref, usage, version, diversify, limit, key);
        pin(as, PIN);
        lock(as);
        verify(as, PIN);
        return as;
    }

    /** An EI in OPERATIONAL with one slot that accepts import. */
    static Card operationalEi(byte[] t, byte[] sn, int ref, int keyLength, int usage) {
        Card ei = Card.ei();
        transportKey(ei, t);
        serial(ei, sn);
        slot(ei, ref, keyLength, usage, true);
        lock(ei);
        return ei;
    }

    /** GET CHALLENGE on an EI: its R. */
    static byte[] challenge(Card ei) {
        return ei.ok(ei.send("0084000010"));
    }
}
