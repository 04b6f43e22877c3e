package keyload.applet;

import static keyload.applet.Persistent.RECORD_KEY;
import static keyload.applet.Persistent.SETTINGS_NEXT_KCV;
import static keyload.applet.Persistent.SETTINGS_NEXT_KEY;
import static keyload.applet.Persistent.SETTINGS_NEXT_LENGTH;
import static keyload.applet.Persistent.SETTINGS_NEXT_VERSION;
import static keyload.applet.Protocol.*;
import static keyload.applet.Transients.CONTEXT_REF2;
import static keyload.applet.Transients.CONTEXT_R;
import static keyload.applet.Transients.CONTEXT_SN;
import static keyload.applet.Transients.SECRET_CHECK;
import static keyload.applet.Transients.SECRET_KEY;
import static keyload.applet.Transients.SECRET_K_ENC;
import static keyload.applet.Transients.SECRET_K_MAC;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacardx.crypto.Cipher;

/**
 * The master card (AS): holds application keys and exports each one, under an operation key derived for
 * one EI and one challenge, as the key block of PROTOCOL.md §3. Exports need the operator PIN.
 *
 * <p>Every instruction is in the one {@code switch} of {@link #process}; what both roles share is in
 * {@link Common}, the persistent state in {@link Persistent}, the transient state in {@link Transients}.
 */
public final class AsApplet extends Applet {

    /** PUT APP KEY data: REF1, usage, version(2), flags, export limit(2), key. */
    private static final short PUT_APP_KEY_REF = 0;
    private static final short PUT_APP_KEY_USAGE = 1;
    private static final short PUT_APP_KEY_VERSION = 2;
    private static final short PUT_APP_KEY_FLAGS = 4;
    private static final short PUT_APP_KEY_LIMIT = 5;
    private static final short PUT_APP_KEY_KEY = 7;

    /** EXPORT KEY data: REF1, REF2, R(16), len(SN), SN. */
    private static final short EXPORT_REF1 = 0;
    private static final short EXPORT_REF2 = 1;
    private static final short EXPORT_R = 2;
    private static final short EXPORT_SN_LENGTH = (short) (EXPORT_R + CHALLENGE_BYTES);
    private static final short EXPORT_SN = (short) (EXPORT_SN_LENGTH + 1);

    /** EXPORT TRANSPORT KEY data (PROTOCOL.md §9): R(16), len(SN), SN. */
    private static final short TRANSPORT_EXPORT_R = 0;
    private static final short TRANSPORT_EXPORT_SN_LENGTH = CHALLENGE_BYTES;
    private static final short TRANSPORT_EXPORT_SN = (short) (TRANSPORT_EXPORT_SN_LENGTH + 1);

    private final Common common;
    private final Persistent persistent;
    private final Transients transients;
    private final AesEngine aes;
    private final OwnerPIN pin;

    private AsApplet() {
        common = new Common(ROLE_AS);
        persistent = common.persistent;
        transients = common.transients;
        aes = common.aes;
        pin = persistent.pin;
    }

    /** Java Card entry point: creates and registers the applet under the AID of the install command. */
    public static void install(byte[] parameters, short offset, byte length) {
        new AsApplet().register(parameters, (short) (offset + 1), parameters[offset]);
    }

    /** "Operator PIN verified since the applet was selected": a new selection starts unverified. */
    public boolean select() {
        pin.reset();
        return true;
    }

    public void deselect() {
        pin.reset();
    }

