package keyload.station;

import com.licel.jcardsim.base.Simulator;
import com.licel.jcardsim.base.SimulatorRuntime;
import java.util.HexFormat;
import javacard.framework.AID;
import javacard.framework.Applet;

/**
 * One virtual card: its own jCardSim {@link Simulator} with one applet installed, and the card-level
 * behaviour the simulator leaves to its host: power loss and an answer to reset.
 *
 * <p>Not thread-safe by itself: the reader that holds the card is the only one to drive it.
 */
public final class SimulatedCard {

    /**
     * The answer to reset of every simulated card: direct convention, T=1 only (TD1 = 01), historical
     * bytes 80 (COMPACT-TLV follows) 57 "KEYLOAD" (card issuer's data), TCK 0E.
     */
    public static final byte[] ATR = HexFormat.of().parseHex("3B890180574B45594C4F41440E");

    /** Status word "no precise diagnosis": what the card answers when the simulator itself fails. */
    static final byte[] SW_NO_PRECISE_DIAGNOSIS = {(byte) 0x6F, 0x00};

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
    private final Simulator simulator;

    private SimulatedCard(AppletRole role, Simulator simulator) {
        this.role = role;
        this.simulator = simulator;
    }

    /**
     * A fresh blank card of that role: a new simulator with the role's applet installed (the applet is in
     * its SETUP state, as after installation on a real card).
     *
     * @throws IllegalStateException when the applet class cannot be loaded or installed
     */
    public static SimulatedCard blank(AppletRole role) {
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
        return new SimulatedCard(role, simulator);
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

    /**
     * What a card does when its power goes away (power off, warm reset, or the card leaving the field):
     * CLEAR_ON_RESET and CLEAR_ON_DESELECT transient arrays are zeroed and no applet is selected.
     * jCardSim 3.0.6.0's {@code Simulator.reset()} does exactly that (it zeroes both transient lists,
     * empties the response buffer and forgets the selected AID) without calling {@code deselect()}, which
     * a card losing power would not call either. Persistent state is untouched.
     */
    public void powerLoss() {
        simulator.reset();
    }

    /**
     * Runs one C-APDU and returns the R-APDU (data and status word).
     *
     * <p>A card must never take the station down: anything the simulator throws (a malformed APDU, an
     * applet error jCardSim does not map) becomes 6F00 and one log line without APDU data.
     */
    public byte[] process(byte[] command) {
        try {
            return simulator.transmitCommand(command);
        } catch (Throwable t) { // deliberately everything, Errors from applet code included
            Log.event("card " + role.name() + ": simulator failed (" + t.getClass().getName() + "), answering 6F00");
            return SW_NO_PRECISE_DIAGNOSIS.clone();
        }
    }
}
