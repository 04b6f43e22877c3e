package keyload.applet;

import static keyload.applet.Persistent.RECORD_KEY;
import static keyload.applet.Persistent.SETTINGS_SN;
import static keyload.applet.Persistent.SETTINGS_SN_LENGTH;
import static keyload.applet.Protocol.*;
import static keyload.applet.Transients.CONTEXT_R;
import static keyload.applet.Transients.CONTEXT_REF2;
import static keyload.applet.Transients.FLAG_CHALLENGE_ISSUED;
import static keyload.applet.Transients.SECRET_CHECK;
import static keyload.applet.Transients.SECRET_KEY;
import static keyload.applet.Transients.SECRET_K_ENC;
import static keyload.applet.Transients.SECRET_K_MAC;
import static keyload.applet.Transients.SECRET_STORED_KEY;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;

/**
 * A terminal security module (EI): receives application keys from the AS as key blocks bound to its
 * serial and to a challenge it issued, verifies them before decrypting, and stores them in slots.
 *
 * <p>The import retry counter is the EI's only defence against a brute-forced MAC, so it is spent before
 * the check and given back only after a good one; the card is BLOCKED whenever it reads zero or less,
 * including after a power cut in the middle of a check. A BLOCKED EI keeps serving the keys it holds
 * (PROTOCOL.md §8 amendment 1).
 *
 * <p>Every instruction is in the one {@code switch} of {@link #process}; what both roles share is in
 * {@link Common}, the persistent state in {@link Persistent}, the transient state in {@link Transients}.
 */
public final class EiApplet extends Applet {

    /** DEFINE SLOT data: REF2, key length, usage, flags. */
    private static final short DEFINE_SLOT_REF = 0;
    private static final short DEFINE_SLOT_KEY_LENGTH = 1;
    private static final short DEFINE_SLOT_USAGE = 2;
    private static final short DEFINE_SLOT_FLAGS = 3;
    private static final short DEFINE_SLOT_BYTES = 4;

    private final Common common;
    private final Persistent persistent;
    private final Transients transients;
    private final AesEngine aes;
    private final RandomData random;

    /**
     * ALG_SECURE_RANDOM and generateData are deprecated since Java Card 3.0.5 but are what 3.0.4 cards
     * have; their 3.0.5 successors (ALG_TRNG, nextBytes) would exclude those cards.
     */
    @SuppressWarnings("deprecation")
    private EiApplet() {
        common = new Common(ROLE_EI);
        persistent = common.persistent;
        transients = common.transients;
        aes = common.aes;
        random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
    }

    /** Java Card entry point: creates and registers the applet under the AID of the install command. */
    public static void install(byte[] parameters, short offset, byte length) {
        new EiApplet().register(parameters, (short) (offset + 1), parameters[offset]);
    }

    /** Every command of the EI, checked in the order of PROTOCOL.md §4.1, then run. */
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
                case INS_SET_SERIAL:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    setSerial(apdu);
                    return;
                case INS_DEFINE_SLOT:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    defineSlot(apdu);
                    return;
                case INS_SET_RETRY_LIMIT:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    setRetryLimit(apdu);
                    return;
                case INS_LOCK:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    common.lock(apdu, persistent.serialLength() != 0 && common.entryCount() > 0);
                    return;
                case INS_GET_CHALLENGE:
                    Common.checkHeader(buffer, CLA_ISO, (byte) 0, (byte) 0);
                    getChallenge(apdu);
                    return;
                case INS_IMPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    importKey(apdu);
                    return;
                case INS_IMPORT_TRANSPORT_KEY:
                    Common.checkHeader(buffer, CLA_KEYLOAD, (byte) 0, (byte) 0);
                    importTransportKey(apdu);
                    return;
                case INS_INTERNAL_AUTHENTICATE:
                    // P2 is the slot.
                    Common.checkCla(buffer, CLA_ISO);
                    if (buffer[ISO7816.OFFSET_P1] != 0 || !Common.isReference(buffer[ISO7816.OFFSET_P2])) {
                        ISOException.throwIt(SW_INCORRECT_P1P2);
                    }
                    internalAuthenticate(apdu);
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

    /** The life cycle as reported: SETUP, OPERATIONAL, or BLOCKED when no try is left (zero or less). */
    private byte state() {
        byte stored = persistent.lifeCycle;
        return stored == STATE_OPERATIONAL && persistent.triesLeft <= 0 ? STATE_BLOCKED : stored;
    }

