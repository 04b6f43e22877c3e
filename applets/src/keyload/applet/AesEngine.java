package keyload.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import javacardx.crypto.Cipher;

/**
 * AES-CMAC, the SP 800-108 KDF of PROTOCOL.md §2, key check values and AES-CBC, built on the plain AES
 * block cipher because many Java Card 3.0.4/3.0.5 cards have no ALG_AES_CMAC_128.
 *
 * <p>Keys arrive as bytes and are loaded into transient (CLEAR_ON_DESELECT) key objects only for the
 * duration of one call; every call clears its key object and its working memory before it returns, so no
 * key material outlives the operation in this class.
 */
final class AesEngine implements Protocol {

    private static final byte CMAC_RB = (byte) 0x87;
    private static final byte CMAC_PAD = (byte) 0x80;
    /** KDF input: 11 zero bytes, label, 00, L (2 bytes), counter, context (PROTOCOL.md §2). */
    private static final short KDF_LABEL = 11;
    private static final short KDF_LENGTH = 13;
    private static final short KDF_COUNTER = 15;
    private static final short KDF_CONTEXT = 16;
    private static final short KDF_MAX_CONTEXT = 33;

    // Working memory layout (transient).
    private static final short W_SUBKEY1 = 0;
    private static final short W_SUBKEY2 = 16;
    private static final short W_STATE = 32;
    private static final short W_BLOCK = 48;
    private static final short W_KDF_OUT = 64;
    private static final short W_KDF_IN = 80;
    private static final short WORK_BYTES = (short) (W_KDF_IN + KDF_CONTEXT + KDF_MAX_CONTEXT);

    private final AESKey key128;
    private final AESKey key192;
    private final AESKey key256;
    private final Cipher ecb;
    private final Cipher cbc;
    /** Subkeys, chaining state and KDF blocks: secret while a call runs, zero between calls. */
    private final byte[] work;

