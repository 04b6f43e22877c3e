package keyload.applet;

import static keyload.applet.Persistent.RECORD_BYTES;
import static keyload.applet.Persistent.RECORD_KEY;
import static keyload.applet.Persistent.SETTINGS_SN;
import static keyload.applet.Persistent.SETTINGS_SN_LENGTH;
import static keyload.applet.Persistent.SETTINGS_T_KCV;
import static keyload.applet.Persistent.SETTINGS_T_KEY;
import static keyload.applet.Persistent.SETTINGS_T_LENGTH;
import static keyload.applet.Persistent.SETTINGS_T_VERSION;
import static keyload.applet.Persistent.SETTINGS_NEXT_KEY;
import static keyload.applet.Persistent.SETTINGS_NEXT_LENGTH;
import static keyload.applet.Protocol.*;
import static keyload.applet.Transients.CONTEXT_R;
import static keyload.applet.Transients.SECRET_CHECK;
import static keyload.applet.Transients.SECRET_K_ENC;
import static keyload.applet.Transients.SECRET_K_MAC;
import static keyload.applet.Transients.SECRET_T1;
import static keyload.applet.Transients.SESSION_CONTEXT_BYTES;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;
import javacard.security.AESKey;

/**
 * What the AS and EI applets share, by composition (SmartPGP's {@code Common}): the header checks of
 * PROTOCOL.md §4.1, the life-cycle checks, INFO, LIST KEYS, SET TRANSPORT KEY, LOCK, receiving command
 * data, the table of keys or slots, and the derivation of T1, K_enc and K_mac. Each applet owns one, with
 * the applet's {@link Persistent} and {@link Transients} state and its {@link AesEngine}.
 *
 * <p>Every check that guards a key is made twice, at two places in the bytecode, so that one skipped
 * branch (a glitch, a laser shot) does not open it: {@code FaultCampaignTest} forces each branch the other
 * way in turn and sends the attack it guards.
 */
public final class Common {

    final Persistent persistent;
    final Transients transients;
    final AesEngine aes;
    private final byte role;

    Common(byte role) {
        this.role = role;
        persistent = new Persistent(role);
        transients = new Transients(role);
        aes = new AesEngine(transients);
    }

    // ---------------------------------------------------------------- header checks (PROTOCOL.md §4.1)

    /** First check of every command: CLA 00 or 80, else 6E00 (before the INS is looked at). */
    static void checkClass(byte[] buffer) {
        byte cla = buffer[ISO7816.OFFSET_CLA];
        if (cla != CLA_ISO && cla != CLA_KEYLOAD) {
            ISOException.throwIt(SW_CLA_NOT_SUPPORTED);
        }
    }

    /** For a known INS: its CLA, else 6E00; then P1 and P2, else 6A86. The life cycle comes after. */
    static void checkHeader(byte[] buffer, byte cla, byte p1, byte p2) {
        checkCla(buffer, cla);
        if (buffer[ISO7816.OFFSET_P1] != p1 || buffer[ISO7816.OFFSET_P2] != p2) {
            ISOException.throwIt(SW_INCORRECT_P1P2);
        }
    }

    static void checkCla(byte[] buffer, byte cla) {
        if (buffer[ISO7816.OFFSET_CLA] != cla) {
            ISOException.throwIt(SW_CLA_NOT_SUPPORTED);
        }
    }

    /** Whether the command carries T, a key or a PIN in clear, which must not stay in the APDU buffer. */
    static boolean carriesSecret(byte ins) {
        return ins == INS_SET_TRANSPORT_KEY || ins == INS_PUT_APP_KEY || ins == INS_SET_PIN || ins == INS_VERIFY
                || ins == INS_PUT_NEXT_TRANSPORT_KEY;
    }

    /**
     * Zeroes the whole APDU buffer. Run in the {@code finally} of a command that carries a secret
     * ({@link #carriesSecret}), refused or not: a card clears the buffer only on selection.
     */
    static void wipeBuffer(byte[] buffer) {
        Util.arrayFillNonAtomic(buffer, (short) 0, (short) buffer.length, (byte) 0);
    }

