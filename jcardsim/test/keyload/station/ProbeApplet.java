package keyload.station;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.security.RandomData;

/**
 * A tiny applet that makes the station's card behaviour observable: one byte in each kind of memory
 * (CLEAR_ON_DESELECT, CLEAR_ON_RESET, persistent) and a secure random generator.
 */
public final class ProbeApplet extends Applet {

    /** AID the station tests install it at. */
    static final String AID_HEX = "F000000001";
    /** Value for {@code --role}. */
    static final String ROLE_SPEC = "PROBE=" + ProbeApplet.class.getName() + ":" + AID_HEX;

    /** P1 goes into all three bytes. */
    static final byte INS_WRITE = 0x10;
    /** Returns the three bytes: deselect-cleared, reset-cleared, persistent. */
    static final byte INS_READ = 0x12;
    /** Returns 16 random bytes. */
    static final byte INS_CHALLENGE = (byte) 0x84;
    static final short CHALLENGE_LENGTH = 16;

    private final byte[] clearedOnDeselect;
    private final byte[] clearedOnReset;
    private final byte[] persistent = new byte[1];
    private final RandomData random;

    private ProbeApplet(byte[] parameters, short offset) {
        clearedOnDeselect = JCSystem.makeTransientByteArray((short) 1, JCSystem.CLEAR_ON_DESELECT);
        clearedOnReset = JCSystem.makeTransientByteArray((short) 1, JCSystem.CLEAR_ON_RESET);
        random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        // Registers under the instance AID of the install parameters, as the keyload applets do.
        register(parameters, (short) (offset + 1), parameters[offset]);
    }

    public static void install(byte[] parameters, short offset, byte length) {
        new ProbeApplet(parameters, offset);
    }

    @Override
    public void process(APDU apdu) {
        if (selectingApplet()) {
            return;
        }
        byte[] buffer = apdu.getBuffer();
        switch (buffer[ISO7816.OFFSET_INS]) {
            case INS_WRITE:
                clearedOnDeselect[0] = buffer[ISO7816.OFFSET_P1];
                clearedOnReset[0] = buffer[ISO7816.OFFSET_P1];
                persistent[0] = buffer[ISO7816.OFFSET_P1];
                return;
            case INS_READ:
                buffer[0] = clearedOnDeselect[0];
                buffer[1] = clearedOnReset[0];
                buffer[2] = persistent[0];
                apdu.setOutgoingAndSend((short) 0, (short) 3);
                return;
            case INS_CHALLENGE:
                random.generateData(buffer, (short) 0, CHALLENGE_LENGTH);
                apdu.setOutgoingAndSend((short) 0, CHALLENGE_LENGTH);
                return;
            default:
                ISOException.throwIt(ISO7816.SW_INS_NOT_SUPPORTED);
        }
    }
}
