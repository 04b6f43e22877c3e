package keyload.applet;

import static keyload.applet.Protocol.ENTRY_BYTES;
import static keyload.applet.Protocol.ENTRY_KEY_LENGTH;
import static keyload.applet.Protocol.ENTRY_LOADED;
import static keyload.applet.Protocol.ENTRY_REF;
import static keyload.applet.Protocol.ENTRY_STATE;
import static keyload.applet.Protocol.KCV_BYTES;
import static keyload.applet.Protocol.MAX_ENTRIES;
import static keyload.applet.Protocol.PIN_MAX_BYTES;
import static keyload.applet.Protocol.PIN_TRY_LIMIT;
import static keyload.applet.Protocol.REF_NONE;
import static keyload.applet.Protocol.RETRY_LIMIT_DEFAULT;
import static keyload.applet.Protocol.ROLE_AS;
import static keyload.applet.Protocol.SN_MAX_BYTES;
import static keyload.applet.Protocol.STATE_SETUP;
import static keyload.applet.Protocol.VERSION_BYTES;

import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.OwnerPIN;
import javacard.framework.Util;
import javacard.security.AESKey;

/**
 * Everything an applet keeps across power loss, in one place (SmartPGP's {@code Persistent}): the life
 * cycle, the settings record, the table of keys or slots, the key objects, and the counters, each counter
 * in a record of its own so that counting never rewrites key bytes (issue 15).
 *
 * <p>Which fields a role uses: both the life cycle, {@link #settings}, {@link #entries} and {@link #keys};
 * the AS {@link #pin}, {@link #pinSet} and {@link #exportCounts}; the EI {@link #retryLimit} and
 * {@link #triesLeft}. The other role's objects are not allocated.
 */
public final class Persistent {

    // ---------------------------------------------------------------- settings record
    /**
     * T length (0: not set), KCV(T), T's handle in the key pool, SN length, SN; then (PROTOCOL.md §9) T's
     * version and, on an AS during a rotation campaign, the next T's length (0: none), KCV and version, in
     * the order INFO sends them, and the next T's handle. One record: a rotation or a retirement changes
     * them all with one byte.
     */
    static final short SETTINGS_T_LENGTH = 0;
    static final short SETTINGS_T_KCV = 1;
    static final short SETTINGS_T_KEY = (short) (SETTINGS_T_KCV + KCV_BYTES);
    static final short SETTINGS_SN_LENGTH = (short) (SETTINGS_T_KEY + 1);
    static final short SETTINGS_SN = (short) (SETTINGS_SN_LENGTH + 1);
    static final short SETTINGS_T_VERSION = (short) (SETTINGS_SN + SN_MAX_BYTES);
    static final short SETTINGS_NEXT_LENGTH = (short) (SETTINGS_T_VERSION + VERSION_BYTES);
    static final short SETTINGS_NEXT_KCV = (short) (SETTINGS_NEXT_LENGTH + 1);
    static final short SETTINGS_NEXT_VERSION = (short) (SETTINGS_NEXT_KCV + KCV_BYTES);
    static final short SETTINGS_NEXT_KEY = (short) (SETTINGS_NEXT_VERSION + VERSION_BYTES);
    static final short SETTINGS_BYTES = (short) (SETTINGS_NEXT_KEY + 1);

    // ---------------------------------------------------------------- entry records
    /**
     * An entry record is the 14-byte LIST KEYS entry of PROTOCOL.md §4.1 (its count field stays zero: the
     * AS counts exports in {@link #exportCounts}) followed by the handle of its key in the key pool, valid
     * when the entry is loaded.
     */
    static final short RECORD_KEY = ENTRY_BYTES;
    static final short RECORD_BYTES = (short) (RECORD_KEY + 1);

    /** SETUP or OPERATIONAL (the EI reports BLOCKED from its counter, {@link EiApplet#state}). */
    byte lifeCycle;
    final RecordStore settings;
    final RecordStore entries;
    final KeyPool keys;

    /** AS: exports done, per entry index; one short written alone, atomically, per export. */
    final short[] exportCounts;
    /** AS: the operator PIN and its 3 tries. */
    final OwnerPIN pin;
    /** AS: whether SET PIN has run. */
    boolean pinSet;

    /** EI: the import retry limit and the tries left (BLOCKED at zero or below). */
    byte retryLimit;
    byte triesLeft;

    Persistent(byte role) {
        lifeCycle = STATE_SETUP;
        settings = new RecordStore((short) 1, SETTINGS_BYTES);
        entries = new RecordStore(MAX_ENTRIES, RECORD_BYTES);
        // The AS may hold 16 keys, T and the next T at once; each role has one spare a change goes into.
        keys = new KeyPool((short) (role == ROLE_AS ? MAX_ENTRIES + 3 : MAX_ENTRIES + 2));
        if (role == ROLE_AS) {
            exportCounts = new short[MAX_ENTRIES];
            pin = new OwnerPIN(PIN_TRY_LIMIT, (byte) PIN_MAX_BYTES);
        } else {
            exportCounts = null;
            pin = null;
            retryLimit = RETRY_LIMIT_DEFAULT;
            triesLeft = RETRY_LIMIT_DEFAULT;
        }
    }

    // ---------------------------------------------------------------- settings

    short transportKeyLength() {
        return settings.bytes()[(short) (settings.current((short) 0) + SETTINGS_T_LENGTH)];
    }

