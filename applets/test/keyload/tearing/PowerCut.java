package keyload.tearing;

import javacard.framework.APDU;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;

/**
 * Cuts a card's power in the middle of a command, at its k-th write to persistent memory.
 *
 * <p>{@link TornAppletLoader} rewrites the applet classes so that every write they make goes through here:
 * each {@code bastore} and {@code sastore}, each {@code putfield} of an applet field, and the
 * {@code Util} calls that write arrays, which are redone byte by byte (a card may tear between any two
 * bytes of a non-atomic copy), and {@code setKey} and {@code clearKey} of persistent key objects, one write
 * per key byte (a torn one leaves the object holding a mix of old and new bytes). A write into a transient array or into the APDU buffer is not counted:
 * it does not survive a power loss anyway. When armed, the k-th persistent write is not made: {@link Lost}
 * is thrown instead, and from then on every further persistent write too, as nothing runs on a card
 * without power. The test then resets the simulator, which clears transient memory as a power loss does.
 *
 * <p>Static state: one card is armed at a time, from one test thread.
 */
public final class PowerCut {

    /** Thrown where the card loses its power. */
    public static final class Lost extends Error {
        private static final long serialVersionUID = 1L;

        Lost() {
            super("power lost", null, false, false);
        }
    }

    private static final int NEVER = 0;

    private static int cutAt = NEVER;
    private static int writes;

    private PowerCut() {
    }

    /** Counts persistent writes from now on, and cuts the power at the {@code k}-th (1-based). */
    public static void arm(int k) {
        if (k < 1) {
            throw new IllegalArgumentException("writes are counted from 1, got " + k);
        }
        cutAt = k;
        writes = 0;
    }

    /** Counts persistent writes from now on, without ever cutting. */
    public static void count() {
        cutAt = Integer.MAX_VALUE;
        writes = 0;
    }

    /** Stops counting and cutting; returns the persistent writes seen since arming. */
    public static int disarm() {
        cutAt = NEVER;
        return writes;
    }

    /** Whether the power was cut since the last {@link #arm}. */
    public static boolean tripped() {
        return cutAt != NEVER && writes >= cutAt;
    }

    private static void persistentWrite(Object array) {
        if (cutAt == NEVER || JCSystem.isTransient(array) != JCSystem.NOT_A_TRANSIENT_OBJECT
                || array == APDU.getCurrentAPDUBuffer()) {
            return;
        }
        fieldWrite();
    }

    // ------------------------------------------------------------------ what the rewritten bytecode calls

    /** Before every {@code putfield} outside constructors: applet fields are persistent. */
    public static void fieldWrite() {
        if (cutAt == NEVER) {
            return;
        }
        if (writes + 1 >= cutAt) {
            writes = cutAt;
            throw new Lost();
        }
        writes++;
    }

    /** Replaces {@code bastore} (byte and boolean arrays share it). */
    public static void bastore(Object array, int index, int value) {
        persistentWrite(array);
        if (array instanceof boolean[]) {
            ((boolean[]) array)[index] = (value & 1) != 0;
        } else {
            ((byte[]) array)[index] = (byte) value;
        }
    }

    /** Replaces {@code sastore}. */
    public static void sastore(short[] array, int index, int value) {
        persistentWrite(array);
        array[index] = (short) value;
    }

    /** Replaces {@link Util#arrayCopyNonAtomic}: byte by byte, as a torn copy leaves it. */
    public static short arrayCopyNonAtomic(byte[] src, short srcOff, byte[] dest, short destOff, short length) {
        if (cutAt == NEVER) {
            return Util.arrayCopyNonAtomic(src, srcOff, dest, destOff, length);
        }
        byte[] copy = new byte[length]; // overlapping ranges copy as if through a buffer
        System.arraycopy(src, srcOff, copy, 0, length);
        for (int i = 0; i < length; i++) {
            bastore(dest, destOff + i, copy[i]);
        }
        return (short) (destOff + length);
    }

    /** Replaces {@link Util#arrayCopy}; on a card without a rollback it tears like the non-atomic one. */
    public static short arrayCopy(byte[] src, short srcOff, byte[] dest, short destOff, short length) {
        return arrayCopyNonAtomic(src, srcOff, dest, destOff, length);
    }

    /** Replaces {@link Util#arrayFillNonAtomic}. */
    public static short arrayFillNonAtomic(byte[] array, short offset, short length, byte value) {
        for (int i = 0; i < length; i++) {
            bastore(array, offset + i, value);
        }
        return (short) (offset + length);
    }

    /** Replaces {@link AESKey#setKey}: one write per byte of a persistent key object. */
    public static void setKey(Object object, byte[] data, short offset) {
        AESKey key = (AESKey) object;
        if (cutAt == NEVER || isTransient(key)) {
            key.setKey(data, offset);
            return;
        }
        byte[] bytes = current(key);
        for (int i = 0; i < bytes.length; i++) {
            tearKey(key, bytes);
            bytes[i] = data[offset + i];
        }
        key.setKey(data, offset);
    }

    /** Replaces {@link AESKey#clearKey}: one write per byte of a persistent key object. */
    public static void clearKey(Object object) {
        AESKey key = (AESKey) object;
        if (cutAt == NEVER || isTransient(key)) {
            key.clearKey();
            return;
        }
        byte[] bytes = current(key);
        for (int i = 0; i < bytes.length; i++) {
            tearKey(key, bytes);
            bytes[i] = 0;
        }
        key.clearKey();
    }

    private static boolean isTransient(AESKey key) {
        return key.getType() != KeyBuilder.TYPE_AES;
    }

    private static byte[] current(AESKey key) {
        byte[] bytes = new byte[key.getSize() / 8];
        if (key.isInitialized()) {
            key.getKey(bytes, (short) 0);
        }
        return bytes;
    }

    /** Counts one key byte written; at the cut, leaves the key holding {@code bytes} as written so far. */
    private static void tearKey(AESKey key, byte[] bytes) {
        if (writes + 1 >= cutAt) {
            key.setKey(bytes, (short) 0);
        }
        fieldWrite();
    }

    /** Replaces {@link Util#setShort}: two writes. */
    public static short setShort(byte[] array, short offset, short value) {
        bastore(array, offset, value >> 8);
        bastore(array, offset + 1, value);
        return (short) (offset + 2);
    }
}
