package keyload.applet;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

/**
 * PUT APP KEY and SET TRANSPORT KEY replacing a key, cut short at every persistent write in turn (key
 * object bytes included): afterwards the AS holds the old key or the new one, whole, as its LIST KEYS
 * or INFO check value says, and proves it by a load into an EI that INTERNAL AUTHENTICATE checks.
 */
public class TearingSetupTest {

    private static final byte[] SN = Hex.decode("4B4C0000000000E3");
    private static final byte[] T_OLD = Hex.decode("101112131415161718191A1B1C1D1E1F");
    private static final byte[] T_NEW = Hex.decode("202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F");
    private static final byte[] OLD_KEY = Hex.decode("000102030405060708090A0B0C0D0E0F");
    private static final byte[] NEW_KEY = Hex.decode("F0E1D2C3B4A5968778695A4B3C2D1E0F");
    private static final int REF1 = 0x03;
    private static final int SLOT = 0x01;
    private static final byte[] DATA = Hex.decode("0A0B");

    private static byte[] putAppKey(byte[] key) {
        byte[] data = RefCrypto.concat(new byte[] {REF1, 0x01, 0x00, 0x01, 0x00, (byte) 0xFF, (byte) 0xFF}, key);
        return RefCrypto.concat(Hex.decode("80540000"), new byte[] {(byte) data.length}, data);
    }

    private static byte[] setTransportKey(byte[] t) {
        return RefCrypto.concat(Hex.decode("80500000"), new byte[] {(byte) t.length}, t);
    }

    /** Locks the AS, loads REF1 into a fresh EI of transport key {@code t}, and checks the key is {@code key}. */
    private static void proveKey(Card as, byte[] t, byte[] key, int k) {
        Setup.pin(as, Setup.PIN);
        Setup.lock(as);
        Setup.verify(as, Setup.PIN);
        Card ei = Setup.operationalEi(t, SN, SLOT, 16, 0x01);
        byte[] data = RefCrypto.concat(new byte[] {REF1, SLOT}, Setup.challenge(ei), new byte[] {(byte) SN.length}, SN);
        byte[] block = as.ok(as.command(0x80, 0x4A, 0, 0, data, true));
        ei.ok(ei.command(0x80, 0x4C, 0, 0, block));
        assertArrayEquals("the key itself, cut at " + k, RefCrypto.cmac(key, DATA),
                ei.ok(ei.command(0x00, 0x88, 0x00, SLOT, DATA, true)));
    }

    private static void assertOneSwitch(List<String> held) {
        int firstNew = held.contains("new") ? held.indexOf("new") : held.size();
        assertTrue("no cut before the first write changed anything: " + held, firstNew > 0);
        for (int k = 0; k < held.size(); k++) {
            assertEquals("after a cut at write " + (k + 1) + ": " + held, k < firstNew ? "old" : "new", held.get(k));
        }
        assertTrue("the replaced key is cleared after the commit: some cut leaves the new key " + held,
                firstNew < held.size());
    }

    @Test
    public void anAppKeyIsOldOrNewWherePutAppKeyIsCut() {
        List<String> held = new ArrayList<>();
        Tearing.tearAtEveryWrite(() -> {
            Card as = Tearing.tornAs();
            Setup.transportKey(as, T_OLD);
            as.ok(as.send(putAppKey(OLD_KEY)));
            return new Tearing.Attempt(as, putAppKey(NEW_KEY));
        }, (as, k) -> {
            byte[] kcv = Arrays.copyOfRange(Tearing.entry(as, REF1), 7, 10);
            boolean isNew = Arrays.equals(RefCrypto.kcv(NEW_KEY), kcv);
            assertTrue("KCV " + Hex.encode(kcv) + ", cut at " + k, isNew || Arrays.equals(RefCrypto.kcv(OLD_KEY), kcv));
            proveKey(as, T_OLD, isNew ? NEW_KEY : OLD_KEY, k);
            held.add(isNew ? "new" : "old");
        });
        assertOneSwitch(held);
    }

    @Test
    public void theTransportKeyIsOldOrNewWhereSetTransportKeyIsCut() {
        List<String> held = new ArrayList<>();
        Tearing.tearAtEveryWrite(() -> {
            Card as = Tearing.tornAs();
            as.ok(as.send(setTransportKey(T_OLD)));
            as.ok(as.send(putAppKey(OLD_KEY)));
            return new Tearing.Attempt(as, setTransportKey(T_NEW));
        }, (as, k) -> {
            byte[] info = as.info();
            byte[] kcv = Arrays.copyOfRange(info, 4, 7);
            boolean isNew = info[3] == 32 && Arrays.equals(RefCrypto.kcv(T_NEW), kcv);
            assertTrue("T KCV " + Hex.encode(kcv) + ", cut at " + k,
                    isNew || info[3] == 16 && Arrays.equals(RefCrypto.kcv(T_OLD), kcv));
            proveKey(as, isNew ? T_NEW : T_OLD, OLD_KEY, k);
            held.add(isNew ? "new" : "old");
        });
        assertOneSwitch(held);
    }
}
