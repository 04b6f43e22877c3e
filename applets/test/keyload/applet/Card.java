package keyload.applet;

import com.licel.jcardsim.base.Simulator;
import com.licel.jcardsim.base.SimulatorRuntime;
import java.util.Arrays;
import javacard.framework.AID;
import javacard.framework.Applet;

/** One simulated card with one keyload applet installed and selected, for the applet tests. */
final class Card {

    static final byte[] AS_AID = Hex.decode("F04B45594C4F414401");
    static final byte[] EI_AID = Hex.decode("F04B45594C4F414402");

    /** A response APDU: data and status word. */
    static final class Response {
        final byte[] data;
        final int sw;

        Response(byte[] raw) {
            data = Arrays.copyOf(raw, raw.length - 2);
            sw = (raw[raw.length - 2] & 0xFF) << 8 | raw[raw.length - 1] & 0xFF;
        }

        @Override
        public String toString() {
            return String.format("%s %04X", Hex.encode(data), sw);
        }
    }

    /** Gives the tests the applet object itself, to inspect its transient fields. */
    private static final class Runtime extends SimulatorRuntime {
        Applet applet(AID aid) {
            return getApplet(aid);
        }

        void activate() {
            activateSimulatorRuntimeInstance();
        }

        byte[] apduBuffer() {
            return shortAPDU.getBuffer();
        }
    }

    private final Runtime runtime = new Runtime();
    private final Simulator simulator = new Simulator(runtime);
    private final AID aid;

    /** A card with {@code appletClass} installed at {@code aidBytes} (the tearing tests pass rewritten classes). */
    Card(byte[] aidBytes, Class<? extends Applet> appletClass) {
        aid = new AID(aidBytes, (short) 0, (byte) aidBytes.length);
        // As a card's installer does: LV instance AID, LV control info, LV applet data.
        byte[] install = RefCrypto.concat(new byte[] {(byte) aidBytes.length}, aidBytes, new byte[] {0, 0});
        simulator.installApplet(aid, appletClass, install, (short) 0, (byte) install.length);
        select();
    }

    static Card as() {
        return new Card(AS_AID, AsApplet.class);
    }

    static Card ei() {
        return new Card(EI_AID, EiApplet.class);
    }

    /** The applet object; JCSystem calls made after this one answer for this card. */
    Applet applet() {
        runtime.activate();
        return runtime.applet(aid);
    }

    /** The APDU buffer as the last command left it (jCardSim clears it only when the next APDU comes). */
    byte[] apduBuffer() {
        return runtime.apduBuffer().clone();
    }

    Response select() {
        byte[] aidBytes = new byte[aid.getBytes(new byte[16], (short) 0)];
        aid.getBytes(aidBytes, (short) 0);
        return send(RefCrypto.concat(Hex.decode("00A40400"), new byte[] {(byte) aidBytes.length}, aidBytes, new byte[] {0}));
    }

    /** Power cycle: transient memory cleared, applet deselected; then select again. */
    Response powerCycle() {
        simulator.reset();
        return select();
    }

    Response send(byte[] apdu) {
        return new Response(simulator.transmitCommand(apdu));
    }

    Response send(String hex) {
        return send(Hex.decode(hex));
    }

    /** A case 3 or 4 APDU (Le = 00 when {@code expectData}). */
    Response command(int cla, int ins, int p1, int p2, byte[] data, boolean expectData) {
        byte[] header = {(byte) cla, (byte) ins, (byte) p1, (byte) p2};
        byte[] body = data.length == 0 ? new byte[0] : RefCrypto.concat(new byte[] {(byte) data.length}, data);
        return send(RefCrypto.concat(header, body, expectData ? new byte[] {0} : new byte[0]));
    }

    Response command(int cla, int ins, int p1, int p2, byte[] data) {
        return command(cla, ins, p1, p2, data, false);
    }

    /** Sends and requires 9000, returning the data. */
    byte[] ok(Response response) {
        if (response.sw != 0x9000) {
            throw new AssertionError("expected 9000, got " + String.format("%04X", response.sw));
        }
        return response.data;
    }

    byte[] info() {
        return ok(send("8040000000"));
    }

    byte[] listKeys() {
        return ok(send("8042000000"));
    }

    /** INFO and LIST KEYS together: what must not change when a command is refused. */
    String snapshot() {
        return Hex.encode(info()) + "/" + Hex.encode(listKeys());
    }
}