    /** T as a key object; only when {@link #transportKeyLength} is not 0. */
    AESKey transportKey() {
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        return keys.get(s[(short) (record + SETTINGS_T_LENGTH)], s[(short) (record + SETTINGS_T_KEY)]);
    }

    /** T's version (PROTOCOL.md §9): 1 after SET TRANSPORT KEY, higher after each rotation. */
    short transportKeyVersion() {
        return Util.getShort(settings.bytes(), (short) (settings.current((short) 0) + SETTINGS_T_VERSION));
    }

    /** AS: the next T's length, 0 when none is held (always 0 on an EI). */
    short nextKeyLength() {
        return settings.bytes()[(short) (settings.current((short) 0) + SETTINGS_NEXT_LENGTH)];
    }

    /** AS: the next T's version; only when {@link #nextKeyLength} is not 0. */
    short nextKeyVersion() {
        return Util.getShort(settings.bytes(), (short) (settings.current((short) 0) + SETTINGS_NEXT_VERSION));
    }

    /** AS: the next T as a key object; only when {@link #nextKeyLength} is not 0. */
    AESKey nextKey() {
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        return keys.get(s[(short) (record + SETTINGS_NEXT_LENGTH)], s[(short) (record + SETTINGS_NEXT_KEY)]);
    }

    short serialLength() {
        return settings.bytes()[(short) (settings.current((short) 0) + SETTINGS_SN_LENGTH)];
    }

    // ---------------------------------------------------------------- entries

    /** The key object of the loaded entry whose current record is at {@code record} in {@link #entries}. */
    AESKey entryKey(short record) {
        byte[] e = entries.bytes();
        return keys.get(e[(short) (record + ENTRY_KEY_LENGTH)], e[(short) (record + RECORD_KEY)]);
    }

    // ---------------------------------------------------------------- key objects

    /**
     * Writes a key into an object of its length's pool that no record names, and returns its handle. The
     * caller commits a record naming it, then {@link #release}s the key it replaced.
     */
    byte storeKey(byte[] key, short offset, short length) {
        clearOrphans();
        byte handle = 0;
        while (isNamed(length, handle)) {
            handle++;
        }
        // Looked at again by other code: one skipped branch in the search does not overwrite a named key.
        if (names(length, handle) != 0) {
            ISOException.throwIt(ISO7816.SW_UNKNOWN);
        }
        keys.get(length, handle).setKey(key, offset);
        return handle;
    }

    /** Clears the key a committed change no longer names. */
    void release(short length, byte handle) {
        keys.get(length, handle).clearKey();
    }

    /**
     * Clears every key object no record names that still holds a key: what a cut left between writing a
     * key and committing its record, or between the commit and {@link #release}.
     */
    void clearOrphans() {
        clearOrphans(Protocol.AES_128_BYTES);
        if (keys.supports(Protocol.AES_192_BYTES)) {
            clearOrphans(Protocol.AES_192_BYTES);
        }
        clearOrphans(Protocol.AES_256_BYTES);
    }

    private void clearOrphans(short length) {
        for (byte handle = 0; handle < keys.capacity(); handle++) {
            AESKey key = keys.get(length, handle);
            if (key.isInitialized() && !isNamed(length, handle) && names(length, handle) == 0) {
                key.clearKey();
            }
        }
    }

    /**
     * How many current records name key {@code handle} of {@code length}: {@link #isNamed} computed again by
     * other code, so that a decision to overwrite or clear a key object needs both to agree.
     */
    private short names(short length, byte handle) {
        short names = 0;
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        if ((short) ((s[(short) (record + SETTINGS_T_LENGTH)] ^ length) | (s[(short) (record + SETTINGS_T_KEY)] ^ handle))
                == 0) {
            names++;
        }
        if ((short) ((s[(short) (record + SETTINGS_NEXT_LENGTH)] ^ length)
                | (s[(short) (record + SETTINGS_NEXT_KEY)] ^ handle)) == 0) {
            names++;
        }
        byte[] e = entries.bytes();
        for (short i = (short) (MAX_ENTRIES - 1); i >= 0; i--) {
            short entry = entries.current(i);
            short differs = (short) ((e[(short) (entry + ENTRY_KEY_LENGTH)] ^ length)
                    | (e[(short) (entry + RECORD_KEY)] ^ handle) | (e[(short) (entry + ENTRY_STATE)] ^ ENTRY_LOADED));
            if (differs == 0 && e[(short) (entry + ENTRY_REF)] != REF_NONE) {
                names++;
            }
        }
        return names;
    }

    /** Whether the current settings record (T, next T) or a current loaded entry names key {@code handle} of {@code length}. */
    private boolean isNamed(short length, byte handle) {
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        if (s[(short) (record + SETTINGS_T_LENGTH)] == length && s[(short) (record + SETTINGS_T_KEY)] == handle) {
            return true;
        }
        if (s[(short) (record + SETTINGS_NEXT_LENGTH)] == length && s[(short) (record + SETTINGS_NEXT_KEY)] == handle) {
            return true;
        }
        byte[] e = entries.bytes();
        for (short i = 0; i < MAX_ENTRIES; i++) {
            short entry = entries.current(i);
            if (e[(short) (entry + ENTRY_REF)] != REF_NONE && e[(short) (entry + ENTRY_STATE)] == ENTRY_LOADED
                    && e[(short) (entry + ENTRY_KEY_LENGTH)] == length && e[(short) (entry + RECORD_KEY)] == handle) {
                return true;
            }
        }
        return false;
    }
}
