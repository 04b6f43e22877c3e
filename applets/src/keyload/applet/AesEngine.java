package keyload.applet;

import static keyload.applet.Protocol.AES_128_BYTES;
import static keyload.applet.Protocol.AES_192_BYTES;
import static keyload.applet.Protocol.AES_256_BYTES;
import static keyload.applet.Protocol.BLOCK_BYTES;
import static keyload.applet.Protocol.KDF_CONTEXT;
import static keyload.applet.Protocol.KDF_COUNTER;
import static keyload.applet.Protocol.KDF_LABEL;
import static keyload.applet.Protocol.KDF_LENGTH;
import static keyload.applet.Protocol.SAS_BYTES;
import static keyload.applet.Transients.WORK_KDF_IN;
import static keyload.applet.Transients.WORK_KDF_OUT;
import static keyload.applet.Transients.WORK_LAST_BLOCK;
import static keyload.applet.Transients.WORK_STATE;
import static keyload.applet.Transients.WORK_SUBKEY;

import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacardx.crypto.Cipher;

/**
 * AES-CMAC, the SP 800-108 KDF of PROTOCOL.md §2, key check values and AES-CBC over key objects.
 *
 * <p>{@code Signature.ALG_AES_CMAC_128} first appears in the Java Card 3.0.5 API (a 3.0.4 CAP cannot use
 * it) and many 3.0.5 cards lack it, so CMAC (NIST SP 800-38B) is built here, on the platform's own AES: the subkey L = AES_K(0) by {@code ALG_AES_BLOCK_128_ECB_NOPAD},
 * the chaining of every block by {@code ALG_AES_BLOCK_128_CBC_NOPAD} (the chaining state stays inside the
 * cipher). What runs as bytecode is the subkey doubling and one XOR of the last block with it, both
 * without a branch on secret data. Long-lived keys are persistent key objects ({@link KeyPool}); derived
 * keys are loaded into the transient key objects of {@link Transients} for one operation.
 */
public final class AesEngine {

    private static final byte CMAC_RB = (byte) 0x87;
    private static final byte CMAC_PAD = (byte) 0x80;

    private final Transients transients;
    private final byte[] work;
    private final Cipher ecb;
    private final Cipher cbc;

