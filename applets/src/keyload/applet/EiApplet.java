package keyload.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;

/**
 * A terminal security module (EI): receives application keys from the AS as key blocks bound to its
 * serial and to a challenge it issued, verifies them before decrypting, and stores them in slots.
 *
 * <p>The import retry counter is the EI's only defence against a brute-forced MAC, so it is spent before
 * the check and given back only after a good one; the card is BLOCKED whenever it reads zero, including
 * after a power cut in the middle of a check.
 */
public final class EiApplet extends KeyloadApplet {

    /** DEFINE SLOT data: REF2, key length, usage, flags. */
    private static final short DEFINE_REF = 0;
    private static final short DEFINE_KEY_LENGTH = 1;
    private static final short DEFINE_USAGE = 2;
    private static final short DEFINE_FLAGS = 3;
    private static final short DEFINE_BYTES = 4;

    private static final short LE_MAX_SHORT = 256;

    private byte retryLimit;
    private byte triesLeft;
    private final RandomData random;
    /** The challenge R issued by GET CHALLENGE, valid until the next IMPORT KEY or deselection. */
    private final byte[] challenge;
    private final boolean[] challengeIssued;

    /**
     * ALG_SECURE_RANDOM and generateData are deprecated since Java Card 3.0.5 but are what 3.0.4 cards
     * have; their 3.0.5 successors (ALG_TRNG, nextBytes) would exclude those cards.
     */
    @SuppressWarnings("deprecation")
    private EiApplet() {
        super(ROLE_EI);
        retryLimit = RETRY_LIMIT_DEFAULT;
        triesLeft = RETRY_LIMIT_DEFAULT;
        random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        challenge = JCSystem.makeTransientByteArray(CHALLENGE_BYTES, JCSystem.CLEAR_ON_DESELECT);
        challengeIssued = JCSystem.makeTransientBooleanArray((short) 1, JCSystem.CLEAR_ON_DESELECT);
    }

    /** Java Card entry point: creates and registers the applet under the AID of the install command. */
    public static void install(byte[] parameters, short offset, byte length) {
        new EiApplet().register(parameters, (short) (offset + 1), parameters[offset]);
    }

    byte claOf(byte ins) {
        switch (ins) {
            case INS_GET_CHALLENGE:
            case INS_INTERNAL_AUTHENTICATE:
                return CLA_ISO;
            case INS_SET_SERIAL:
            case INS_DEFINE_SLOT:
            case INS_SET_RETRY_LIMIT:
            case INS_IMPORT_KEY:
                return CLA_KEYLOAD;
            default:
                return super.claOf(ins);
        }
    }

    /** INTERNAL AUTHENTICATE carries the slot in P2. */
    boolean parametersValid(byte ins, byte p1, byte p2) {
        if (ins == INS_INTERNAL_AUTHENTICATE) {
            return p1 == 0 && isReference(p2);
        }
        return super.parametersValid(ins, p1, p2);
    }

    void dispatch(APDU apdu, byte ins) {
        switch (ins) {
            case INS_SET_SERIAL:
                setSerial(apdu);
                return;
            case INS_DEFINE_SLOT:
                defineSlot(apdu);
                return;
            case INS_SET_RETRY_LIMIT:
                setRetryLimit(apdu);
                return;
            case INS_GET_CHALLENGE:
                getChallenge(apdu);
                return;
            case INS_IMPORT_KEY:
                importKey(apdu);
                return;
            case INS_INTERNAL_AUTHENTICATE:
                internalAuthenticate(apdu);
                return;
            default:
                super.dispatch(apdu, ins);
        }
    }

    byte state() {
        byte stored = super.state();
        return stored == STATE_OPERATIONAL && triesLeft == 0 ? STATE_BLOCKED : stored;
    }

    boolean readyToLock() {
        return serialLength() != 0 && entryCount() > 0;
    }

    byte triesLeft() {
        return triesLeft;
    }

    byte tryLimit() {
        return retryLimit;
    }

    private short serialLength() {
        return settings.bytes()[(short) (settings.current((short) 0) + SET_SN_LENGTH)];
    }

