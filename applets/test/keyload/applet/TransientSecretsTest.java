package keyload.applet;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;
import javacard.framework.JCSystem;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import org.junit.Test;

/**
 * Every field that can hold a derived or decrypted secret (T1, K_enc, K_mac, TA_unit, the plain key,
 * CMAC subkeys and state) is transient and all-zero after each command, whatever its outcome; every
 * transient key object is cleared; the persistent key objects hold T and the stored keys and nothing else.
 */
public class TransientSecretsTest {

    /** Transient arrays that legitimately keep a value between commands: the EI's issued challenge. */
    private static final String CHALLENGE = "challenge";

    private static List<Object[]> fields(Object owner) throws IllegalAccessException {
        List<Object[]> found = new ArrayList<>();
        for (Class<?> c = owner.getClass(); c != Object.class; c = c.getSuperclass()) {
            for (Field f : c.getDeclaredFields()) {
                if (java.lang.reflect.Modifier.isStatic(f.getModifiers())) {
                    continue;
                }
                f.setAccessible(true);
                found.add(new Object[] {f.getName(), f.get(owner)});
            }
        }
        return found;
    }

    /** The applet's fields and those of the objects it is composed of (Common, Transients, AesEngine). */
    private static List<Object[]> appletFields(Card card) throws IllegalAccessException {
        List<Object[]> all = fields(card.applet());
        for (Object[] field : new ArrayList<>(all)) {
            if (field[1] instanceof Transients || field[1] instanceof AesEngine) {
                all.addAll(fields(field[1]));
            }
        }
        // AesEngine names the working memory of Transients too: each holder once.
        List<Object[]> distinct = new ArrayList<>();
        java.util.Set<Object> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (Object[] field : all) {
            if (field[1] == null || !(field[1] instanceof byte[] || field[1] instanceof AESKey) || seen.add(field[1])) {
                distinct.add(field);
            }
        }
        return distinct;
    }

    /** Persistent key objects holding a key: exactly T and one per loaded entry, no orphan. */
    private static void checkNoOrphanKey(Card card, String after) throws IllegalAccessException {
        int initialized = 0;
        for (Object[] field : fields(((Persistent) field(card, "persistent")).keys)) {
            if (field[1] instanceof AESKey[]) {
                for (AESKey key : (AESKey[]) field[1]) {
                    assertEquals(KeyBuilder.TYPE_AES, key.getType());
                    initialized += key.isInitialized() ? 1 : 0;
                }
            }
        }
        byte[] list = card.listKeys();
        int loaded = 0;
        for (int i = 0; i < list.length; i += 14) {
            loaded += list[i + 1];
        }
        int transportKey = card.info()[3] != 0 ? 1 : 0;
        assertEquals("key objects holding a key after " + after, loaded + transportKey, initialized);
    }

    private static Object field(Card card, String name) throws IllegalAccessException {
        for (Object[] field : fields(card.applet())) {
            if (field[0].equals(name)) {
                return field[1];
            }
        }
        throw new AssertionError("no field " + name);
    }

    /**
     * Checks the applet's transient memory and transient key objects; returns how many secret holders were
     * checked. Persistent key objects (the key pool) hold T and the keys, and nothing else.
     */
    private static int checkWiped(Card card, String after) throws IllegalAccessException {
        int checked = 0;
        checkNoOrphanKey(card, after);
        List<Object[]> all = appletFields(card);
        for (Object[] field : all) {
            String name = (String) field[0];
            Object value = field[1];
            if (value instanceof byte[] && JCSystem.isTransient(value) != JCSystem.NOT_A_TRANSIENT_OBJECT
                    && !CHALLENGE.equals(name)) {
                for (byte b : (byte[]) value) {
                    assertEquals(name + " not wiped after " + after, 0, b);
                }
                checked++;
            }
            if (value instanceof AESKey) {
                AESKey key = (AESKey) value;
                assertEquals(name + " is not a transient key", KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, key.getType());
                assertFalse(name + " still holds a key after " + after, key.isInitialized());
                checked++;
            }
        }
        return checked;
    }

    private static void assertTransient(Card card, String... names) throws IllegalAccessException {
        List<Object[]> all = appletFields(card);
        for (String name : names) {
            boolean seen = false;
            for (Object[] field : all) {
                if (field[0].equals(name)) {
                    assertNotEquals(name, JCSystem.NOT_A_TRANSIENT_OBJECT, JCSystem.isTransient(field[1]));
                    seen = true;
                }
            }
            assertTrue("no field " + name, seen);
        }
    }

    @Test
    public void secretsAreTransientAndZeroAfterEveryCommand() throws Exception {
        CardSet cardSet = CardSet.withKeys(0x0001, 0xFFFF);
        Card as = cardSet.as;
        Card ei = CardSet.ei(Hex.decode("0123456789ABCDEFFEDCBA9876543210"));
        assertTransient(as, "secrets", "context");
        assertTransient(ei, "secrets", "context", CHALLENGE, "flags");
        // Secrets, context and the engine's working memory, plus the three transient key objects.
        int expectedHolders = 2 + 3 + 1;

        for (int[] load : new int[][] {{CardSet.REF_AUTH, CardSet.SLOT_AUTH}, {CardSet.REF_MAC, CardSet.SLOT_MAC},
            {CardSet.REF_ENC, CardSet.SLOT_ENC}}) {
            byte[] r = Setup.challenge(ei);
            assertEquals(expectedHolders, checkWiped(ei, "GET CHALLENGE"));
            byte[] block = cardSet.export(load[0], load[1], r, CardSet.serial(ei));
            assertEquals(expectedHolders, checkWiped(as, "EXPORT KEY"));
            ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
            assertEquals(expectedHolders, checkWiped(ei, "IMPORT KEY"));
        }
        ei.ok(ei.command(0x00, 0x88, 0x00, CardSet.SLOT_AUTH, new byte[8], true));
        checkWiped(ei, "INTERNAL AUTHENTICATE");

        byte[] r = Setup.challenge(ei);
        byte[] block = cardSet.export(CardSet.REF_AUTH, CardSet.SLOT_AUTH, r, CardSet.serial(ei));
        block[block.length - 1] ^= 1;
        assertEquals(0x63C9, ei.command(0x80, 0x4C, 0, 0, block).sw);
        checkWiped(ei, "a refused IMPORT KEY");
        byte[] missingKey = new byte[27];
        missingKey[0] = 0x04;
        missingKey[1] = 0x01;
        missingKey[18] = 8;
        assertEquals(0x6A88, as.command(0x80, 0x4A, 0, 0, missingKey, true).sw);
        checkWiped(as, "a refused EXPORT KEY");
    }
}
