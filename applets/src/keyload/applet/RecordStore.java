package keyload.applet;

import javacard.framework.Util;

/**
 * Fixed-size records in persistent memory that change all at once or not at all.
 *
 * <p>Every record has two copies. A change is written into the copy nobody reads (the shadow) and made
 * current by one single-byte write, which a Java Card performs atomically. A command cut short at any
 * point therefore leaves the old record or the new one, never a mix; this holds even on a runtime that
 * does not roll transactions back (jCardSim). Records hold no key bytes (keys live in {@link KeyPool}), so
 * the replaced copy is left as it is: wiping it would only cost EEPROM writes.
 */
public final class RecordStore {

    private final byte[] copies;
    /** Per record: which of its two copies is current (0 or 1). */
    private final byte[] currentCopy;
    private final short recordCount;
    private final short recordBytes;

    RecordStore(short recordCount, short recordBytes) {
        this.recordCount = recordCount;
        this.recordBytes = recordBytes;
        copies = new byte[(short) (2 * recordCount * recordBytes)];
        currentCopy = new byte[recordCount];
    }

    /** The array every offset returned here points into. */
    byte[] bytes() {
        return copies;
    }

    /** Offset of the current copy of record {@code index}. */
    short current(short index) {
        return offsetOf(currentCopy[index], index);
    }

    /**
     * Starts a change: copies the current record into its shadow and returns the shadow's offset, where
     * the caller writes the new content before {@link #commit}.
     */
    short beginChange(short index) {
        short shadow = offsetOf((byte) (currentCopy[index] ^ 1), index);
        Util.arrayCopyNonAtomic(copies, current(index), copies, shadow, recordBytes);
        return shadow;
    }

    /** Makes the shadow current with one atomic byte write. */
    void commit(short index) {
        currentCopy[index] = (byte) (currentCopy[index] ^ 1);
    }

    private short offsetOf(byte copy, short index) {
        return (short) ((short) (copy * recordCount + index) * recordBytes);
    }
}
