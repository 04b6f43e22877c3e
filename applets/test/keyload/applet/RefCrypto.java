package keyload.applet;

import java.io.ByteArrayOutputStream;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * PROTOCOL.md §2-§3 written again on the JDK's AES, independent of the applet classes: the oracle the
 * applet tests compare the cards against.
 */
final class RefCrypto {

    private RefCrypto() {
    }

    static byte[] aes(int mode, String transformation, byte[] key, byte[] data) {
        try {
            Cipher cipher = Cipher.getInstance(transformation);
            SecretKeySpec spec = new SecretKeySpec(key, "AES");
            if (transformation.contains("CBC")) {
                cipher.init(mode, spec, new IvParameterSpec(new byte[16]));
            } else {
                cipher.init(mode, spec);
            }
            return cipher.doFinal(data);
        } catch (java.security.GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] shiftLeft(byte[] in) {
        byte[] out = new byte[16];
        for (int i = 0; i < 16; i++) {
            out[i] = (byte) (in[i] << 1 | (i < 15 ? (in[i + 1] & 0xFF) >>> 7 : 0));
        }
        if ((in[0] & 0x80) != 0) {
            out[15] ^= (byte) 0x87;
        }
        return out;
    }

    /** AES-CMAC, NIST SP 800-38B. */
    static byte[] cmac(byte[] key, byte[] message) {
        byte[] k1 = shiftLeft(aes(Cipher.ENCRYPT_MODE, "AES/ECB/NoPadding", key, new byte[16]));
        byte[] k2 = shiftLeft(k1);
        int blocks = Math.max(1, (message.length + 15) / 16);
        boolean complete = message.length > 0 && message.length % 16 == 0;
        byte[] padded = Arrays.copyOf(message, blocks * 16);
        if (!complete) {
            padded[message.length] = (byte) 0x80;
        }
        byte[] last = complete ? k1 : k2;
        for (int i = 0; i < 16; i++) {
            padded[(blocks - 1) * 16 + i] ^= last[i];
        }
        byte[] chain = aes(Cipher.ENCRYPT_MODE, "AES/CBC/NoPadding", key, padded);
        return Arrays.copyOfRange(chain, chain.length - 16, chain.length);
    }

    /** KDF(K, c, L, ctx) of PROTOCOL.md §2, with L given in bytes. */
    static byte[] kdf(byte[] key, int label, int lengthBytes, byte[] context) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 1; out.size() < lengthBytes; i++) {
            ByteArrayOutputStream input = new ByteArrayOutputStream();
            input.writeBytes(new byte[11]);
            input.write(label);
            input.write(0);
            input.write((lengthBytes * 8) >> 8);
            input.write(lengthBytes * 8);
            input.write(i);
            input.writeBytes(context);
            out.writeBytes(cmac(key, input.toByteArray()));
        }
        return Arrays.copyOf(out.toByteArray(), lengthBytes);
    }

    static byte[] kcv8(byte[] key) {
        return Arrays.copyOf(cmac(key, new byte[16]), 8);
    }

    static byte[] kcv(byte[] key) {
        return Arrays.copyOf(kcv8(key), 3);
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] part : parts) {
            out.writeBytes(part);
        }
        return out.toByteArray();
    }

    /** The per-load values of PROTOCOL.md §2-§3 for one application key, one EI and one challenge. */
    static final class Load {
        final byte[] t1;
        final byte[] kEnc;
        final byte[] kMac;
        final byte[] taUnit;
        final byte[] header;
        final byte[] encTa;
        final byte[] sas;
        final byte[] cas;

        Load(byte[] t, byte[] ta, byte[] sn, byte[] r, int ref1, int ref2, int usage, int version,
             boolean diversify) {
            byte[] sessionContext = concat(r, new byte[] {(byte) ref2});
            t1 = kdf(t, 0x10, t.length, sn);
            kEnc = kdf(t1, 0x11, t.length, sessionContext);
            kMac = kdf(t1, 0x12, t.length, sessionContext);
            taUnit = diversify ? kdf(ta, 0x20, ta.length, sn) : ta.clone();
            header = new byte[] {1, (byte) ref2, (byte) ta.length, (byte) usage, (byte) (version >> 8),
                (byte) version, (byte) (diversify ? 1 : 0), (byte) ref1};
            encTa = aes(Cipher.ENCRYPT_MODE, "AES/CBC/NoPadding", kEnc,
                    Arrays.copyOf(taUnit, (ta.length + 15) / 16 * 16));
            sas = kcv8(taUnit);
            cas = cmac(kMac, concat(header, encTa, sas));
        }

        byte[] block() {
            return concat(header, encTa, sas, cas);
        }
    }

    /**
     * The transport key block of PROTOCOL.md §9 carrying {@code tNew} (its version {@code version}) for
     * the EI {@code sn} and challenge {@code r}, under keys derived from the current transport key {@code t}.
     */
    static byte[] transportBlock(byte[] t, byte[] tNew, int version, byte[] sn, byte[] r) {
        byte[] sessionContext = concat(r, new byte[] {0});
        byte[] t1 = kdf(t, 0x10, t.length, sn);
        byte[] kEnc = kdf(t1, 0x11, t.length, sessionContext);
        byte[] kMac = kdf(t1, 0x12, t.length, sessionContext);
        byte[] header = {2, 0, (byte) tNew.length, 0, (byte) (version >> 8), (byte) version, 0, 0};
        byte[] encT = aes(Cipher.ENCRYPT_MODE, "AES/CBC/NoPadding", kEnc, Arrays.copyOf(tNew, (tNew.length + 15) / 16 * 16));
        byte[] body = concat(header, encT, kcv8(tNew));
        return concat(body, cmac(kMac, body));
    }
}