    /** Every command of the AS, checked in the order of PROTOCOL.md §4.1, then run. */
    public void process(APDU apdu) {
        byte[] buffer = apdu.getBuffer();
        if (selectingApplet()) {
            sendInfo(apdu);
            return;
        }
        Common.checkClass(buffer);
        byte ins = buffer[ISO7816.OFFSET_INS];
        try {
            switch (ins) {
                case INS_GET_INFO:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    sendInfo(apdu);
                    return;
                case INS_LIST_KEYS:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    common.listKeys(apdu);
                    return;
                case INS_SET_TRANSPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    common.setTransportKey(apdu);
                    return;
                case INS_PUT_APP_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    putAppKey(apdu);
                    return;
                case INS_SET_PIN:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    setPin(apdu);
                    return;
                case INS_LOCK:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    common.lock(apdu, persistent.pinSet && common.entryCount() > 0);
                    return;
                case INS_VERIFY:
                    Common.checkHeader(buffer, CLA_ISO, (byte) 0, P2_OPERATOR_PIN);
                    verify(apdu);
                    return;
                case INS_EXPORT_KEY:
                    // P1P2: 0000 (v1) or the version of a transport key the AS holds, to export under (§9).
                    Common.checkCla(buffer, CLA_KEYLOAD);
                    if (!isTransportKeySelector(Util.getShort(buffer, ISO7816.OFFSET_P1))) {
                        ISOException.throwIt(SW_INCORRECT_P1P2);
                    }
                    exportKey(apdu);
                    return;
                case INS_PUT_NEXT_TRANSPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    putNextTransportKey(apdu);
                    return;
                case INS_EXPORT_TRANSPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    exportTransportKey(apdu);
                    return;
                case INS_RETIRE_TRANSPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    retireTransportKey(apdu);
                    return;
                case INS_SELECT:
                    // A SELECT that reaches a selected applet names an AID nobody has.
                    Common.checkHeader(buffer, CLA_ISO, P1_SELECT_BY_NAME, (byte) 0);
                    ISOException.throwIt(SW_APPLICATION_NOT_FOUND);
                    return;
                default:
                    ISOException.throwIt(SW_INS_NOT_SUPPORTED);
            }
        } finally {
            common.wipeSecrets();
            if (Common.carriesSecret(ins)) {
                Common.wipeBuffer(buffer);
            }
        }
    }

    private void sendInfo(APDU apdu) {
        common.sendInfo(apdu, persistent.lifeCycle, pin.getTriesRemaining(), PIN_TRY_LIMIT);
    }

