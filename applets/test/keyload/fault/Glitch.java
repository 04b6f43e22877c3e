package keyload.fault;

import java.util.BitSet;
import java.util.HashSet;
import java.util.Set;
import org.objectweb.asm.Opcodes;

/**
 * The fault a glitch or a laser shot makes in the model of the campaign: one conditional branch of the
 * applet bytecode goes the other way. {@link GlitchedAppletLoader} routes every conditional branch of the
 * applet classes through here with its site number; while armed, the sites in {@link #arm}'s set are
 * inverted every time they run, all others behave as written. Disarmed (personalization, observation),
 * every branch behaves as written.
 *
 * <p>Static state: one campaign at a time, from one test thread.
 */
public final class Glitch {

    /** Thrown when a faulted command runs away (a loop that no longer ends): the card is mute for it. */
    public static final class Runaway extends Error {
        private static final long serialVersionUID = 1L;

        Runaway() {
            super("runaway", null, false, false);
        }
    }

    private static final long STEP_LIMIT = 2_000_000;

    private static boolean armed;
    private static Set<Integer> inverted = new HashSet<>();
    private static final BitSet reached = new BitSet();
    private static long steps;

    private Glitch() {
    }

    /** From now on, inverts the branches at {@code sites} (none: records the sites reached, faults nothing). */
    public static void arm(Set<Integer> sites) {
        inverted = new HashSet<>(sites);
        reached.clear();
        steps = 0;
        armed = true;
    }

    public static void disarm() {
        armed = false;
    }

    /** A new command: the runaway watchdog starts again (the fault stays). */
    public static void newCommand() {
        steps = 0;
    }

    /** The sites that ran since {@link #arm}. */
    public static BitSet reached() {
        return (BitSet) reached.clone();
    }

    private static boolean decide(boolean jump, int site) {
        if (!armed) {
            return jump;
        }
        reached.set(site);
        if (++steps > STEP_LIMIT) {
            steps = 0;
            throw new Runaway();
        }
        return inverted.contains(site) ? !jump : jump;
    }

    // ------------------------------------------------------------------ what the rewritten bytecode calls

    /** IFEQ .. IFLE: one int compared with zero. */
    public static boolean compareZero(int value, int opcode, int site) {
        boolean jump;
        switch (opcode) {
            case Opcodes.IFEQ: jump = value == 0; break;
            case Opcodes.IFNE: jump = value != 0; break;
            case Opcodes.IFLT: jump = value < 0; break;
            case Opcodes.IFGE: jump = value >= 0; break;
            case Opcodes.IFGT: jump = value > 0; break;
            case Opcodes.IFLE: jump = value <= 0; break;
            default: throw new IllegalArgumentException("opcode " + opcode);
        }
        return decide(jump, site);
    }

    /** IF_ICMPEQ .. IF_ICMPLE: two ints. */
    public static boolean compare(int a, int b, int opcode, int site) {
        boolean jump;
        switch (opcode) {
            case Opcodes.IF_ICMPEQ: jump = a == b; break;
            case Opcodes.IF_ICMPNE: jump = a != b; break;
            case Opcodes.IF_ICMPLT: jump = a < b; break;
            case Opcodes.IF_ICMPGE: jump = a >= b; break;
            case Opcodes.IF_ICMPGT: jump = a > b; break;
            case Opcodes.IF_ICMPLE: jump = a <= b; break;
            default: throw new IllegalArgumentException("opcode " + opcode);
        }
        return decide(jump, site);
    }

    /** IF_ACMPEQ, IF_ACMPNE. */
    public static boolean compareReferences(Object a, Object b, int opcode, int site) {
        return decide(opcode == Opcodes.IF_ACMPEQ ? a == b : a != b, site);
    }

    /** IFNULL, IFNONNULL. */
    public static boolean compareNull(Object a, int opcode, int site) {
        return decide(opcode == Opcodes.IFNULL ? a == null : a != null, site);
    }
}