    AesEngine() {
        key128 = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, KeyBuilder.LENGTH_AES_128, false);
        key192 = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, KeyBuilder.LENGTH_AES_192, false);
        key256 = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT, KeyBuilder.LENGTH_AES_256, false);
        ecb = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
        work = JCSystem.makeTransientByteArray(WORK_BYTES, JCSystem.CLEAR_ON_DESELECT);
    }

    static boolean isAesKeyLength(short length) {
        return length == AES_128_BYTES || length == AES_192_BYTES || length == AES_256_BYTES;
    }

    /** Bytes a key of {@code keyLength} takes once zero-padded to whole AES blocks. */
    static short paddedLength(short keyLength) {
        return (short) ((short) (keyLength + BLOCK_BYTES - 1) & (short) ~(BLOCK_BYTES - 1));
    }

    /** Compares in time that does not depend on where the first difference is. */
    static boolean equalInConstantTime(byte[] a, short aOffset, byte[] b, short bOffset, short length) {
        byte difference = 0;
        for (short i = 0; i < length; i++) {
            difference = (byte) (difference | (a[(short) (aOffset + i)] ^ b[(short) (bOffset + i)]));
        }
        return difference == 0;
    }

    /** out = AES-CMAC(key, message), 16 bytes (NIST SP 800-38B). */
    void cmac(byte[] key, short keyOffset, short keyLength,
              byte[] message, short messageOffset, short messageLength,
              byte[] out, short outOffset) {
        AESKey aes = load(key, keyOffset, keyLength);
        ecb.init(aes, Cipher.MODE_ENCRYPT);
        // Subkeys: L = AES(0), K1 = dbl(L), K2 = dbl(K1).
        Util.arrayFillNonAtomic(work, W_STATE, BLOCK_BYTES, (byte) 0);
        ecb.doFinal(work, W_STATE, BLOCK_BYTES, work, W_STATE);
        doubleInGf128(W_STATE, W_SUBKEY1);
        doubleInGf128(W_SUBKEY1, W_SUBKEY2);
        Util.arrayFillNonAtomic(work, W_STATE, BLOCK_BYTES, (byte) 0);

        short fullBlocksBeforeLast = messageLength == 0 ? 0 : (short) ((short) (messageLength - 1) / BLOCK_BYTES);
        short offset = messageOffset;
        for (short i = 0; i < fullBlocksBeforeLast; i++) {
            xorInto(message, offset, W_STATE);
            ecb.doFinal(work, W_STATE, BLOCK_BYTES, work, W_STATE);
            offset += BLOCK_BYTES;
        }
        short lastLength = (short) (messageLength - (short) (fullBlocksBeforeLast * BLOCK_BYTES));
        Util.arrayFillNonAtomic(work, W_BLOCK, BLOCK_BYTES, (byte) 0);
        Util.arrayCopyNonAtomic(message, offset, work, W_BLOCK, lastLength);
        if (lastLength == BLOCK_BYTES) {
            xorInto(work, W_SUBKEY1, W_BLOCK);
        } else {
            work[(short) (W_BLOCK + lastLength)] = CMAC_PAD;
            xorInto(work, W_SUBKEY2, W_BLOCK);
        }
        xorInto(work, W_BLOCK, W_STATE);
        ecb.doFinal(work, W_STATE, BLOCK_BYTES, out, outOffset);

        Util.arrayFillNonAtomic(work, W_SUBKEY1, (short) (W_BLOCK + BLOCK_BYTES), (byte) 0);
        aes.clearKey();
    }

    /**
     * out = KDF(key, label, 8*outLength, context): SP 800-108 counter mode with AES-CMAC and the SCP03
     * input layout (PROTOCOL.md §2). {@code out} may not overlap this engine's memory.
     */
    void kdf(byte[] key, short keyOffset, short keyLength, byte label,
             byte[] context, short contextOffset, short contextLength,
             byte[] out, short outOffset, short outLength) {
        Util.arrayFillNonAtomic(work, W_KDF_IN, KDF_CONTEXT, (byte) 0);
        work[(short) (W_KDF_IN + KDF_LABEL)] = label;
        Util.setShort(work, (short) (W_KDF_IN + KDF_LENGTH), (short) (outLength * 8));
        Util.arrayCopyNonAtomic(context, contextOffset, work, (short) (W_KDF_IN + KDF_CONTEXT), contextLength);
        short inputLength = (short) (KDF_CONTEXT + contextLength);
        byte counter = 1;
        for (short done = 0; done < outLength; done += BLOCK_BYTES) {
            work[(short) (W_KDF_IN + KDF_COUNTER)] = counter++;
            cmac(key, keyOffset, keyLength, work, W_KDF_IN, inputLength, work, W_KDF_OUT);
            short take = (short) (outLength - done) < BLOCK_BYTES ? (short) (outLength - done) : BLOCK_BYTES;
            Util.arrayCopyNonAtomic(work, W_KDF_OUT, out, (short) (outOffset + done), take);
        }
        Util.arrayFillNonAtomic(work, W_KDF_OUT, (short) (WORK_BYTES - W_KDF_OUT), (byte) 0);
    }

    /** out = KCV8(key): the leftmost 8 bytes of AES-CMAC(key, 16 zero bytes). */
    void kcv8(byte[] key, short keyOffset, short keyLength, byte[] out, short outOffset) {
        Util.arrayFillNonAtomic(work, W_KDF_IN, BLOCK_BYTES, (byte) 0);
        cmac(key, keyOffset, keyLength, work, W_KDF_IN, BLOCK_BYTES, work, W_KDF_OUT);
        Util.arrayCopyNonAtomic(work, W_KDF_OUT, out, outOffset, SAS_BYTES);
        Util.arrayFillNonAtomic(work, W_KDF_OUT, BLOCK_BYTES, (byte) 0);
    }

    /** AES-CBC with a zero IV over whole blocks, encrypting ({@code Cipher.MODE_ENCRYPT}) or decrypting. */
    void cbc(byte mode, byte[] key, short keyOffset, short keyLength,
             byte[] in, short inOffset, short length, byte[] out, short outOffset) {
        AESKey aes = load(key, keyOffset, keyLength);
        cbc.init(aes, mode);
        cbc.doFinal(in, inOffset, length, out, outOffset);
        aes.clearKey();
    }

    /** Clears every key object and the working memory: called after each command, whatever happened. */
    void wipe() {
        key128.clearKey();
        key192.clearKey();
        key256.clearKey();
        Util.arrayFillNonAtomic(work, (short) 0, WORK_BYTES, (byte) 0);
    }

    private AESKey load(byte[] key, short keyOffset, short keyLength) {
        AESKey aes = keyLength == AES_128_BYTES ? key128 : keyLength == AES_192_BYTES ? key192 : key256;
        aes.setKey(key, keyOffset);
        return aes;
    }

    /** work[to] = work[from] * x in GF(2^128), the CMAC subkey step. */
    private void doubleInGf128(short from, short to) {
        byte carry = 0;
        for (short i = (short) (BLOCK_BYTES - 1); i >= 0; i--) {
            byte b = work[(short) (from + i)];
            work[(short) (to + i)] = (byte) ((b << 1) | carry);
            carry = (byte) ((b >> 7) & 1);
        }
        if (carry != 0) {
            work[(short) (to + BLOCK_BYTES - 1)] ^= CMAC_RB;
        }
    }

    /** work[to .. to+16) ^= source[from .. from+16). */
    private void xorInto(byte[] source, short from, short to) {
        for (short i = 0; i < BLOCK_BYTES; i++) {
            work[(short) (to + i)] ^= source[(short) (from + i)];
        }
    }
}