    private void sendInfo(APDU apdu) {
        byte left = persistent.triesLeft;
        common.sendInfo(apdu, state(), left < 0 ? 0 : left, persistent.retryLimit);
    }

    private void setSerial(APDU apdu) {
        common.requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        if (length < SN_MIN_BYTES || length > SN_MAX_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        RecordStore settings = persistent.settings;
        byte[] s = settings.bytes();
        short record = settings.beginChange((short) 0);
        s[(short) (record + SETTINGS_SN_LENGTH)] = (byte) length;
        Util.arrayFillNonAtomic(s, (short) (record + SETTINGS_SN), SN_MAX_BYTES, (byte) 0);
        Util.arrayCopyNonAtomic(buffer, apdu.getOffsetCdata(), s, (short) (record + SETTINGS_SN), length);
        settings.commit((short) 0);
    }

    private void defineSlot(APDU apdu) {
        common.requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        if (Common.receiveData(apdu) != DEFINE_SLOT_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short data = apdu.getOffsetCdata();
        byte ref = buffer[(short) (data + DEFINE_SLOT_REF)];
        byte keyLength = buffer[(short) (data + DEFINE_SLOT_KEY_LENGTH)];
        byte usage = buffer[(short) (data + DEFINE_SLOT_USAGE)];
        byte flags = buffer[(short) (data + DEFINE_SLOT_FLAGS)];
        if (!Common.isReference(ref) || !AesEngine.isAesKeyLength(keyLength) || !Common.isUsage(usage)
                || (byte) (flags & ~FLAGS_DEFINED) != 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short index = common.entryForDefinition(ref);
        common.requireSupported(keyLength);

        byte[] e = persistent.entries.bytes();
        short record = common.beginEntry(index);
        e[(short) (record + ENTRY_REF)] = ref;
        e[(short) (record + ENTRY_STATE)] = ENTRY_EMPTY;
        e[(short) (record + ENTRY_KEY_LENGTH)] = keyLength;
        e[(short) (record + ENTRY_USAGE)] = usage;
        e[(short) (record + ENTRY_FLAGS)] = flags;
        common.commitEntry(index);
    }

    private void setRetryLimit(APDU apdu) {
        common.requireState(STATE_SETUP);
        byte[] buffer = apdu.getBuffer();
        if (Common.receiveData(apdu) != 1) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        byte limit = buffer[apdu.getOffsetCdata()];
        if (limit < 1 || limit > RETRY_LIMIT_MAX) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        JCSystem.beginTransaction();
        persistent.retryLimit = limit;
        persistent.triesLeft = limit;
        JCSystem.commitTransaction();
    }

    /**
     * OPERATIONAL with a try left, else 6983 (BLOCKED) or 6985: what GET CHALLENGE and IMPORT KEY need.
     * Each condition is checked twice.
     */
    private void requireImportable() {
        if (state() == STATE_BLOCKED) {
            ISOException.throwIt(SW_BLOCKED);
        }
        common.requireState(STATE_OPERATIONAL);
        if (persistent.triesLeft <= 0) {
            ISOException.throwIt(SW_BLOCKED);
        }
    }

    @SuppressWarnings("deprecation")
    private void getChallenge(APDU apdu) {
        requireImportable();
        short expected = apdu.setOutgoing();
        if (expected != CHALLENGE_BYTES && expected != LE_ANY) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        random.generateData(transients.challenge, (short) 0, CHALLENGE_BYTES);
        transients.flags[FLAG_CHALLENGE_ISSUED] = true;
        apdu.setOutgoingLength(CHALLENGE_BYTES);
        apdu.sendBytesLong(transients.challenge, (short) 0, CHALLENGE_BYTES);
    }

    /** 63Cx with x the tries left (0 for a counter a fault drove below zero). */
    private short triesStatus() {
        byte left = persistent.triesLeft;
        return (short) (SW_VERIFICATION_FAILED | (left < 0 ? 0 : left));
    }

    /** Spends one try, never below zero. */
    private void spendTry() {
        byte left = persistent.triesLeft;
        persistent.triesLeft = left <= 0 ? 0 : (byte) (left - 1);
    }

    /** IMPORT KEY: PROTOCOL.md §4.3 in its order, with §8 amendment 4. */
    private void importKey(APDU apdu) {
        // 1. OPERATIONAL, not BLOCKED.
        requireImportable();
        // 2. Take the challenge: it is spent whatever happens next.
        takeChallenge();

        // 3. Shape of the block.
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
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

        // 4.-6. Spend a try, check the CAS, give the try back.
        byte[] secrets = transients.secrets;
        byte ref2 = buffer[(short) (block + HDR_REF2)];
        short casVerdict = checkCas(buffer, block, cas, ref2);

        // 7. The slot.
        short index = common.findEntry(ref2);
        if (index < 0) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        byte[] e = persistent.entries.bytes();
        short slot = persistent.entries.current(index);
        if (e[(short) (slot + ENTRY_REF)] != ref2) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND); // the search looked again: a skipped compare in it
        }
        if ((byte) (e[(short) (slot + ENTRY_FLAGS)] & FLAG_ACCEPTS_IMPORT) == 0) {
            ISOException.throwIt(SW_COMMAND_NOT_ALLOWED);
        }
        if (e[(short) (slot + ENTRY_KEY_LENGTH)] != keyLength
                || e[(short) (slot + ENTRY_USAGE)] != buffer[(short) (block + HDR_USAGE)]) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }

        // 8. Decrypt (after a second look at the CAS verdict), then check padding and SAS.
        short keyVerdict = decryptCheckingSas(buffer, block, padded, keyLength, sas, casVerdict);

        // 9. Versions only move forward; the same version is accepted again only for the same key, compared
        //    whole and in constant time (§8 amendment 4).
        short version = Util.getShort(buffer, (short) (block + HDR_VERSION));
        short current = Util.getShort(e, (short) (slot + ENTRY_VERSION));
        if (version == 0 || Common.unsignedLess(version, current)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        if (version == current) {
            if (e[(short) (slot + ENTRY_STATE)] != ENTRY_LOADED) {
                ISOException.throwIt(SW_INCORRECT_DATA);
            }
            persistent.entryKey(slot).getKey(secrets, SECRET_STORED_KEY);
            if (AesEngine.difference(secrets, SECRET_KEY, secrets, SECRET_STORED_KEY, keyLength) != 0) {
                ISOException.throwIt(SW_INCORRECT_DATA);
            }
            return;
        }

        // 10. Every decision once more before the store, in another form: one skipped branch above does not
        //     store a key.
        if ((short) (casVerdict | keyVerdict) != 0) {
            spendTry();
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        if ((byte) (e[(short) (slot + ENTRY_FLAGS)] & FLAG_ACCEPTS_IMPORT) != FLAG_ACCEPTS_IMPORT) {
            ISOException.throwIt(SW_COMMAND_NOT_ALLOWED);
        }
        if ((short) (version ^ (short) 0x8000) <= (short) (current ^ (short) 0x8000)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        // The key into a key object no record names, then the slot record naming it: old or new, whole.
        byte handle = persistent.storeKey(secrets, SECRET_KEY, keyLength);
        short changed = persistent.entries.beginChange(index);
        e[(short) (changed + ENTRY_STATE)] = ENTRY_LOADED;
        Util.setShort(e, (short) (changed + ENTRY_VERSION), version);
        Util.arrayCopyNonAtomic(secrets, SECRET_CHECK, e, (short) (changed + ENTRY_KCV), KCV_BYTES);
        e[(short) (changed + RECORD_KEY)] = handle;
        common.commitEntry(index);
        // 11. T1, K_enc, K_mac and the key are wiped by process() after every command.
    }

    /** §4.3 step 2: R into the derivation context, spent whatever happens next; 6985 when none was issued. */
    private void takeChallenge() {
        if (!transients.flags[FLAG_CHALLENGE_ISSUED]) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        Util.arrayCopyNonAtomic(transients.challenge, (short) 0, transients.context, CONTEXT_R, CHALLENGE_BYTES);
        transients.flags[FLAG_CHALLENGE_ISSUED] = false;
        Util.arrayFillNonAtomic(transients.challenge, (short) 0, CHALLENGE_BYTES, (byte) 0);
    }

    /**
     * §4.3 steps 4 to 6 for the block at {@code block} whose CAS is at {@code cas}: spends a try (a second
     * look at the counter: a skipped BLOCKED check stops here), derives T1, K_enc and K_mac from T, SN, R and
     * {@code ref2}, compares the CAS in constant time (63Cx when it differs: nothing is decrypted), and gives
     * the try back (written only when it changed). Returns the CAS verdict (0), for the caller's second look.
     */
    private short checkCas(byte[] buffer, short block, short cas, byte ref2) {
        byte triesBefore = persistent.triesLeft;
        if (triesBefore <= 0) {
            ISOException.throwIt(SW_BLOCKED);
        }
        persistent.triesLeft = (byte) (triesBefore - 1);

        byte[] secrets = transients.secrets;
        transients.context[CONTEXT_REF2] = ref2;
        byte[] s = persistent.settings.bytes();
        short settings = persistent.settings.current((short) 0);
        common.deriveOperationKeys(s, (short) (settings + SETTINGS_SN), s[(short) (settings + SETTINGS_SN_LENGTH)]);
        short tLength = persistent.transportKeyLength();
        aes.cmac(aes.load(secrets, SECRET_K_MAC, tLength), buffer, block, (short) (cas - block), secrets, SECRET_CHECK);
        short casVerdict = AesEngine.difference(secrets, SECRET_CHECK, buffer, cas, CAS_BYTES);
        if (casVerdict != 0) {
            ISOException.throwIt(triesStatus());
        }
        if (casVerdict == 0 && persistent.triesLeft != persistent.retryLimit) {
            persistent.triesLeft = persistent.retryLimit;
        }
        return casVerdict;
    }

    /**
     * Step 8 of IMPORT KEY and IMPORT TRANSPORT KEY (PROTOCOL.md §4.3, §9): a second look at the CAS
     * verdict, then the key decrypted under K_enc into SECRET_KEY; its padding must be zero (6A80) and its
     * KCV8 equal SAS, compared in constant time (6982, and the try counts as failed). Returns the padding
     * and SAS verdicts together (0), for the caller's look at every decision before the store.
     */
    private short decryptCheckingSas(byte[] buffer, short block, short padded, short keyLength, short sas,
                                     short casVerdict) {
        if (casVerdict != 0) {
            ISOException.throwIt(triesStatus());
        }
        byte[] secrets = transients.secrets;
        aes.cbc(aes.load(secrets, SECRET_K_ENC, persistent.transportKeyLength()), Cipher.MODE_DECRYPT, buffer,
                (short) (block + HEADER_BYTES), padded, secrets, SECRET_KEY);
        short paddingVerdict = 0;
        for (short i = keyLength; i < padded; i++) {
            paddingVerdict = (short) (paddingVerdict | secrets[(short) (SECRET_KEY + i)]);
        }
        if (paddingVerdict != 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        aes.kcv8(aes.load(secrets, SECRET_KEY, keyLength), secrets, SECRET_CHECK);
        short sasVerdict = AesEngine.difference(secrets, SECRET_CHECK, buffer, sas, SAS_BYTES);
        if (sasVerdict != 0) {
            spendTry();
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        return (short) (paddingVerdict | sasVerdict);
    }

    /**
     * IMPORT TRANSPORT KEY (PROTOCOL.md §9): a block of format 02 made by the AS's EXPORT TRANSPORT KEY for
     * this EI's serial and challenge under keys derived from the current T with REF2 = 00; IMPORT KEY's
     * order, retry counter and checks, then the new T replaces T in one commit (old T or new T, whole,
     * wherever a cut falls). The slots and their keys do not depend on T and stay as they are.
     */
    private void importTransportKey(APDU apdu) {
        // 1. OPERATIONAL, not BLOCKED. 2. The challenge is spent now.
        requireImportable();
        takeChallenge();

        // 3. Shape: format 02, the fields an application key has set to 00, an AES key length.
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short block = apdu.getOffsetCdata();
        if (length < HEADER_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short keyLength = buffer[(short) (block + HDR_KEY_LENGTH)];
        short unused = (short) (buffer[(short) (block + HDR_REF2)] | buffer[(short) (block + HDR_USAGE)]
                | buffer[(short) (block + HDR_FLAGS)] | buffer[(short) (block + HDR_REF1)]);
        if (buffer[(short) (block + HDR_FORMAT)] != TRANSPORT_BLOCK_FORMAT || unused != 0
                || !AesEngine.isAesKeyLength(keyLength)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        short padded = AesEngine.paddedLength(keyLength);
        short sas = (short) (block + HEADER_BYTES + padded);
        short cas = (short) (sas + SAS_BYTES);
        if (length != (short) (HEADER_BYTES + padded + SAS_BYTES + CAS_BYTES)) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }

        // 4.-6. Spend a try, check the CAS under keys from the current T with REF2 = 00, give the try back.
        short casVerdict = checkCas(buffer, block, cas, REF_NONE);

        // 7. The new T is at least as long as T (6A80) and of a length this card holds (6A81).
        short tLength = persistent.transportKeyLength();
        if (keyLength < tLength) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        common.requireSupported(keyLength);

        // 8. Decrypt (after a second look at the CAS verdict), then check padding and SAS.
        short keyVerdict = decryptCheckingSas(buffer, block, padded, keyLength, sas, casVerdict);
        byte[] secrets = transients.secrets;

        // 9. The version only moves forward: equal or lower is refused.
        short version = Util.getShort(buffer, (short) (block + HDR_VERSION));
        short current = persistent.transportKeyVersion();
        if (!Common.unsignedLess(current, version)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }

        // 10. Every decision once more, in another form, before the store; then the new T into a key object
        //     no record names, and the settings record naming it, committed by one byte.
        if ((short) (casVerdict | keyVerdict | unused) != 0) {
            spendTry();
            ISOException.throwIt(SW_SECURITY_STATUS_NOT_SATISFIED);
        }
        if ((short) (version ^ (short) 0x8000) <= (short) (current ^ (short) 0x8000)
                || (byte) (buffer[(short) (block + HDR_FORMAT)] ^ TRANSPORT_BLOCK_FORMAT) != 0
                || (short) (persistent.transportKeyLength() - keyLength) > 0) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        byte handle = persistent.storeKey(secrets, SECRET_KEY, keyLength);
        common.replaceTransportKey(keyLength, handle, secrets, SECRET_CHECK, version);
        // 11. T1, K_enc, K_mac and the new T are wiped by process() after every command.
    }

    /**
     * INTERNAL AUTHENTICATE: AES-CMAC under the slot's key. Served by a BLOCKED EI too (§8 amendment 1).
     * Input laid out as a KDF block of PROTOCOL.md §2 is refused with 6A80 ({@link #isKdfInput}): it
     * would let a caller compute KDF(TA, 0x20, SN') = TA_unit of another unit from an undiversified slot
     * key (docs/PROTOCOL.md §7).
     */
    private void internalAuthenticate(APDU apdu) {
        common.requireState(STATE_OPERATIONAL);
        byte[] buffer = apdu.getBuffer();
        short length = Common.receiveData(apdu);
        short data = apdu.getOffsetCdata();
        if (length < 1 || length > MAX_AUTHENTICATE_BYTES) {
            ISOException.throwIt(SW_WRONG_LENGTH);
        }
        short index = common.findEntry(buffer[ISO7816.OFFSET_P2]);
        byte[] e = persistent.entries.bytes();
        short slot = index < 0 ? 0 : persistent.entries.current(index);
        if (index < 0 || e[(short) (slot + ENTRY_STATE)] != ENTRY_LOADED) {
            ISOException.throwIt(SW_REFERENCE_NOT_FOUND);
        }
        if (e[(short) (slot + ENTRY_USAGE)] != USAGE_AUTHENTICATE) {
            ISOException.throwIt(SW_CONDITIONS_NOT_SATISFIED);
        }
        if (length >= KDF_CONTEXT && isKdfInput(buffer, data)) {
            ISOException.throwIt(SW_INCORRECT_DATA);
        }
        AESKey key = persistent.entryKey(slot);
        aes.cmac(key, buffer, data, length, buffer, (short) 0);
        apdu.setOutgoingAndSend((short) 0, BLOCK_BYTES);
    }

    /**
     * Whether the 16 bytes at {@code offset} are the fixed part of a KDF input block (PROTOCOL.md §2): 11
     * zero bytes, one of keyload's labels, 00, an output length of 128, 192 or 256 bits, any counter.
     */
    private static boolean isKdfInput(byte[] buffer, short offset) {
        short zeros = 0;
        for (short i = 0; i < KDF_LABEL; i++) {
            zeros = (short) (zeros | buffer[(short) (offset + i)]);
        }
        byte label = buffer[(short) (offset + KDF_LABEL)];
        short bits = Util.getShort(buffer, (short) (offset + KDF_LENGTH));
        return zeros == 0 && buffer[(short) (offset + KDF_SEPARATOR)] == 0
                && (label == LABEL_T1 || label == LABEL_K_ENC || label == LABEL_K_MAC || label == LABEL_UNIT)
                && (bits == (short) (AES_128_BYTES * 8) || bits == (short) (AES_192_BYTES * 8)
                || bits == (short) (AES_256_BYTES * 8));
    }
}