    /** PUT APP KEY (SETUP): the key into a key object, then the entry naming it. */
    private void putAppKey(APDU apdu) {
        common.requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short data = apdu.getOffsetCdata();
        short keyLength = (short) (length - PUT_APP_KEY_KEY);
        if (!AesEngine.isAesKeyLength(keyLength)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte ref = buffer[(short) (data + PUT_APP_KEY_REF)];
        byte usage = buffer[(short) (data + PUT_APP_KEY_USAGE)];
        byte flags = buffer[(short) (data + PUT_APP_KEY_FLAGS)];
        if (!Common.isReference(ref) || !Common.isUsage(usage) || (byte) (flags & ~FLAGS_DEFINED) != 0
                || Util.getShort(buffer, (short) (data + PUT_APP_KEY_VERSION)) == 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short index = common.entryForDefinition(ref);
        common.requireSupported(keyLength);

        byte handle = persistent.storeKey(buffer, (short) (data + PUT_APP_KEY_KEY), keyLength);
        aes.kcv8(persistent.keys.get(keyLength, handle), transients.secrets, SECRET_CHECK);
        byte[] e = persistent.entries.bytes();
        short record = common.beginEntry(index);
        e[(short) (record + ENTRY_REF)] = ref;
        e[(short) (record + ENTRY_STATE)] = ENTRY_LOADED;
        e[(short) (record + ENTRY_KEY_LENGTH)] = (byte) keyLength;
        e[(short) (record + ENTRY_USAGE)] = usage;
        Util.arrayCopyNonAtomic(buffer, (short) (data + PUT_APP_KEY_VERSION), e, (short) (record + ENTRY_VERSION),
                (short) 2);
        e[(short) (record + ENTRY_FLAGS)] = flags;
        Util.arrayCopyNonAtomic(transients.secrets, SECRET_CHECK, e, (short) (record + ENTRY_KCV), KCV_BYTES);
        Util.arrayCopyNonAtomic(buffer, (short) (data + PUT_APP_KEY_LIMIT), e, (short) (record + ENTRY_LIMIT),
                (short) 2);
        e[(short) (record + RECORD_KEY)] = handle;
        // Exports are only counted once OPERATIONAL, which never returns to SETUP: the count is 0 here.
        common.commitEntry(index);
    }

    private void setPin(APDU apdu) {
        common.requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (length < PIN_MIN_BYTES || length > PIN_MAX_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        JCSystem.beginTransaction();
        pin.update(buffer, data, (byte) length);
        persistent.pinSet = true;
        JCSystem.commitTransaction();
    }

    /**
     * VERIFY. With data: checks the PIN, spending a try when wrong. Without data (PROTOCOL.md §8
     * amendment 2): 9000 when verified since the selection, else 63Cx (6983 when no try is left); never
     * changes the try counter.
     */
    private void verify(APDU apdu) {
        common.requireState(STATE_OPERATIONAL);
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (length == 0) {
            if (pin.isValidated()) {
                return;
            }
            ISOException.throwIt(triesStatus(pin.getTriesRemaining()));
        }
        if (pin.getTriesRemaining() <= 0) {
            ISOException.throwIt(SW_BLOCKED);
        }
        // A PIN of impossible length still costs a try: it is checked as the empty PIN.
        byte checked = length > PIN_MAX_BYTES ? 0 : (byte) length;
        if (!pin.check(buffer, data, checked)) {
            ISOException.throwIt((short) (SW_VERIFICATION_FAILED | pin.getTriesRemaining()));
        }
    }

    /** Without data: 63Cx with x the tries left, or 6983 when none is. */
    private static short triesStatus(byte triesLeft) {
        if (triesLeft <= 0) {
            return SW_BLOCKED;
        }
        return (short) (SW_VERIFICATION_FAILED | triesLeft);
    }

    /**
     * Receives the data of EXPORT KEY or EXPORT TRANSPORT KEY, fixed fields then len(SN) at
     * {@code snLengthOffset} and SN, 8 to 16 bytes, ending the data (else 6700); returns len(SN).
     */
    private static short receiveSerialLast(APDU apdu, short snLengthOffset) {
        short length = Common.receiveData(apdu);
        short snOffset = (short) (snLengthOffset + 1);
        if (length < snOffset) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short snLength = (short) (apdu.getBuffer()[(short) (apdu.getOffsetCdata() + snLengthOffset)] & 0xFF);
        if (snLength < SN_MIN_BYTES || snLength > SN_MAX_BYTES || length != (short) (snOffset + snLength)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        return snLength;
    }

    /**
     * EXPORT KEY: PROTOCOL.md §4.2 in its order, with §8 amendment 3 (Le checked before counting) and the
     * transport key chosen by P1P2 (§9): 0000 or T's version for T, the next T's version for the next T
     * (an EI rotated during a campaign); any other value was refused with 6A86 before the life cycle.
     */
    private void exportKey(APDU apdu) {
        // 1. OPERATIONAL, PIN verified.
        common.requireState(STATE_OPERATIONAL);
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        // 2. Length.
        byte[] buffer = apdu.getBuffer();
        short snLength = receiveSerialLast(apdu, EXPORT_SN_LENGTH);
        short data = apdu.getOffsetCdata();
        // 3. References, key length.
        byte ref1 = buffer[(short) (data + EXPORT_REF1)];
        byte ref2 = buffer[(short) (data + EXPORT_REF2)];
        short index = common.findEntry(ref1);
        if (index < 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        if (!Common.isReference(ref2)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        byte[] e = persistent.entries.bytes();
        short record = persistent.entries.current(index);
        if (e[(short) (record + ENTRY_REF)] != ref1) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND); // the search looked again: a skipped compare in it
        }
        short keyLength = e[(short) (record + ENTRY_KEY_LENGTH)];
        short selector = Util.getShort(buffer, ISO7816.OFFSET_P1);
        AESKey t = persistent.transportKey();
        short tLength = persistent.transportKeyLength();
        if (selector != 0 && selector != persistent.transportKeyVersion()) {
            if (persistent.nextKeyLength() == 0 || selector != persistent.nextKeyVersion()) {
                ISOException.throwIt(SW_INCORRECT_P1P2); // looked at again: one skipped branch is not enough
            }
            t = persistent.nextKey();
            tLength = persistent.nextKeyLength();
        }
        if (keyLength > tLength) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        short padded = AesEngine.paddedLength(keyLength);
        short sas = (short) (HEADER_BYTES + padded);
        short cas = (short) (sas + SAS_BYTES);
        short blockLength = (short) (cas + CAS_BYTES);
        // §8 amendment 3: the reply must fit the Le sent (00 or the block's length), before anything is counted.
        short le = apdu.setOutgoing();
        if (le != LE_ANY && le != blockLength) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        // 4. The export limit (first check; the second follows the count).
        short count = persistent.exportCounts[index];
        short limit = Util.getShort(e, (short) (record + ENTRY_LIMIT));
        if (limit != EXPORT_UNLIMITED && (short) (count ^ (short) 0x8000) >= (short) (limit ^ (short) 0x8000)) {
            ISOException.throwIt(SW_BLOCKED);
        }

        // 5. T1, K_enc, K_mac and TA_unit, in transient memory only.
        byte[] secrets = transients.secrets;
        byte[] context = transients.context;
        Util.arrayCopyNonAtomic(buffer, (short) (data + EXPORT_R), context, CONTEXT_R, CHALLENGE_BYTES);
        context[CONTEXT_REF2] = ref2;
        Util.arrayCopyNonAtomic(buffer, (short) (data + EXPORT_SN), context, CONTEXT_SN, snLength);
        common.deriveOperationKeys(t, tLength, context, CONTEXT_SN, snLength);
        AESKey ta = persistent.entryKey(record);
        byte flags = e[(short) (record + ENTRY_FLAGS)];
        // The CBC padding of a 24-byte key is these zeros, whatever an earlier command left.
        Util.arrayFillNonAtomic(secrets, SECRET_KEY, MAX_KEY_BYTES, (byte) 0);
        if ((byte) (flags & FLAG_DIVERSIFIED) != 0) {
            aes.kdf(ta, LABEL_UNIT, context, CONTEXT_SN, snLength, secrets, SECRET_KEY, keyLength);
        } else {
            ta.getKey(secrets, SECRET_KEY);
        }

        // The key block, built over the command in the APDU buffer (its inputs are copied above).
        buffer[HDR_FORMAT] = BLOCK_FORMAT;
        buffer[HDR_REF2] = ref2;
        buffer[HDR_KEY_LENGTH] = (byte) keyLength;
        buffer[HDR_USAGE] = e[(short) (record + ENTRY_USAGE)];
        Util.arrayCopyNonAtomic(e, (short) (record + ENTRY_VERSION), buffer, HDR_VERSION, (short) 2);
        buffer[HDR_FLAGS] = flags;
        buffer[HDR_REF1] = ref1;
        seal(buffer, keyLength, tLength);

        // 6. Count (one atomic short write, never the key's bytes), check again, send.
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        short counted = (short) (count + 1);
        if (counted == 0) {
            counted = EXPORT_UNLIMITED; // an unlimited key's count stops at 0xFFFF
        }
        persistent.exportCounts[index] = counted;
        if (limit != EXPORT_UNLIMITED && (short) (counted ^ (short) 0x8000) > (short) (limit ^ (short) 0x8000)) {
            ISOException.throwIt(SW_BLOCKED);
        }
        apdu.setOutgoingLength(blockLength);
        apdu.sendBytes((short) 0, blockLength);
    }

    /** EXPORT KEY's P1P2 (§9): 0000, T's version, or the version of the next T when one is held. */
    private boolean isTransportKeySelector(short selector) {
        return selector == 0 || persistent.transportKeyLength() != 0 && selector == persistent.transportKeyVersion()
                || persistent.nextKeyLength() != 0 && selector == persistent.nextKeyVersion();
    }

    /** encKey, SAS and CAS of a block whose header is in the buffer, for the key at SECRET_KEY (zero-padded). */
    private void seal(byte[] buffer, short keyLength, short tLength) {
        byte[] secrets = transients.secrets;
        short padded = AesEngine.paddedLength(keyLength);
        short sas = (short) (HEADER_BYTES + padded);
        short cas = (short) (sas + SAS_BYTES);
        aes.kcv8(aes.load(secrets, SECRET_KEY, keyLength), buffer, sas);
        aes.cbc(aes.load(secrets, SECRET_K_ENC, tLength), Cipher.MODE_ENCRYPT, secrets, SECRET_KEY, padded,
                buffer, HEADER_BYTES);
        aes.cmac(aes.load(secrets, SECRET_K_MAC, tLength), buffer, (short) 0, cas, buffer, cas);
    }

    // ---------------------------------------------------------------- transport key rotation (PROTOCOL.md §9)

    /**
     * PUT NEXT TRANSPORT KEY (SETUP only: the next T is chosen in the secure room where T is, never by whoever
     * holds the PIN in the field, who could otherwise export every key under a T of his own): version(2) ||
     * T'. T set, else 6985; a key length, else 6700; version above T's and T' at least as long as T, else
     * 6A80; 24 bytes on a card without AES-192: 6A81. A next T already held is replaced.
     */
    private void putNextTransportKey(APDU apdu) {
        common.requireState(STATE_SETUP);
        short tLength = persistent.transportKeyLength();
        if (tLength == 0) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short data = apdu.getOffsetCdata();
        short keyLength = (short) (length - VERSION_BYTES);
        if (!AesEngine.isAesKeyLength(keyLength)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short version = Util.getShort(buffer, data);
        if (!Common.unsignedLess(persistent.transportKeyVersion(), version) || keyLength < tLength) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        common.requireSupported(keyLength);

        RecordStore settings = persistent.settings;
        byte[] s = settings.bytes();
        short old = settings.current((short) 0);
        short oldLength = s[(short) (old + SETTINGS_NEXT_LENGTH)];
        byte oldHandle = s[(short) (old + SETTINGS_NEXT_KEY)];
        byte handle = persistent.storeKey(buffer, (short) (data + VERSION_BYTES), keyLength);
        aes.kcv8(persistent.keys.get(keyLength, handle), transients.secrets, SECRET_CHECK);
        short record = settings.beginChange((short) 0);
        s[(short) (record + SETTINGS_NEXT_LENGTH)] = (byte) keyLength;
        Util.arrayCopyNonAtomic(transients.secrets, SECRET_CHECK, s, (short) (record + SETTINGS_NEXT_KCV), KCV_BYTES);
        Util.setShort(s, (short) (record + SETTINGS_NEXT_VERSION), version);
        s[(short) (record + SETTINGS_NEXT_KEY)] = handle;
        settings.commit((short) 0);
        if (oldLength != 0) {
            persistent.release(oldLength, oldHandle);
        }
    }

    /**
     * EXPORT TRANSPORT KEY: R(16) || len(SN) || SN; the next T as a block of format 02 for that EI and
     * challenge, under K_enc and K_mac derived from T with REF2 = 00. OPERATIONAL, PIN verified (6982), a
     * next T held (6A88), Le 00 or the block's length (6700). Nothing is counted or stored.
     */
    private void exportTransportKey(APDU apdu) {
        common.requireState(STATE_OPERATIONAL);
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        byte[] buffer = apdu.getBuffer();
        short snLength = receiveSerialLast(apdu, TRANSPORT_EXPORT_SN_LENGTH);
        short data = apdu.getOffsetCdata();
        short keyLength = persistent.nextKeyLength();
        if (keyLength == 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        short blockLength = (short) (HEADER_BYTES + AesEngine.paddedLength(keyLength) + SAS_BYTES + CAS_BYTES);
        short le = apdu.setOutgoing();
        if (le != LE_ANY && le != blockLength) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }

        byte[] secrets = transients.secrets;
        byte[] context = transients.context;
        Util.arrayCopyNonAtomic(buffer, (short) (data + TRANSPORT_EXPORT_R), context, CONTEXT_R, CHALLENGE_BYTES);
        context[CONTEXT_REF2] = REF_NONE;
        Util.arrayCopyNonAtomic(buffer, (short) (data + TRANSPORT_EXPORT_SN), context, CONTEXT_SN, snLength);
        common.deriveOperationKeys(context, CONTEXT_SN, snLength);
        Util.arrayFillNonAtomic(secrets, SECRET_KEY, MAX_KEY_BYTES, (byte) 0);
        persistent.nextKey().getKey(secrets, SECRET_KEY);

        buffer[HDR_FORMAT] = TRANSPORT_BLOCK_FORMAT;
        buffer[HDR_REF2] = REF_NONE;
        buffer[HDR_KEY_LENGTH] = (byte) keyLength;
        buffer[HDR_USAGE] = 0;
        Util.setShort(buffer, HDR_VERSION, persistent.nextKeyVersion());
        buffer[HDR_FLAGS] = 0;
        buffer[HDR_REF1] = REF_NONE;
        seal(buffer, keyLength, persistent.transportKeyLength());

        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        apdu.setOutgoingLength(blockLength);
        apdu.sendBytes((short) 0, blockLength);
    }

    /**
     * RETIRE TRANSPORT KEY: version(2) of the next T, which becomes T; the old T is cleared. OPERATIONAL,
     * PIN verified (6982), two bytes (6700), a next T held (6A88) of that version (6A80).
     */
    private void retireTransportKey(APDU apdu) {
        common.requireState(STATE_OPERATIONAL);
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        byte[] buffer = apdu.getBuffer();
        if (Common.receiveData(apdu) != VERSION_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short keyLength = persistent.nextKeyLength();
        if (keyLength == 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        short version = persistent.nextKeyVersion();
        if (Util.getShort(buffer, apdu.getOffsetCdata()) != version) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        byte[] s = persistent.settings.bytes();
        short record = persistent.settings.current((short) 0);
        common.replaceTransportKey(keyLength, s[(short) (record + SETTINGS_NEXT_KEY)], s,
                (short) (record + SETTINGS_NEXT_KCV), version);
    }
}
