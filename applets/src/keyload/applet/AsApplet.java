package keyload.applet;

import javacard.framework.APDU;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.framework.Util;
import javacardx.crypto.Cipher;

/**
 * The master card (AS): holds application keys and exports each one, under an operation key derived for
 * one EI and one challenge, as the key block of PROTOCOL.md §3. Exports need the operator PIN.
 */
public final class AsApplet extends KeyloadApplet {

    /** PUT APP KEY data: REF1, usage, version(2), flags, export limit(2), key. */
    private static final short PUT_REF = 0;
    private static final short PUT_USAGE = 1;
    private static final short PUT_VERSION = 2;
    private static final short PUT_FLAGS = 4;
    private static final short PUT_LIMIT = 5;
    private static final short PUT_KEY = 7;

    /** EXPORT KEY data: REF1, REF2, R(16), len(SN), SN. */
    private static final short EXPORT_REF1 = 0;
    private static final short EXPORT_REF2 = 1;
    private static final short EXPORT_R = 2;
    private static final short EXPORT_SN_LENGTH = (short) (EXPORT_R + CHALLENGE_BYTES);
    private static final short EXPORT_SN = (short) (EXPORT_SN_LENGTH + 1);

    private final OwnerPIN pin;
    private boolean pinSet;

    private AsApplet() {
        super(ROLE_AS);
        pin = new OwnerPIN(PIN_TRY_LIMIT, (byte) PIN_MAX_BYTES);
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

    byte claOf(byte ins) {
        switch (ins) {
            case INS_VERIFY:
                return CLA_ISO;
            case INS_PUT_APP_KEY:
            case INS_SET_PIN:
            case INS_EXPORT_KEY:
                return CLA_KEYLOAD;
            default:
                return super.claOf(ins);
        }
    }

    boolean parametersValid(byte ins, byte p1, byte p2) {
        if (ins == INS_VERIFY) {
            return p1 == 0 && p2 == P2_OPERATOR_PIN;
        }
        return super.parametersValid(ins, p1, p2);
    }

    void dispatch(APDU apdu, byte ins) {
        switch (ins) {
            case INS_PUT_APP_KEY:
                putAppKey(apdu);
                return;
            case INS_SET_PIN:
                setPin(apdu);
                return;
            case INS_VERIFY:
                verify(apdu);
                return;
            case INS_EXPORT_KEY:
                exportKey(apdu);
                return;
            default:
                super.dispatch(apdu, ins);
        }
    }

    boolean readyToLock() {
        return pinSet && entryCount() > 0;
    }

    byte triesLeft() {
        return pin.getTriesRemaining();
    }

    byte tryLimit() {
        return PIN_TRY_LIMIT;
    }

    private void putAppKey(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        short keyLength = (short) (length - PUT_KEY);
        if (!AesEngine.isAesKeyLength(keyLength)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte ref = buffer[(short) (data + PUT_REF)];
        byte usage = buffer[(short) (data + PUT_USAGE)];
        byte flags = buffer[(short) (data + PUT_FLAGS)];
        if (!isReference(ref) || !isUsage(usage) || (byte) (flags & ~FLAGS_DEFINED) != 0
                || Util.getShort(buffer, (short) (data + PUT_VERSION)) == 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short index = entryForDefinition(ref);

        byte[] e = entries.bytes();
        short record = entries.beginChange(index);
        Util.arrayFillNonAtomic(e, record, RECORD_BYTES, (byte) 0);
        e[(short) (record + ENTRY_REF)] = ref;
        e[(short) (record + ENTRY_STATE)] = ENTRY_LOADED;
        e[(short) (record + ENTRY_KEY_LENGTH)] = (byte) keyLength;
        e[(short) (record + ENTRY_USAGE)] = usage;
        Util.arrayCopyNonAtomic(buffer, (short) (data + PUT_VERSION), e, (short) (record + ENTRY_VERSION), (short) 2);
        e[(short) (record + ENTRY_FLAGS)] = flags;
        aes.kcv8(buffer, (short) (data + PUT_KEY), keyLength, secrets, S_CHECK);
        Util.arrayCopyNonAtomic(secrets, S_CHECK, e, (short) (record + ENTRY_KCV), KCV_BYTES);
        Util.arrayCopyNonAtomic(buffer, (short) (data + PUT_LIMIT), e, (short) (record + ENTRY_LIMIT), (short) 2);
        Util.arrayCopyNonAtomic(buffer, (short) (data + PUT_KEY), e, (short) (record + REC_KEY), keyLength);
        entries.commit(index);
        Util.arrayFillNonAtomic(buffer, data, length, (byte) 0);
    }

    private void setPin(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (length < PIN_MIN_BYTES || length > PIN_MAX_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        JCSystem.beginTransaction();
        pin.update(buffer, data, (byte) length);
        pinSet = true;
        JCSystem.commitTransaction();
        Util.arrayFillNonAtomic(buffer, data, length, (byte) 0);
    }

    private void verify(APDU apdu) {
        requireState(STATE_OPERATIONAL);
        if (pin.getTriesRemaining() == 0) {
            ISOException.throwIt(SW_BLOCKED);
        }
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        // A PIN of impossible length still costs a try: it is checked as the empty PIN.
        byte checked = length > PIN_MAX_BYTES ? 0 : (byte) length;
        boolean valid = pin.check(buffer, data, checked);
        Util.arrayFillNonAtomic(buffer, data, length, (byte) 0);
        if (!valid) {
            ISOException.throwIt((short) (SW_VERIFICATION_FAILED | pin.getTriesRemaining()));
        }
    }

    /** PROTOCOL.md §4.2, in its order. */
    private void exportKey(APDU apdu) {
        requireState(STATE_OPERATIONAL);
        if (!pin.isValidated()) {
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (length < EXPORT_SN) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short snLength = (short) (buffer[(short) (data + EXPORT_SN_LENGTH)] & 0xFF);
        if (snLength < SN_MIN_BYTES || snLength > SN_MAX_BYTES || length != (short) (EXPORT_SN + snLength)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte ref1 = buffer[(short) (data + EXPORT_REF1)];
        byte ref2 = buffer[(short) (data + EXPORT_REF2)];
        short index = findEntry(ref1);
        if (index < 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        if (!isReference(ref2)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        byte[] e = entries.bytes();
        short record = entries.current(index);
        short keyLength = e[(short) (record + ENTRY_KEY_LENGTH)];
        short tLength = transportKeyLength();
        if (keyLength > tLength) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        short count = Util.getShort(e, (short) (record + ENTRY_COUNT));
        short limit = Util.getShort(e, (short) (record + ENTRY_LIMIT));
        if (limit != EXPORT_UNLIMITED && !unsignedLess(count, limit)) {
            ISOException.throwIt(SW_BLOCKED);
        }

        Util.arrayCopyNonAtomic(buffer, (short) (data + EXPORT_R), context, C_R, CHALLENGE_BYTES);
        context[C_REF2] = ref2;
        Util.arrayCopyNonAtomic(buffer, (short) (data + EXPORT_SN), context, C_SN, snLength);
        deriveOperationKeys(context, C_SN, snLength);
        byte flags = e[(short) (record + ENTRY_FLAGS)];
        if ((byte) (flags & FLAG_DIVERSIFIED) != 0) {
            aes.kdf(e, (short) (record + REC_KEY), keyLength, LABEL_UNIT, context, C_SN, snLength,
                    secrets, S_KEY, keyLength);
        } else {
            Util.arrayCopyNonAtomic(e, (short) (record + REC_KEY), secrets, S_KEY, keyLength);
        }

        // The key block, built over the command in the APDU buffer (its inputs are copied above).
        short padded = AesEngine.paddedLength(keyLength);
        short sas = (short) (HEADER_BYTES + padded);
        short cas = (short) (sas + SAS_BYTES);
        buffer[HDR_FORMAT] = BLOCK_FORMAT;
        buffer[HDR_REF2] = ref2;
        buffer[HDR_KEY_LENGTH] = (byte) keyLength;
        buffer[HDR_USAGE] = e[(short) (record + ENTRY_USAGE)];
        Util.arrayCopyNonAtomic(e, (short) (record + ENTRY_VERSION), buffer, HDR_VERSION, (short) 2);
        buffer[HDR_FLAGS] = flags;
        buffer[HDR_REF1] = ref1;
        aes.cbc(Cipher.MODE_ENCRYPT, secrets, S_K_ENC, tLength, secrets, S_KEY, padded, buffer, HEADER_BYTES);
        aes.kcv8(secrets, S_KEY, keyLength, buffer, sas);
        aes.cmac(secrets, S_K_MAC, tLength, buffer, (short) 0, cas, buffer, cas);

        if (count != EXPORT_UNLIMITED) {
            short changed = entries.beginChange(index);
            Util.setShort(e, (short) (changed + ENTRY_COUNT), (short) (count + 1));
            entries.commit(index);
        }
        apdu.setOutgoingAndSend((short) 0, (short) (cas + CAS_BYTES));
    }
}
