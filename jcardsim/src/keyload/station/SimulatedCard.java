package keyload.station;

import com.licel.jcardsim.base.Simulator;
import com.licel.jcardsim.base.SimulatorRuntime;
import javacard.framework.AID;
import javacard.framework.Applet;

/**
 * One virtual card: its own jCardSim {@link Simulator} with one applet installed, and the card-level
 * behaviour the simulator leaves to its host: power loss, an answer to reset, and the transmission
 * protocol (T=1, or T=0 with its 61xx/6Cxx procedure).
 *
 * <p>Not thread-safe by itself: the reader that holds the card is the only one to drive it.
 */
public final class SimulatedCard {

    /** Status word "no precise diagnosis": what the card answers when the simulator itself fails. */
    static final byte[] SW_NO_PRECISE_DIAGNOSIS = {(byte) 0x6F, 0x00};

    /** Status word "wrong length": what a card's runtime answers to a C-APDU of no ISO 7816-4 case. */
    static final byte[] SW_WRONG_LENGTH = {0x67, 0x00};

    private static final int HEADER_BYTES = 4;
    private static final int OFFSET_LC = 4;
    private static final int EXTENDED_LENGTH_BYTES = 3;

    /** jCardSim reads these when a RandomData object is made; a fixed seed would override "secure". */
    static final String RANDOM_SEED_PROPERTY = "com.licel.jcardsim.randomdata.seed";
    static final String RANDOM_SECURE_PROPERTY = "com.licel.jcardsim.randomdata.secure";

    static {
        // Challenges must be unpredictable even in simulation: the host's replay protection is tested
        // against them. jCardSim's default is a fixed-seed PRNG; "secure" seeds it from SecureRandom.
        System.clearProperty(RANDOM_SEED_PROPERTY);
        System.setProperty(RANDOM_SECURE_PROPERTY, "1");
    }

    private final AppletRole role;
    private final CardProtocol protocol;
    private final Transmission transmission;
    private final Simulator simulator;

    private SimulatedCard(AppletRole role, CardProtocol protocol, Simulator simulator) {
        this.role = role;
        this.protocol = protocol;
        this.transmission = protocol.newTransmission();
        this.simulator = simulator;
    }

    /**
     * A fresh blank card of that role speaking that protocol: a new simulator with the role's applet
     * installed (the applet is in its SETUP state, as after installation on a real card).
     *
     * @throws IllegalStateException when the applet class cannot be loaded or installed
     */
    public static SimulatedCard blank(AppletRole role, CardProtocol protocol) {
        Class<? extends Applet> appletClass;
        try {
            appletClass = Class.forName(role.appletClassName()).asSubclass(Applet.class);
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("applet class " + role.appletClassName() + " of role " + role.name()
                    + " is not on the station's classpath (build it: ant compile-applets)", e);
        } catch (ClassCastException e) {
            throw new IllegalStateException(role.appletClassName() + " is not a javacard.framework.Applet", e);
        }
        // A runtime of its own: Simulator() would share jCardSim's static DEFAULT_RUNTIME, and reset it,
        // so that every card would be the last one made.
        Simulator simulator = new Simulator(new SimulatorRuntime());
        byte[] aid = role.aid();
        byte[] parameters = installParameters(aid);
        try {
            simulator.installApplet(new AID(aid, (short) 0, (byte) aid.length), appletClass, parameters, (short) 0,
                    (byte) parameters.length);
        } catch (RuntimeException e) {
            throw new IllegalStateException("installing " + role.appletClassName() + " failed: " + e, e);
        }
        return new SimulatedCard(role, protocol, simulator);
    }

    /**
     * What a card's installer hands to {@code Applet.install}, as GlobalPlatform's INSTALL [for install]
     * does: LV instance AID, LV control information (empty), LV applet data (empty). Applets that
     * register under the instance AID read it from here.
     */
    static byte[] installParameters(byte[] aid) {
        byte[] parameters = new byte[aid.length + 3];
        parameters[0] = (byte) aid.length;
        System.arraycopy(aid, 0, parameters, 1, aid.length);
        return parameters;
    }

    public AppletRole role() {
        return role;
    }

    /** The answer to reset, which tells pcscd the protocol to use. */
    public byte[] atr() {
        return protocol.atr();
    }

    /**
     * What a card does when its power goes away (power off, warm reset, or the card leaving the field):
     * CLEAR_ON_RESET and CLEAR_ON_DESELECT transient arrays are zeroed and no applet is selected.
     * jCardSim 3.0.6.0's {@code Simulator.reset()} does exactly that (it zeroes both transient lists,
     * empties the response buffer and forgets the selected AID) without calling {@code deselect()}, which
     * a card losing power would not call either. Persistent state is untouched; a T=0 response waiting for
     * GET RESPONSE is lost.
     */
    public void powerLoss() {
        transmission.powerLoss();
        simulator.reset();
    }

    /**
     * Takes one C-APDU from the reader and returns what the card sends back: the R-APDU (data and status
     * word), or for a T=0 card the 61xx/6Cxx answers its runtime gives (see {@link T0Transmission}).
     */
    public byte[] process(byte[] command) {
        return transmission.exchange(command, this::execute);
    }

    /**
     * Runs one C-APDU on the applets and returns their R-APDU; one of no ISO 7816-4 case gets 6700, as from
     * a card's runtime.
     *
     * <p>A card must never take the station down: anything the simulator throws (an applet error jCardSim
     * does not map) becomes 6F00 and one log line without APDU data.
     */
    private byte[] execute(byte[] command) {
        if (!isCommandCase(command)) {
            return SW_WRONG_LENGTH.clone();
        }
        try {
            return simulator.transmitCommand(command);
        } catch (Throwable t) { // deliberately everything, Errors from applet code included
            Log.event("card " + role.name() + ": simulator failed (" + t.getClass().getName() + "), answering 6F00");
            return SW_NO_PRECISE_DIAGNOSIS.clone();
        }
    }

    /**
     * Whether {@code command} is one of the command cases of ISO 7816-4 (5.1): the 4-byte header alone, with
     * Le, with Lc and data, or with Lc, data and Le, in the short or the extended form. jCardSim throws on
     * anything else (a header cut short, an Lc promising more or fewer bytes than follow), which would come
     * out as 6F00; a card's runtime refuses such a command with 6700 before any applet sees it.
     */
    static boolean isCommandCase(byte[] command) {
        int length = command.length;
        if (length <= HEADER_BYTES + 1) {
            return length >= HEADER_BYTES; // case 1, short case 2
        }
        int lc = command[OFFSET_LC] & 0xFF;
        if (lc != 0) {
            int dataEnd = HEADER_BYTES + 1 + lc;
            return length == dataEnd || length == dataEnd + 1; // short case 3, short case 4
        }
        int extendedHeader = HEADER_BYTES + EXTENDED_LENGTH_BYTES;
        if (length == extendedHeader) {
            return true; // extended case 2
        }
        if (length < extendedHeader) {
            return false;
        }
        int extendedLc = (command[OFFSET_LC + 1] & 0xFF) << 8 | command[OFFSET_LC + 2] & 0xFF;
        int dataEnd = extendedHeader + extendedLc;
        return extendedLc != 0 && (length == dataEnd || length == dataEnd + 2); // extended case 3, 4
    }
}
