package keyload.applet;

import static keyload.applet.Refusals.refused;
import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;
import keyload.platform.WithoutAes192;
import org.junit.Test;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.ClassNode;
import org.objectweb.asm.tree.JumpInsnNode;
import org.objectweb.asm.tree.MethodNode;

/** The smaller findings of issue 15, each with the test that proves it fixed. */
public class HardeningTest {

    private static final byte[] T = Hex.decode("A5A4A3A2A1A0A9A8A7A6AFAEADACABAA");
    private static final byte[] KEY = Hex.decode("5A5B5C5D5E5F50515253545556575859");
    private static final byte[] PIN = Hex.decode("3939383837373636");
    private static final byte[] SN = Hex.decode("4B4C0000000000C1");

    private static boolean contains(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (haystack[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return true;
        }
        return false;
    }

    private static void assertBufferClean(Card card, String after) {
        byte[] buffer = card.apduBuffer();
        assertFalse("T left in the APDU buffer after " + after, contains(buffer, T));
        assertFalse("a key left in the APDU buffer after " + after, contains(buffer, KEY));
        assertFalse("a PIN left in the APDU buffer after " + after, contains(buffer, PIN));
    }

    private static byte[] putAppKey(int ref, int usage, byte[] key) {
        byte[] fields = {(byte) ref, (byte) usage, 0, 1, 0, (byte) 0xFF, (byte) 0xFF};
        byte[] data = RefCrypto.concat(fields, key);
        return RefCrypto.concat(Hex.decode("80540000"), new byte[] {(byte) data.length}, data);
    }

    private static byte[] command(String header, byte[] data) {
        return RefCrypto.concat(Hex.decode(header), new byte[] {(byte) data.length}, data);
    }

    /** Sends, checks the status word, then the APDU buffer as the command left it. */
    private static void sendClean(Card card, int sw, byte[] apdu, String what) {
        assertEquals(what, String.format("%04X", sw), String.format("%04X", card.send(apdu).sw));
        assertBufferClean(card, what + " " + String.format("%04X", sw));
    }

    /** A refused (or accepted) command carrying T, a key or a PIN leaves none of it in the APDU buffer. */
    @Test
    public void noSecretStaysInTheApduBuffer() {
        Card as = Card.as();
        sendClean(as, 0x6A80, putAppKey(0x03, 0x03, KEY), "PUT APP KEY");          // usage
        for (int ref = 0x10; ref < 0x20; ref++) {
            Setup.appKey(as, ref, 0x01, 1, false, 0xFFFF, new byte[16]);
        }
        sendClean(as, 0x6A84, putAppKey(0x03, 0x01, KEY), "PUT APP KEY");          // a 17th key
        sendClean(as, 0x9000, putAppKey(0x10, 0x01, KEY), "PUT APP KEY");
        sendClean(as, 0x6700, command("80500000", RefCrypto.concat(T, new byte[1])), "SET TRANSPORT KEY");
        sendClean(as, 0x9000, command("80500000", T), "SET TRANSPORT KEY");
        sendClean(as, 0x6700, command("805A0000", RefCrypto.concat(PIN, PIN, PIN)), "SET PIN");
        sendClean(as, 0x9000, command("805A0000", PIN), "SET PIN");
        Setup.lock(as);
        sendClean(as, 0x6985, command("80500000", T), "SET TRANSPORT KEY");
        sendClean(as, 0x6985, command("805A0000", PIN), "SET PIN");
        sendClean(as, 0x6985, putAppKey(0x10, 0x01, KEY), "PUT APP KEY");
        sendClean(as, 0x63C2, command("00200081", RefCrypto.concat(PIN, new byte[1])), "VERIFY");
        sendClean(as, 0x9000, command("00200081", PIN), "VERIFY");

        Card ei = Card.ei();
        sendClean(ei, 0x6700, command("80500000", RefCrypto.concat(T, new byte[1])), "SET TRANSPORT KEY");
        sendClean(ei, 0x9000, command("80500000", T), "SET TRANSPORT KEY");
    }

    private static Persistent persistent(Card card) throws Exception {
        Field field = card.applet().getClass().getDeclaredField("persistent");
        field.setAccessible(true);
        return (Persistent) field.get(card.applet());
    }

    /**
     * BLOCKED is "no try left", tested as {@code triesLeft <= 0}: a counter a fault drove below zero still
     * reads BLOCKED (INFO shows 0 tries), still refuses GET CHALLENGE and IMPORT KEY, and still serves its keys.
     */
    @Test
    public void aCounterBelowZeroIsBlocked() throws Exception {
        Card ei = Setup.operationalEi(T, SN, 0x01, 16, 0x01);
        byte[] r = Setup.challenge(ei);
        byte[] block = new RefCrypto.Load(T, KEY, SN, r, 0x03, 0x01, 0x01, 1, false).block();
        ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
        for (byte left : new byte[] {0, -1, -128}) {
            persistent(ei).triesLeft = left;
            byte[] info = ei.info();
            assertEquals("state with " + left + " tries", (byte) 0xFF, info[2]);
            assertEquals("tries shown for " + left, 0, info[7]);
            refused(ei, 0x6983, "0084000010");
            refused(ei, 0x6983, "804C000000");
            byte[] data = Hex.decode("0102");
            assertArrayEquals(RefCrypto.cmac(KEY, data), ei.ok(ei.command(0x00, 0x88, 0x00, 0x01, data, true)));
            assertEquals(left, persistent(ei).triesLeft);
        }
    }

    /**
     * A card without AES-192 installs both applets, refuses 24-byte keys with 6A81 (SET TRANSPORT KEY, PUT
     * APP KEY, DEFINE SLOT) and changes nothing, and serves 128- and 256-bit keys.
     */
    @Test
    public void aCardWithoutAes192ServesTheOtherLengths() {
        WithoutAes192 loader = new WithoutAes192();
        Card as = new Card(Card.AS_AID, loader.applet(AsApplet.class.getName()));
        Card ei = new Card(Card.EI_AID, loader.applet(EiApplet.class.getName()));
        byte[] t24 = new byte[24];
        refused(as, 0x6A81, command("80500000", t24));
        refused(ei, 0x6A81, command("80500000", t24));
        refused(as, 0x6A81, putAppKey(0x03, 0x01, new byte[24]));
        refused(ei, 0x6A81, "8056000004" + "01180101");
        refused(as, 0x6700, command("80500000", new byte[23]));            // v1 answers come first

        byte[] t32 = RefCrypto.concat(T, T);
        byte[] key32 = RefCrypto.concat(KEY, T);
        Setup.transportKey(as, t32);
        Setup.appKey(as, 0x03, 0x01, 1, false, 0xFFFF, KEY);
        Setup.appKey(as, 0x04, 0x01, 1, true, 0xFFFF, key32);
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        Setup.transportKey(ei, t32);
        Setup.serial(ei, SN);
        Setup.slot(ei, 0x01, 16, 0x01, true);
        Setup.slot(ei, 0x02, 32, 0x01, true);
        Setup.lock(ei);
        byte[][] loads = {{0x03, 0x01}, {0x04, 0x02}};
        for (byte[] load : loads) {
            byte[] r = Setup.challenge(ei);
            byte[] data = RefCrypto.concat(load, r, new byte[] {(byte) SN.length}, SN);
            byte[] block = as.ok(as.command(0x80, 0x4A, 0, 0, data, true));
            ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
        }
        byte[] data = Hex.decode("0102");
        assertArrayEquals(RefCrypto.cmac(KEY, data), ei.ok(ei.command(0x00, 0x88, 0x00, 0x01, data, true)));
        assertArrayEquals(RefCrypto.cmac(RefCrypto.kdf(key32, 0x20, 32, SN), data),
                ei.ok(ei.command(0x00, 0x88, 0x00, 0x02, data, true)));
    }

    /**
     * The bytecode that touches secret bytes without the platform's AES has no branch but its loop's: the
     * CMAC subkey doubling (reduction masked in from the top bit) and the constant-time difference.
     */
    @Test
    public void secretDataIsNeverBranchedOn() throws Exception {
        ClassNode engine = new ClassNode();
        try (java.io.InputStream in = AesEngine.class.getResourceAsStream("AesEngine.class")) {
            new ClassReader(in).accept(engine, 0);
        }
        List<String> checked = new ArrayList<>();
        for (MethodNode method : engine.methods) {
            if (method.name.equals("doubleInGf128") || method.name.equals("difference")) {
                int branches = 0;
                for (AbstractInsnNode insn : method.instructions) {
                    if (insn instanceof JumpInsnNode && insn.getOpcode() != Opcodes.GOTO) {
                        branches++;
                    }
                }
                assertEquals(method.name + ": the loop's branch only", 1, branches);
                checked.add(method.name);
            }
        }
        assertEquals(2, checked.size());
    }
}