    private void setSerial(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        if (length < SN_MIN_BYTES || length > SN_MAX_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte[] s = settings.bytes();
        short record = settings.beginChange((short) 0);
        s[(short) (record + SET_SN_LENGTH)] = (byte) length;
        Util.arrayFillNonAtomic(s, (short) (record + SET_SN), SN_MAX_BYTES, (byte) 0);
        Util.arrayCopyNonAtomic(buffer, apdu.getOffsetCdata(), s, (short) (record + SET_SN), length);
        settings.commit((short) 0);
    }

    private void defineSlot(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        if (receiveData(apdu) != DEFINE_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short data = apdu.getOffsetCdata();
        byte ref = buffer[(short) (data + DEFINE_REF)];
        byte keyLength = buffer[(short) (data + DEFINE_KEY_LENGTH)];
        byte usage = buffer[(short) (data + DEFINE_USAGE)];
        byte flags = buffer[(short) (data + DEFINE_FLAGS)];
        if (!isReference(ref) || !AesEngine.isAesKeyLength(keyLength) || !isUsage(usage)
                || (byte) (flags & ~FLAGS_DEFINED) != 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short index = entryForDefinition(ref);

        byte[] e = entries.bytes();
        short record = entries.beginChange(index);
        Util.arrayFillNonAtomic(e, record, RECORD_BYTES, (byte) 0);
        e[(short) (record + ENTRY_REF)] = ref;
        e[(short) (record + ENTRY_STATE)] = ENTRY_EMPTY;
        e[(short) (record + ENTRY_KEY_LENGTH)] = keyLength;
        e[(short) (record + ENTRY_USAGE)] = usage;
        e[(short) (record + ENTRY_FLAGS)] = flags;
        entries.commit(index);
    }

    private void setRetryLimit(APDU apdu) {
        requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        if (receiveData(apdu) != 1) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte limit = buffer[apdu.getOffsetCdata()];
        if (limit < 1 || limit > RETRY_LIMIT_MAX) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        JCSystem.beginTransaction();
        retryLimit = limit;
        triesLeft = limit;
        JCSystem.commitTransaction();
    }

    /** BLOCKED answers 6983 to GET CHALLENGE and IMPORT KEY; any other state but OPERATIONAL 6985. */
    private void requireImportable() {
        byte current = state();
        if (current == STATE_BLOCKED) {
            ISOException.throwIt(SW_BLOCKED);
        }
        if (current != STATE_OPERATIONAL) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
    }

    @SuppressWarnings("deprecation")
    private void getChallenge(APDU apdu) {
        requireImportable();
        short expected = apdu.setOutgoing();
        if (expected != CHALLENGE_BYTES && expected != LE_MAX_SHORT) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        random.generateData(challenge, (short) 0, CHALLENGE_BYTES);
        challengeIssued[0] = true;
        apdu.setOutgoingLength(CHALLENGE_BYTES);
        apdu.sendBytesLong(challenge, (short) 0, CHALLENGE_BYTES);
    }

    /** PROTOCOL.md §4.3, in its order. */
    private void importKey(APDU apdu) {
        requireImportable();
        // 2. Take the challenge: it is spent whatever happens next.
        if (!challengeIssued[0]) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        Util.arrayCopyNonAtomic(challenge, (short) 0, context, C_R, CHALLENGE_BYTES);
        challengeIssued[0] = false;
        Util.arrayFillNonAtomic(challenge, (short) 0, CHALLENGE_BYTES, (byte) 0);

        // 3. Shape of the block.
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        short block = apdu.getOffsetCdata();
        if (length < HEADER_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short keyLength = buffer[(short) (block + HDR_KEY_LENGTH)];
        if (buffer[(short) (block + HDR_FORMAT)] != BLOCK_FORMAT || !AesEngine.isAesKeyLength(keyLength)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short padded = AesEngine.paddedLength(keyLength);
        short sas = (short) (block + HEADER_BYTES + padded);
        short cas = (short) (sas + SAS_BYTES);
        if (length != (short) (HEADER_BYTES + padded + SAS_BYTES + CAS_BYTES)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }

        // 4-5. Spend a try, then check CAS; nothing is decrypted unless it matches.
        triesLeft--;
        byte ref2 = buffer[(short) (block + HDR_REF2)];
        context[C_REF2] = ref2;
        byte[] s = settings.bytes();
        short record = settings.current((short) 0);
        deriveOperationKeys(s, (short) (record + SET_SN), s[(short) (record + SET_SN_LENGTH)]);
        short tLength = transportKeyLength();
        aes.cmac(secrets, S_K_MAC, tLength, buffer, block, (short) (cas - block), secrets, S_CHECK);
        if (!AesEngine.equalInConstantTime(secrets, S_CHECK, buffer, cas, CAS_BYTES)) {
            ISOException.throwIt((short) (SW_VERIFICATION_FAILED | triesLeft));
        }
        // 6. A good MAC gives the tries back.
        if (triesLeft != retryLimit) {
            triesLeft = retryLimit;
        }

        // 7. The slot.
        short index = findEntry(ref2);
        if (index < 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        byte[] e = entries.bytes();
        short slot = entries.current(index);
        if ((byte) (e[(short) (slot + ENTRY_FLAGS)] & FLAG_ACCEPTS_IMPORT) == 0) {
            ISOException.throwIt(SW_COMMAND_NOT_ALLOWED);
        }
        if (e[(short) (slot + ENTRY_KEY_LENGTH)] != keyLength
                || e[(short) (slot + ENTRY_USAGE)] != buffer[(short) (block + HDR_USAGE)]) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }

        // 8. Decrypt, then check padding and SAS.
        aes.cbc(Cipher.MODE_DECRYPT, secrets, S_K_ENC, tLength, buffer, (short) (block + HEADER_BYTES), padded,
                secrets, S_KEY);
        for (short i = keyLength; i < padded; i++) {
            if (secrets[(short) (S_KEY + i)] != 0) {
                ISOException.throwIt(SW_INCORRECT_DATA);
            }
        }
        aes.kcv8(secrets, S_KEY, keyLength, secrets, S_CHECK);
        if (!AesEngine.equalInConstantTime(secrets, S_CHECK, buffer, sas, SAS_BYTES)) {
            triesLeft--;
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }

        // 9. Versions only move forward; the same version is accepted again only for the same key.
        short version = Util.getShort(buffer, (short) (block + HDR_VERSION));
        short current = Util.getShort(e, (short) (slot + ENTRY_VERSION));
        if (version == 0 || unsignedLess(version, current)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        if (version == current) {
            if (e[(short) (slot + ENTRY_STATE)] != ENTRY_LOADED
                    || !AesEngine.equalInConstantTime(secrets, S_CHECK, e, (short) (slot + ENTRY_KCV), KCV_BYTES)) {
                ISOException.throwIt(SW_INCORRECT_DATA);
            }
            return;
        }

        // 10. Store key, version, usage and KCV in one atomic step.
        short changed = entries.beginChange(index);
        e[(short) (changed + ENTRY_STATE)] = ENTRY_LOADED;
        Util.setShort(e, (short) (changed + ENTRY_VERSION), version);
        Util.arrayCopyNonAtomic(secrets, S_CHECK, e, (short) (changed + ENTRY_KCV), KCV_BYTES);
        Util.arrayCopyNonAtomic(secrets, S_KEY, e, (short) (changed + REC_KEY), keyLength);
        entries.commit(index);
        // 11. T1, K_enc, K_mac and the key are wiped by process() after every command.
    }

    private void internalAuthenticate(APDU apdu) {
        requireState(STATE_OPERATIONAL);
        byte[] buffer = apdu.getBuffer();
        short length = receiveData(apdu);
        if (length < 1 || length > MAX_AUTHENTICATE_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short index = findEntry(buffer[ISO7816.OFFSET_P2]);
        byte[] e = entries.bytes();
        short slot = index < 0 ? 0 : entries.current(index);
        if (index < 0 || e[(short) (slot + ENTRY_STATE)] != ENTRY_LOADED) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        if (e[(short) (slot + ENTRY_USAGE)] != USAGE_AUTHENTICATE) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        aes.cmac(e, (short) (slot + REC_KEY), e[(short) (slot + ENTRY_KEY_LENGTH)],
                buffer, apdu.getOffsetCdata(), length, buffer, (short) 0);
        apdu.setOutgoingAndSend((short) 0, BLOCK_BYTES);
    }
}
