package keyload.tools;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;

import org.objectweb.asm.Opcodes;

/**
 * Opcode mnemonics for the lint's messages. asm-util's Printer has them but is not on the classpath, so they
 * are read from the opcode constants of {@link Opcodes}, skipping its other int constants (access flags,
 * array type codes, handle kinds, frame kinds, class file and API versions).
 */
final class Mnemonics {

    private static final int OPCODE_COUNT = 256;
    private static final String[] NON_OPCODE_PREFIXES = {"ACC_", "T_", "H_", "F_", "V", "ASM", "SOURCE_"};
    private static final String[] NAMES = new String[OPCODE_COUNT];

    static {
        for (Field field : Opcodes.class.getFields()) {
            boolean intConstant = field.getType() == int.class && Modifier.isStatic(field.getModifiers());
            if (intConstant && isOpcodeName(field.getName())) {
                int opcode = readInt(field);
                if (opcode >= 0 && opcode < OPCODE_COUNT && NAMES[opcode] == null) {
                    NAMES[opcode] = field.getName();
                }
            }
        }
    }

    private Mnemonics() {
    }

    static String of(int opcode) {
        return opcode >= 0 && opcode < OPCODE_COUNT && NAMES[opcode] != null ? NAMES[opcode] : "opcode " + opcode;
    }

    private static boolean isOpcodeName(String name) {
        for (String prefix : NON_OPCODE_PREFIXES) {
            if (name.startsWith(prefix)) {
                return false;
            }
        }
        return true;
    }

    private static int readInt(Field field) {
        try {
            return field.getInt(null);
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("public constant " + field + " is unreadable", e);
        }
    }
}