    AesEngine(Transients transients) {
        this.transients = transients;
        work = transients.work;
        ecb = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_ECB_NOPAD, false);
        cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
    }

    static boolean isAesKeyLength(short length) {
        return length == AES_128_BYTES || length == AES_192_BYTES || length == AES_256_BYTES;
    }

    /** Bytes a key of {@code keyLength} takes once zero-padded to whole AES blocks. */
    static short paddedLength(short keyLength) {
        return (short) ((short) (keyLength + BLOCK_BYTES - 1) & (short) ~(BLOCK_BYTES - 1));
    }

    /**
     * Zero when the two ranges are equal, non-zero otherwise, in time that does not depend on the data:
     * no branch on it. A loop cut short by a fault leaves the index short of {@code length}, which makes
     * the answer non-zero too (a skipped comparison never reads as "equal").
     */
    static short difference(byte[] a, short aOffset, byte[] b, short bOffset, short length) {
        short difference = 0;
        short i = 0;
        for (; i < length; i++) {
            difference = (short) (difference | (byte) (a[(short) (aOffset + i)] ^ b[(short) (bOffset + i)]));
        }
        return (short) (difference | (short) (i ^ length));
    }

    /** A transient key object holding {@code length} bytes of {@code key}, for one operation. */
    AESKey load(byte[] key, short offset, short length) {
        AESKey object = length == AES_128_BYTES ? transients.key128
                : length == AES_192_BYTES ? transients.key192 : transients.key256;
        object.setKey(key, offset);
        return object;
    }

    /** out = AES-CMAC(key, message), 16 bytes (NIST SP 800-38B). */
    void cmac(AESKey key, byte[] message, short messageOffset, short messageLength, byte[] out, short outOffset) {
        // L = AES(0); K1 = dbl(L) for a whole last block, K2 = dbl(K1) for a padded one.
        ecb.init(key, Cipher.MODE_ENCRYPT);
        Util.arrayFillNonAtomic(work, WORK_SUBKEY, BLOCK_BYTES, (byte) 0);
        ecb.doFinal(work, WORK_SUBKEY, BLOCK_BYTES, work, WORK_SUBKEY);
        doubleInGf128();
        short blocksBeforeLast = messageLength == 0 ? 0 : (short) ((short) (messageLength - 1) / BLOCK_BYTES);
        short lastLength = (short) (messageLength - (short) (blocksBeforeLast * BLOCK_BYTES));
        Util.arrayFillNonAtomic(work, WORK_LAST_BLOCK, BLOCK_BYTES, (byte) 0);
        Util.arrayCopyNonAtomic(message, (short) (messageOffset + blocksBeforeLast * BLOCK_BYTES), work,
                WORK_LAST_BLOCK, lastLength);
        if (lastLength != BLOCK_BYTES) {
            work[(short) (WORK_LAST_BLOCK + lastLength)] = CMAC_PAD;
            doubleInGf128();
        }
        for (short i = 0; i < BLOCK_BYTES; i++) {
            work[(short) (WORK_LAST_BLOCK + i)] ^= work[(short) (WORK_SUBKEY + i)];
        }
        // CBC with a zero IV over every block; the last one, XORed with the subkey, gives the MAC.
        cbc.init(key, Cipher.MODE_ENCRYPT);
        short offset = messageOffset;
        for (short i = 0; i < blocksBeforeLast; i++) {
            cbc.update(message, offset, BLOCK_BYTES, work, WORK_STATE);
            offset += BLOCK_BYTES;
        }
        cbc.doFinal(work, WORK_LAST_BLOCK, BLOCK_BYTES, out, outOffset);
        Util.arrayFillNonAtomic(work, WORK_SUBKEY, (short) (WORK_LAST_BLOCK + BLOCK_BYTES), (byte) 0);
    }

    /**
     * out = KDF(key, label, 8*outLength, context): SP 800-108 counter mode with AES-CMAC and the SCP03
     * input layout (PROTOCOL.md §2). {@code out} may not overlap this engine's memory.
     */
    void kdf(AESKey key, byte label, byte[] context, short contextOffset, short contextLength,
             byte[] out, short outOffset, short outLength) {
        Util.arrayFillNonAtomic(work, WORK_KDF_IN, KDF_CONTEXT, (byte) 0);
        work[(short) (WORK_KDF_IN + KDF_LABEL)] = label;
        Util.setShort(work, (short) (WORK_KDF_IN + KDF_LENGTH), (short) (outLength * 8));
        Util.arrayCopyNonAtomic(context, contextOffset, work, (short) (WORK_KDF_IN + KDF_CONTEXT), contextLength);
        short inputLength = (short) (KDF_CONTEXT + contextLength);
        byte counter = 1;
        short done = 0;
        for (; done < outLength; done += BLOCK_BYTES) {
            work[(short) (WORK_KDF_IN + KDF_COUNTER)] = counter++;
            cmac(key, work, WORK_KDF_IN, inputLength, work, WORK_KDF_OUT);
            short take = (short) (outLength - done) < BLOCK_BYTES ? (short) (outLength - done) : BLOCK_BYTES;
            Util.arrayCopyNonAtomic(work, WORK_KDF_OUT, out, (short) (outOffset + done), take);
        }
        Util.arrayFillNonAtomic(work, WORK_KDF_OUT, (short) (work.length - WORK_KDF_OUT), (byte) 0);
        // A loop cut short would leave the output as memory held it (zeros: a key everyone knows).
        if ((short) (done - outLength) < 0 || (short) (counter - 1) != (short) ((short) (outLength + BLOCK_BYTES - 1)
                / BLOCK_BYTES)) {
            ISOException.throwIt(ISO7816.SW_UNKNOWN);
        }
    }

    /** out = KCV8(key): the leftmost 8 bytes of AES-CMAC(key, 16 zero bytes). */
    void kcv8(AESKey key, byte[] out, short outOffset) {
        Util.arrayFillNonAtomic(work, WORK_KDF_IN, BLOCK_BYTES, (byte) 0);
        cmac(key, work, WORK_KDF_IN, BLOCK_BYTES, work, WORK_KDF_OUT);
        Util.arrayCopyNonAtomic(work, WORK_KDF_OUT, out, outOffset, SAS_BYTES);
        Util.arrayFillNonAtomic(work, WORK_KDF_OUT, BLOCK_BYTES, (byte) 0);
    }

    /** AES-CBC with a zero IV over whole blocks, encrypting ({@code Cipher.MODE_ENCRYPT}) or decrypting. */
    void cbc(AESKey key, byte mode, byte[] in, short inOffset, short length, byte[] out, short outOffset) {
        cbc.init(key, mode);
        cbc.doFinal(in, inOffset, length, out, outOffset);
    }

    /**
     * work[SUBKEY] = work[SUBKEY] * x in GF(2^128), the CMAC subkey step. The reduction by 0x87 is masked
     * in from the top bit, never branched on: the subkey is secret.
     */
    private void doubleInGf128() {
        byte mask = (byte) -((work[WORK_SUBKEY] >> 7) & 1);
        short last = (short) (WORK_SUBKEY + BLOCK_BYTES - 1);
        for (short i = WORK_SUBKEY; i < last; i++) {
            work[i] = (byte) ((work[i] << 1) | ((work[(short) (i + 1)] >> 7) & 1));
        }
        work[last] = (byte) ((work[last] << 1) ^ (CMAC_RB & mask));
    }
}
