package keyload.applet;

import static keyload.applet.Protocol.BLOCK_BYTES;
import static keyload.applet.Protocol.CAS_BYTES;
import static keyload.applet.Protocol.CHALLENGE_BYTES;
import static keyload.applet.Protocol.KDF_CONTEXT;
import static keyload.applet.Protocol.MAX_KEY_BYTES;
import static keyload.applet.Protocol.ROLE_EI;
import static keyload.applet.Protocol.SN_MAX_BYTES;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacard.security.KeyBuilder;

/**
 * Everything an applet keeps in RAM, in one place (SmartPGP's {@code Transients}): all of it
 * {@code CLEAR_ON_DESELECT}, all of it allocated at install. Every secret here (T1, K_enc, K_mac, the plain
 * application key, CMAC subkeys and chaining state, and the key objects derived keys are loaded into) is
 * wiped by {@link #wipe} in the {@code finally} of each applet's {@code process()}, whatever the outcome.
 * The EI's issued challenge R is the one value kept between commands (until used or deselected).
 */
public final class Transients {

    // ---------------------------------------------------------------- secrets
    /** T1 = KDF(T, SN). */
    static final short SECRET_T1 = 0;
    static final short SECRET_K_ENC = (short) (SECRET_T1 + MAX_KEY_BYTES);
    static final short SECRET_K_MAC = (short) (SECRET_K_ENC + MAX_KEY_BYTES);
    /** The plain application key (TA_unit), zero-padded to whole AES blocks. */
    static final short SECRET_KEY = (short) (SECRET_K_MAC + MAX_KEY_BYTES);
    /** The key a slot holds, read back for a same-version re-import (PROTOCOL.md §8 amendment 4). */
    static final short SECRET_STORED_KEY = (short) (SECRET_KEY + MAX_KEY_BYTES);
    /** A computed CAS or check value. */
    static final short SECRET_CHECK = (short) (SECRET_STORED_KEY + MAX_KEY_BYTES);
    static final short SECRETS_BYTES = (short) (SECRET_CHECK + CAS_BYTES);

    // ---------------------------------------------------------------- derivation context
    /** R || REF2, the context of K_enc and K_mac; then SN, the context of T1 and TA_unit. */
    static final short CONTEXT_R = 0;
    static final short CONTEXT_REF2 = (short) (CONTEXT_R + CHALLENGE_BYTES);
    static final short CONTEXT_SN = (short) (CONTEXT_REF2 + 1);
    static final short SESSION_CONTEXT_BYTES = CONTEXT_SN;
    static final short CONTEXT_BYTES = (short) (CONTEXT_SN + SN_MAX_BYTES);

    // ---------------------------------------------------------------- AesEngine working memory
    static final short WORK_SUBKEY = 0;
    static final short WORK_STATE = (short) (WORK_SUBKEY + BLOCK_BYTES);
    static final short WORK_LAST_BLOCK = (short) (WORK_STATE + BLOCK_BYTES);
    static final short WORK_KDF_OUT = (short) (WORK_LAST_BLOCK + BLOCK_BYTES);
    static final short WORK_KDF_IN = (short) (WORK_KDF_OUT + BLOCK_BYTES);
    /** The longest KDF context is R || REF2 (17 bytes); SN is at most 16. */
    static final short WORK_BYTES = (short) (WORK_KDF_IN + KDF_CONTEXT + SESSION_CONTEXT_BYTES);

    // ---------------------------------------------------------------- flags
    /** EI: a challenge was issued by GET CHALLENGE since the selection and not yet used. */
    static final short FLAG_CHALLENGE_ISSUED = 0;
    static final short FLAGS_COUNT = 1;

    final byte[] secrets;
    final byte[] context;
    final byte[] work;
    /** EI only: the challenge R issued by GET CHALLENGE. */
    final byte[] challenge;
    final boolean[] flags;
    /** Where derived keys (T1, K_enc, K_mac, TA_unit for its check value) are loaded for one operation. */
    final AESKey key128;
    /** Null on a card without AES-192. */
    final AESKey key192;
    final AESKey key256;

    Transients(byte role) {
        secrets = JCSystem.makeTransientByteArray(SECRETS_BYTES, JCSystem.CLEAR_ON_DESELECT);
        context = JCSystem.makeTransientByteArray(CONTEXT_BYTES, JCSystem.CLEAR_ON_DESELECT);
        work = JCSystem.makeTransientByteArray(WORK_BYTES, JCSystem.CLEAR_ON_DESELECT);
        challenge = role == ROLE_EI ? JCSystem.makeTransientByteArray(CHALLENGE_BYTES, JCSystem.CLEAR_ON_DESELECT)
                : null;
        flags = JCSystem.makeTransientBooleanArray(FLAGS_COUNT, JCSystem.CLEAR_ON_DESELECT);
        key128 = build(KeyBuilder.LENGTH_AES_128);
        AESKey optional;
        try {
            optional = build(KeyBuilder.LENGTH_AES_192);
        } catch (CryptoException e) {
            optional = null;
        }
        key192 = optional;
        key256 = build(KeyBuilder.LENGTH_AES_256);
    }

    private static AESKey build(short bits) {
        return (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, bits, false);
    }

    /** Zeroes every secret and clears every transient key object; the challenge stays. */
    void wipe() {
        Util.arrayFillNonAtomic(secrets, (short) 0, SECRETS_BYTES, (byte) 0);
        Util.arrayFillNonAtomic(context, (short) 0, CONTEXT_BYTES, (byte) 0);
        Util.arrayFillNonAtomic(work, (short) 0, WORK_BYTES, (byte) 0);
        key128.clearKey();
        if (key192 != null) {
            key192.clearKey();
        }
        key256.clearKey();
    }
}