    // ---------------------------------------------------------------- life cycle

    /** 6985 unless the stored life cycle is {@code expected}; checked twice (one skipped branch is not enough). */
    void requireState(byte expected) {
        if (persistent.lifeCycle != expected) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        if ((byte) (persistent.lifeCycle ^ expected) != 0) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
    }

    // ---------------------------------------------------------------- commands both roles have

    /** SELECT and GET INFO (PROTOCOL.md §4.1 INFO); the role gives its state and tries. */
    void sendInfo(APDU apdu, byte state, byte triesLeft, byte tryLimit) {
        byte[] buffer = apdu.getBuffer();
        byte[] s = persistent.settings.bytes();
        short record = persistent.settings.current((short) 0);
        buffer[INFO_VERSION] = PROTOCOL_VERSION;
        buffer[INFO_ROLE] = role;
        buffer[INFO_STATE] = state;
        buffer[INFO_T_LENGTH] = s[(short) (record + SETTINGS_T_LENGTH)];
        Util.arrayCopyNonAtomic(s, (short) (record + SETTINGS_T_KCV), buffer, INFO_T_KCV, KCV_BYTES);
        buffer[INFO_TRIES_LEFT] = triesLeft;
        buffer[INFO_TRY_LIMIT] = tryLimit;
        buffer[INFO_ENTRIES] = (byte) entryCount();
        byte snLength = s[(short) (record + SETTINGS_SN_LENGTH)];
        buffer[INFO_SN_LENGTH] = snLength;
        Util.arrayCopyNonAtomic(s, (short) (record + SETTINGS_SN), buffer, INFO_SN, snLength);
        // §9: T's version and the next T (AS) after the SN, where a v1 reader of INFO does not look.
        short extension = (short) (INFO_SN + snLength);
        Util.arrayCopyNonAtomic(s, (short) (record + SETTINGS_T_VERSION), buffer, extension, INFO_EXT_BYTES);
        apdu.setOutgoingAndSend((short) 0, (short) (extension + INFO_EXT_BYTES));
    }

    /** LIST KEYS: one entry per defined key or slot, in ascending REF order (AS: with its export count). */
    void listKeys(APDU apdu) {
        byte[] buffer = apdu.getBuffer();
        RecordStore entries = persistent.entries;
        byte[] e = entries.bytes();
        short length = 0;
        byte previousRef = REF_NONE;
        while (true) {
            short next = -1;
            byte nextRef = REF_NONE;
            for (short i = 0; i < MAX_ENTRIES; i++) {
                byte ref = e[entries.current(i)];
                if (ref > previousRef && (next < 0 || ref < nextRef)) {
                    next = i;
                    nextRef = ref;
                }
            }
            if (next < 0) {
                break;
            }
            Util.arrayCopyNonAtomic(e, entries.current(next), buffer, length, ENTRY_BYTES);
            if (persistent.exportCounts != null) {
                Util.setShort(buffer, (short) (length + ENTRY_COUNT), persistent.exportCounts[next]);
            }
            length += ENTRY_BYTES;
            previousRef = nextRef;
        }
        apdu.setOutgoingAndSend((short) 0, length);
    }

