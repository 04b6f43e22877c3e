package keyload.applet;

import static org.junit.Assert.assertTrue;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.IdentityHashMap;
import java.util.Map;
import javacard.framework.Applet;
import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.security.Key;
import javacard.security.KeyBuilder;
import org.junit.Test;

/**
 * Memory each applet instance allocates at install, measured in jCardSim by walking the objects the
 * instance holds, against the budget of docs/REAL-CARDS.md §2.
 *
 * <p>Counted: array elements (persistent or CLEAR_ON_DESELECT, as {@code JCSystem.isTransient} says), key
 * material of Key objects (by key type), the instance fields of keyload's own objects and of OwnerPIN.
 * Not counted: a card OS's per-object headers and the state inside Cipher and RandomData objects, which
 * only the card knows: the figures are a floor for a real card, not a measurement of one.
 */
public final class ResourceBudgetTest {

    /** Per instance: a small share of a JCOP 3 class card, leaving room for other applets. */
    static final int PERSISTENT_BUDGET_BYTES = 4096;
    static final int TRANSIENT_BUDGET_BYTES = 512;

    /** What one applet instance holds. */
    static final class Footprint {
        int persistentBytes;
        int transientBytes;
        int keyObjects;
        int platformObjects;

        @Override
        public String toString() {
            return String.format("persistent %d B, transient (CLEAR_ON_DESELECT) %d B, %d Key objects, "
                    + "%d Cipher/RandomData objects", persistentBytes, transientBytes, keyObjects, platformObjects);
        }
    }

    /** Walks the objects {@code applet} holds; call with the applet's card runtime active. */
    static Footprint footprint(Applet applet) throws IllegalAccessException {
        Footprint footprint = new Footprint();
        walk(applet, footprint, new IdentityHashMap<>());
        return footprint;
    }

    private static void walk(Object object, Footprint footprint, Map<Object, Boolean> seen)
            throws IllegalAccessException {
        if (object == null || seen.put(object, Boolean.TRUE) != null) {
            return;
        }
        Class<?> type = object.getClass();
        if (type.isArray()) {
            walkArray(object, footprint, seen);
        } else if (object instanceof Key) {
            Key key = (Key) object;
            footprint.keyObjects++;
            add(footprint, isTransientKeyType(key.getType()), key.getSize() / 8);
        } else if (type.getName().startsWith("keyload.") || object instanceof OwnerPIN) {
            for (Class<?> c = type; c != null && c != Applet.class && c != Object.class; c = c.getSuperclass()) {
                for (Field field : c.getDeclaredFields()) {
                    if (Modifier.isStatic(field.getModifiers())) {
                        continue;
                    }
                    field.setAccessible(true);
                    Class<?> fieldType = field.getType();
                    footprint.persistentBytes += fieldType == short.class || !fieldType.isPrimitive() ? 2 : 1;
                    if (!fieldType.isPrimitive()) {
                        walk(field.get(object), footprint, seen);
                    }
                }
            }
        } else {
            footprint.platformObjects++;
        }
    }

    private static void walkArray(Object array, Footprint footprint, Map<Object, Boolean> seen)
            throws IllegalAccessException {
        boolean isTransient = JCSystem.isTransient(array) != JCSystem.NOT_A_TRANSIENT_OBJECT;
        if (array instanceof byte[]) {
            add(footprint, isTransient, ((byte[]) array).length);
        } else if (array instanceof boolean[]) {
            add(footprint, isTransient, ((boolean[]) array).length);
        } else if (array instanceof short[]) {
            add(footprint, isTransient, 2 * ((short[]) array).length);
        } else if (array instanceof Object[]) {
            Object[] elements = (Object[]) array;
            add(footprint, isTransient, 2 * elements.length);
            for (Object element : elements) {
                walk(element, footprint, seen);
            }
        } else {
            throw new AssertionError("an array type a Java Card applet cannot have: " + array.getClass());
        }
    }

    private static void add(Footprint footprint, boolean isTransient, int bytes) {
        if (isTransient) {
            footprint.transientBytes += bytes;
        } else {
            footprint.persistentBytes += bytes;
        }
    }

    private static boolean isTransientKeyType(byte type) {
        switch (type) {
            case KeyBuilder.TYPE_AES_TRANSIENT_DESELECT:
            case KeyBuilder.TYPE_AES_TRANSIENT_RESET:
            case KeyBuilder.TYPE_DES_TRANSIENT_DESELECT:
            case KeyBuilder.TYPE_DES_TRANSIENT_RESET:
                return true;
            default:
                return false;
        }
    }

    private static Footprint measure(String role, Card card) throws IllegalAccessException {
        Footprint footprint = footprint(card.applet());
        System.out.println("install footprint of one " + role + " instance (jCardSim): " + footprint);
        return footprint;
    }

    private static void assertWithinBudget(String role, Footprint footprint) {
        assertTrue(role + " persistent " + footprint.persistentBytes + " B over the budget",
                footprint.persistentBytes <= PERSISTENT_BUDGET_BYTES);
        assertTrue(role + " transient " + footprint.transientBytes + " B over the budget",
                footprint.transientBytes <= TRANSIENT_BUDGET_BYTES);
    }

    @Test
    public void asInstanceFitsTheMemoryBudget() throws IllegalAccessException {
        assertWithinBudget("AS", measure("AS", Card.as()));
    }

    @Test
    public void eiInstanceFitsTheMemoryBudget() throws IllegalAccessException {
        assertWithinBudget("EI", measure("EI", Card.ei()));
    }

    @Test
    public void footprintCountsWhatAnAppletHolds() throws IllegalAccessException {
        Footprint as = footprint(Card.as().applet());
        // At least the entry table (two copies of 16 records) and the transient secrets are seen.
        assertTrue(as.toString(), as.persistentBytes > 2 * 16 * Protocol.ENTRY_BYTES);
        assertTrue(as.toString(), as.transientBytes >= 4 * Protocol.MAX_KEY_BYTES);
        assertTrue(as.toString(), as.keyObjects >= 3 && as.platformObjects >= 2);
    }
}
