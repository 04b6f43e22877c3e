package keyload.applet;

import static keyload.applet.Protocol.AES_128_BYTES;
import static keyload.applet.Protocol.AES_192_BYTES;
import static keyload.applet.Protocol.AES_256_BYTES;

import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacard.security.KeyBuilder;

/**
 * Every long-lived key of an applet (T, the AS's application keys, the EI's slot keys) in persistent
 * {@code AESKey} objects, which a certified platform protects against probing, power analysis and fault
 * injection as it does not protect byte arrays (issue 15).
 *
 * <p>Key objects have a fixed length, so there is one pool per AES length, each with room for every key
 * the applet can hold at once (16 entries and T) plus one spare: a key is written into an object no
 * record names, and the record that names it is committed afterwards by {@link RecordStore}'s one-byte
 * switch. A cut at any write thus leaves the old key or the new one, whole; an object left written but
 * named by no record (an orphan of a cut) is cleared by {@link Persistent#clearOrphans} before the next
 * key is stored. A record names its key by its length and a handle, the index in that length's pool.
 *
 * <p>AES-192 is optional (many cards lack it): when the platform refuses a 192-bit key object at install,
 * the applet still serves 128- and 256-bit keys and answers 6A81 to a 24-byte one.
 */
public final class KeyPool {

    private final short capacity;
    private final AESKey[] keys128;
    private final AESKey[] keys192;
    private final AESKey[] keys256;

    /**
     * {@code capacity} objects per length: every key the role may hold at once (16 entries, T, and on an
     * AS the next T of a rotation campaign) and the spare a change is written into.
     */
    KeyPool(short capacity) {
        this.capacity = capacity;
        keys128 = build(KeyBuilder.LENGTH_AES_128);
        AESKey[] optional;
        try {
            optional = build(KeyBuilder.LENGTH_AES_192);
        } catch (CryptoException e) {
            optional = null;
        }
        keys192 = optional;
        keys256 = build(KeyBuilder.LENGTH_AES_256);
    }

    private AESKey[] build(short bits) {
        AESKey[] pool = new AESKey[capacity];
        for (short i = 0; i < capacity; i++) {
            pool[i] = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, bits, false);
        }
        return pool;
    }

    short capacity() {
        return capacity;
    }

    /** Whether keys of {@code length} bytes can be held: 16 and 32 always, 24 when the card has AES-192. */
    boolean supports(short length) {
        return length == AES_128_BYTES || length == AES_256_BYTES || length == AES_192_BYTES && keys192 != null;
    }

    /** The object {@code handle} of the pool of {@code length}-byte keys (a supported length). */
    AESKey get(short length, byte handle) {
        return poolOf(length)[handle];
    }

    private AESKey[] poolOf(short length) {
        if (length == AES_128_BYTES) {
            return keys128;
        }
        return length == AES_192_BYTES ? keys192 : keys256;
    }
}
