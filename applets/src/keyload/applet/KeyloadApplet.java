package keyload.applet;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * What the AS and EI applets share: the command checks every command goes through, the life cycle, the
 * transport key and serial, the table of keys (AS) or slots (EI), INFO and LIST KEYS, and the derivation
 * of the operation keys T1, K_enc and K_mac.
 *
 * <p>Memory: everything persistent lives in {@link #settings} (T, its KCV, SN), {@link #entries} (one
 * record per key or slot) and {@link #lifeCycle}; everything secret that is derived or decrypted lives in
 * the transient {@link #secrets} and {@link #context} arrays and in {@link AesEngine}, and is wiped after
 * every command, whatever its outcome.
 */
public abstract class KeyloadApplet extends Applet implements Protocol {

    // ---------------------------------------------------------------- persistent layout
    /** Settings record: T length, KCV(T), T, SN length, SN. */
    static final short SET_T_LENGTH = 0;
    static final short SET_T_KCV = 1;
    static final short SET_T = (short) (SET_T_KCV + KCV_BYTES);
    static final short SET_SN_LENGTH = (short) (SET_T + MAX_KEY_BYTES);
    static final short SET_SN = (short) (SET_SN_LENGTH + 1);
    static final short SETTINGS_BYTES = (short) (SET_SN + SN_MAX_BYTES);

    /** Entry record: the 14-byte LIST KEYS entry followed by the key itself. */
    static final short REC_KEY = ENTRY_BYTES;
    static final short RECORD_BYTES = (short) (REC_KEY + MAX_KEY_BYTES);

    // ---------------------------------------------------------------- transient layout
    /** Secrets: T1, K_enc, K_mac, the plain application key, and a computed MAC or check value. */
    static final short S_T1 = 0;
    static final short S_K_ENC = (short) (S_T1 + MAX_KEY_BYTES);
    static final short S_K_MAC = (short) (S_K_ENC + MAX_KEY_BYTES);
    static final short S_KEY = (short) (S_K_MAC + MAX_KEY_BYTES);
    static final short S_CHECK = (short) (S_KEY + MAX_KEY_BYTES);
    static final short SECRETS_BYTES = (short) (S_CHECK + CAS_BYTES);

    /** Derivation context: R || REF2 (for K_enc and K_mac), then SN (for T1 and TA_unit). */
    static final short C_R = 0;
    static final short C_REF2 = (short) (C_R + CHALLENGE_BYTES);
    static final short C_SN = (short) (C_REF2 + 1);
    static final short SESSION_CONTEXT_BYTES = C_SN;
    static final short CONTEXT_BYTES = (short) (C_SN + SN_MAX_BYTES);

    /** Answer of {@link #claOf} for an instruction this applet does not have. */
    static final byte CLA_NONE = (byte) 0xFF;

    private final byte role;
    /** SETUP or OPERATIONAL; see {@link #state()} for what the applet reports. */
    private byte lifeCycle;
    final RecordStore settings;
    final RecordStore entries;
    final AesEngine aes;
    final byte[] secrets;
    final byte[] context;

    KeyloadApplet(byte role) {
        this.role = role;
        lifeCycle = STATE_SETUP;
        settings = new RecordStore((short) 1, SETTINGS_BYTES);
        entries = new RecordStore(MAX_ENTRIES, RECORD_BYTES);
        aes = new AesEngine();
        secrets = JCSystem.makeTransientByteArray(SECRETS_BYTES, JCSystem.CLEAR_ON_DESELECT);
        context = JCSystem.makeTransientByteArray(CONTEXT_BYTES, JCSystem.CLEAR_ON_DESELECT);
    }

    // ---------------------------------------------------------------- role-specific parts

    /** The CLA of {@code ins} in PROTOCOL.md §4.1, or {@link #CLA_NONE}. */
    byte claOf(byte ins) {
        switch (ins) {
            case INS_SELECT:
                return CLA_ISO;
            case INS_GET_INFO:
            case INS_LIST_KEYS:
            case INS_SET_TRANSPORT_KEY:
            case INS_LOCK:
                return CLA_KEYLOAD;
            default:
                return CLA_NONE;
        }
    }

    /** Whether P1 and P2 are those of PROTOCOL.md §4.1 for {@code ins}. */
    boolean parametersValid(byte ins, byte p1, byte p2) {
        if (ins == INS_SELECT) {
            return p1 == P1_SELECT_BY_NAME && p2 == 0;
        }
        return p1 == 0 && p2 == 0;
    }

    /** Runs one command whose CLA, INS, P1 and P2 have been checked. */
    void dispatch(APDU apdu, byte ins) {
        switch (ins) {
            case INS_GET_INFO:
                sendInfo(apdu);
                return;
            case INS_LIST_KEYS:
                listKeys(apdu);
                return;
            case INS_SET_TRANSPORT_KEY:
                setTransportKey(apdu);
                return;
            case INS_LOCK:
                lock(apdu);
                return;
            default:
                // A SELECT that reaches a selected applet names an AID nobody has.
                ISOException.throwIt(SW_APPLICATION_NOT_FOUND);
        }
    }

    /** The LOCK preconditions of the role beyond the transport key. */
    abstract boolean readyToLock();

    /** INFO byte 7: PIN tries (AS) or import verifications (EI) left. */
    abstract byte triesLeft();

    /** INFO byte 8. */
    abstract byte tryLimit();

    /** The life cycle as reported: SETUP, OPERATIONAL or BLOCKED. */
    byte state() {
        return lifeCycle;
    }

    // ---------------------------------------------------------------- command processing

    public void process(APDU apdu) {
        if (selectingApplet()) {
            sendInfo(apdu);
            return;
        }
        byte[] buffer = apdu.getBuffer();
        byte ins = buffer[ISO7816.OFFSET_INS];
        checkHeader(buffer[ISO7816.OFFSET_CLA], ins, buffer[ISO7816.OFFSET_P1], buffer[ISO7816.OFFSET_P2]);
        try {
            dispatch(apdu, ins);
        } finally {
            wipeSecrets();
        }
    }

    /** CLA, then INS, then P1/P2, in the order of PROTOCOL.md §4.1. */
    private void checkHeader(byte cla, byte ins, byte p1, byte p2) {
        if (cla != CLA_ISO && cla != CLA_KEYLOAD) {
            ISOException.throwIt(SW_CLA_NOT_SUPPORTED);
        }
        byte expectedCla = claOf(ins);
        if (expectedCla == CLA_NONE) {
            ISOException.throwIt(SW_INS_NOT_SUPPORTED);
        }
        if (cla != expectedCla) {
            ISOException.throwIt(SW_CLA_NOT_SUPPORTED);
        }
        if (!parametersValid(ins, p1, p2)) {
            ISOException.throwIt(SW_INCORRECT_P1P2);
        }
    }

    private void sendInfo(APDU apdu) {
        byte[] buffer = apdu.getBuffer();
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        buffer[INFO_VERSION] = PROTOCOL_VERSION;
        buffer[INFO_ROLE] = role;
        buffer[INFO_STATE] = state();
        buffer[INFO_T_LENGTH] = s[(short) (record + SET_T_LENGTH)];
        Util.arrayCopyNonAtomic(s, (short) (record + SET_T_KCV), buffer, INFO_T_KCV, KCV_BYTES);
        buffer[INFO_TRIES_LEFT] = triesLeft();
        buffer[INFO_TRY_LIMIT] = tryLimit();
        buffer[INFO_ENTRIES] = (byte) entryCount();
        byte snLength = s[(short) (record + SET_SN_LENGTH)];
        buffer[INFO_SN_LENGTH] = snLength;
        Util.arrayCopyNonAtomic(s, (short) (record + SET_SN), buffer, INFO_SN, snLength);
        apdu.setOutgoingAndSend((short) 0, (short) (INFO_SN + snLength));
    }

    /** One LIST KEYS entry per defined key or slot, in ascending REF order. */
    private void listKeys(APDU apdu) {
        byte[] buffer = apdu.getBuffer();
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
            length += ENTRY_BYTES;
            previousRef = nextRef;
        }
        apdu.setOutgoingAndSend((short) 0, length);
    }

    private void setTransportKey(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (!AesEngine.isAesKeyLength(length)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte[] s = settings.bytes();
        short record = settings.beginChange((short) 0);
        s[(short) (record + SET_T_LENGTH)] = (byte) length;
        Util.arrayFillNonAtomic(s, (short) (record + SET_T), MAX_KEY_BYTES, (byte) 0);
        Util.arrayCopyNonAtomic(buffer, data, s, (short) (record + SET_T), length);
        aes.kcv8(buffer, data, length, secrets, S_CHECK);
        Util.arrayCopyNonAtomic(secrets, S_CHECK, s, (short) (record + SET_T_KCV), KCV_BYTES);
        settings.commit((short) 0);
        Util.arrayFillNonAtomic(buffer, data, length, (byte) 0);
    }

    private void lock(APDU apdu) {
        requireState(STATE_SETUP);
        if (receiveData(apdu) != 0) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        if (transportKeyLength() == 0 || !readyToLock()) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        lifeCycle = STATE_OPERATIONAL;
    }

    // ---------------------------------------------------------------- helpers for the roles

    void requireState(byte expected) {
        if (state() != expected) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
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

    /** a &lt; b for two 16-bit values read as unsigned (versions, counters). */
    static boolean unsignedLess(short a, short b) {
        return (short) (a ^ (short) 0x8000) < (short) (b ^ (short) 0x8000);
    }

    short transportKeyLength() {
        return settings.bytes()[(short) (settings.current((short) 0) + SET_T_LENGTH)];
    }

    /** Index of the record holding {@code ref}, or -1. */
    short findEntry(byte ref) {
        if (!isReference(ref)) {
            return -1;
        }
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
        byte[] e = entries.bytes();
        for (short i = 0; i < MAX_ENTRIES; i++) {
            if (e[(short) (entries.current(i) + ENTRY_REF)] != REF_NONE) {
                count++;
            }
        }
        return count;
    }

    /**
     * Derives T1 = KDF(T, SN), then K_enc and K_mac = KDF(T1, R || REF2) into {@link #secrets}. The
     * caller has put R and REF2 into {@link #context}.
     */
    void deriveOperationKeys(byte[] sn, short snOffset, short snLength) {
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        short tLength = s[(short) (record + SET_T_LENGTH)];
        aes.kdf(s, (short) (record + SET_T), tLength, LABEL_T1, sn, snOffset, snLength, secrets, S_T1, tLength);
        aes.kdf(secrets, S_T1, tLength, LABEL_K_ENC, context, C_R, SESSION_CONTEXT_BYTES, secrets, S_K_ENC, tLength);
        aes.kdf(secrets, S_T1, tLength, LABEL_K_MAC, context, C_R, SESSION_CONTEXT_BYTES, secrets, S_K_MAC, tLength);
    }

    /** Zeroes every transient secret and key object; runs after each command. */
    void wipeSecrets() {
        Util.arrayFillNonAtomic(secrets, (short) 0, SECRETS_BYTES, (byte) 0);
        Util.arrayFillNonAtomic(context, (short) 0, CONTEXT_BYTES, (byte) 0);
        aes.wipe();
    }
}