    /**
     * SET TRANSPORT KEY: T into a key object, then the settings record naming it (PROTOCOL.md §4.1), with
     * version 1 (§9). An AS that holds a next T refuses it (6985): the next T was checked against this T.
     */
    void setTransportKey(APDU apdu) {
        requireState(STATE_SETUP);
        if (persistent.nextKeyLength() != 0) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (!AesEngine.isAesKeyLength(length)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        requireSupported(length);
        short oldLength = persistent.transportKeyLength();
        byte oldHandle = persistent.settings.bytes()[(short) (persistent.settings.current((short) 0) + SETTINGS_T_KEY)];
        byte handle = persistent.storeKey(buffer, data, length);
        aes.kcv8(persistent.keys.get(length, handle), transients.secrets, SECRET_CHECK);

        byte[] s = persistent.settings.bytes();
        short record = persistent.settings.beginChange((short) 0);
        s[(short) (record + SETTINGS_T_LENGTH)] = (byte) length;
        s[(short) (record + SETTINGS_T_KEY)] = handle;
        Util.arrayCopyNonAtomic(transients.secrets, SECRET_CHECK, s, (short) (record + SETTINGS_T_KCV), KCV_BYTES);
        Util.setShort(s, (short) (record + SETTINGS_T_VERSION), T_VERSION_INITIAL);
        persistent.settings.commit((short) 0);
        if (oldLength != 0) {
            persistent.release(oldLength, oldHandle);
        }
    }

    /**
     * Makes key object {@code handle} of {@code length} bytes T, with the check value at {@code kcv} and
     * {@code version}, and clears the next T (PROTOCOL.md §9): one settings record committed by one byte,
     * then the old T's object cleared. A cut anywhere leaves the old T or the new one, whole; the key object
     * was written before, and an object a cut left named by no record is cleared by the next store.
     */
    void replaceTransportKey(short length, byte handle, byte[] kcv, short kcvOffset, short version) {
        RecordStore settings = persistent.settings;
        byte[] s = settings.bytes();
        short old = settings.current((short) 0);
        short oldLength = s[(short) (old + SETTINGS_T_LENGTH)];
        byte oldHandle = s[(short) (old + SETTINGS_T_KEY)];
        short record = settings.beginChange((short) 0);
        s[(short) (record + SETTINGS_T_LENGTH)] = (byte) length;
        s[(short) (record + SETTINGS_T_KEY)] = handle;
        Util.arrayCopyNonAtomic(kcv, kcvOffset, s, (short) (record + SETTINGS_T_KCV), KCV_BYTES);
        Util.setShort(s, (short) (record + SETTINGS_T_VERSION), version);
        Util.arrayFillNonAtomic(s, (short) (record + SETTINGS_NEXT_LENGTH),
                (short) (SETTINGS_NEXT_KEY + 1 - SETTINGS_NEXT_LENGTH), (byte) 0);
        settings.commit((short) 0);
        persistent.release(oldLength, oldHandle);
    }

    /** LOCK: SETUP to OPERATIONAL for good, when T is set and the role is ready ({@code roleReady}). */
    void lock(APDU apdu, boolean roleReady) {
        requireState(STATE_SETUP);
        if (receiveData(apdu) != 0) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        if (persistent.transportKeyLength() == 0 || !roleReady) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        persistent.lifeCycle = STATE_OPERATIONAL;
    }

    // ---------------------------------------------------------------- helpers for the roles

    /** 6A81 for a 24-byte key on a card without AES-192 (a keyload addition, docs/PROTOCOL.md §7). */
    void requireSupported(short keyLength) {
        if (!persistent.keys.supports(keyLength)) {
            ISOException.throwIt(SW_FUNCTION_NOT_SUPPORTED);
        }
    }

    /** Receives the whole command data and returns its length (Lc). */
    static short receiveData(APDU apdu) {
        short received = apdu.setIncomingAndReceive();
        short expected = apdu.getIncomingLength();
        short offset = apdu.getOffsetCdata();
        while (received < expected) {
            received += apdu.receiveBytes((short) (offset + received));
        }
        return received;
    }

    static boolean isReference(byte ref) {
        return ref > REF_NONE && ref <= REF_MAX;
    }

    static boolean isUsage(byte usage) {
        return usage == USAGE_AUTHENTICATE || usage == USAGE_MAC || usage == USAGE_ENCRYPT;
    }

    /** a &lt; b for two 16-bit values read as unsigned (versions). */
    static boolean unsignedLess(short a, short b) {
        return (short) (a ^ (short) 0x8000) < (short) (b ^ (short) 0x8000);
    }

    /** Index of the record holding {@code ref}, or -1. */
    short findEntry(byte ref) {
        if (!isReference(ref)) {
            return -1;
        }
        RecordStore entries = persistent.entries;
        byte[] e = entries.bytes();
        for (short i = 0; i < MAX_ENTRIES; i++) {
            if (e[(short) (entries.current(i) + ENTRY_REF)] == ref) {
                return i;
            }
        }
        return -1;
    }

    /** The record to (re)define {@code ref} in: its own, else a free one, else 6A84. */
    short entryForDefinition(byte ref) {
        short index = findEntry(ref);
        if (index < 0) {
            RecordStore entries = persistent.entries;
            byte[] e = entries.bytes();
            for (short i = 0; i < MAX_ENTRIES; i++) {
                if (e[(short) (entries.current(i) + ENTRY_REF)] == REF_NONE) {
                    return i;
                }
            }
            ISOException.throwIt(SW_NOT_ENOUGH_MEMORY);
        }
        return index;
    }

    short entryCount() {
        short count = 0;
        RecordStore entries = persistent.entries;
        byte[] e = entries.bytes();
        for (short i = 0; i < MAX_ENTRIES; i++) {
            if (e[(short) (entries.current(i) + ENTRY_REF)] != REF_NONE) {
                count++;
            }
        }
        return count;
    }

    /**
     * (Re)defines entry {@code index}: the record is rewritten from scratch with the fields the caller
     * then sets in the returned shadow offset, before {@link #commitEntry}.
     */
    short beginEntry(short index) {
        short record = persistent.entries.beginChange(index);
        Util.arrayFillNonAtomic(persistent.entries.bytes(), record, RECORD_BYTES, (byte) 0);
        return record;
    }

    /**
     * Commits entry {@code index}, then clears the key its previous record named, if any: the new key (if
     * any) was stored before, so a cut anywhere leaves the old entry or the new one, each with its key.
     */
    void commitEntry(short index) {
        RecordStore entries = persistent.entries;
        byte[] e = entries.bytes();
        short old = entries.current(index);
        boolean hadKey = e[(short) (old + ENTRY_REF)] != REF_NONE && e[(short) (old + ENTRY_STATE)] == ENTRY_LOADED;
        short oldLength = e[(short) (old + ENTRY_KEY_LENGTH)];
        byte oldHandle = e[(short) (old + RECORD_KEY)];
        entries.commit(index);
        if (hadKey) {
            persistent.release(oldLength, oldHandle);
        }
    }

    /**
     * Derives T1 = KDF(T, SN), then K_enc and K_mac = KDF(T1, R || REF2) into the transient secrets. The
     * caller has put R and REF2 into the context (PROTOCOL.md §2).
     */
    void deriveOperationKeys(byte[] sn, short snOffset, short snLength) {
        deriveOperationKeys(persistent.transportKey(), persistent.transportKeyLength(), sn, snOffset, snLength);
    }

    /** {@link #deriveOperationKeys(byte[], short, short)} from the transport key {@code t} given (§9: the next T). */
    void deriveOperationKeys(AESKey t, short tLength, byte[] sn, short snOffset, short snLength) {
        byte[] secrets = transients.secrets;
        aes.kdf(t, LABEL_T1, sn, snOffset, snLength, secrets, SECRET_T1, tLength);
        AESKey t1 = aes.load(secrets, SECRET_T1, tLength);
        aes.kdf(t1, LABEL_K_ENC, transients.context, CONTEXT_R, SESSION_CONTEXT_BYTES, secrets, SECRET_K_ENC, tLength);
        aes.kdf(t1, LABEL_K_MAC, transients.context, CONTEXT_R, SESSION_CONTEXT_BYTES, secrets, SECRET_K_MAC, tLength);
        t1.clearKey();
    }

    /** Zeroes every transient secret and key object; runs in the {@code finally} of each command. */
    void wipeSecrets() {
        transients.wipe();
    }
}
