package keyload.tools;

import static org.objectweb.asm.Opcodes.*;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import org.objectweb.asm.Type;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.FieldInsnNode;
import org.objectweb.asm.tree.IntInsnNode;
import org.objectweb.asm.tree.LdcInsnNode;
import org.objectweb.asm.tree.MethodInsnNode;
import org.objectweb.asm.tree.TypeInsnNode;

/** Per-instruction rules: opcodes the Java Card VM lacks, and the classes and members instructions refer to. */
final class InstructionRules {

    /** Everything that loads, stores, computes, converts, compares or returns a long, float or double. */
    private static final Set<Integer> WIDE_OR_FLOATING = Set.of(
            LCONST_0, LCONST_1, FCONST_0, FCONST_1, FCONST_2, DCONST_0, DCONST_1,
            LLOAD, FLOAD, DLOAD, LSTORE, FSTORE, DSTORE, LALOAD, FALOAD, DALOAD, LASTORE, FASTORE, DASTORE,
            LADD, FADD, DADD, LSUB, FSUB, DSUB, LMUL, FMUL, DMUL, LDIV, FDIV, DDIV, LREM, FREM, DREM,
            LNEG, FNEG, DNEG, LSHL, LSHR, LUSHR, LAND, LOR, LXOR,
            I2L, I2F, I2D, L2I, L2F, L2D, F2I, F2L, F2D, D2I, D2L, D2F,
            LCMP, FCMPL, FCMPG, DCMPL, DCMPG, LRETURN, FRETURN, DRETURN);

    /** NEWARRAY operands for element types Java Card lacks. */
    private static final Set<Integer> MISSING_ARRAY_TYPES = Set.of(T_INT, T_LONG, T_FLOAT, T_DOUBLE, T_CHAR);

    private final JavaCardTypes types;

    InstructionRules(JavaCardTypes types) {
        this.types = types;
    }

    /** Every reason the converter would refuse {@code insn}; empty if it accepts it. */
    List<String> problems(AbstractInsnNode insn) {
        List<String> problems = new ArrayList<>();
        String opcodeProblem = opcodeProblem(insn);
        if (opcodeProblem != null) {
            problems.add(opcodeProblem);
        }
        referenceProblems(insn, problems);
        return problems;
    }

    private static String opcodeProblem(AbstractInsnNode insn) {
        int opcode = insn.getOpcode();
        String name = Mnemonics.of(opcode);
        switch (opcode) {
            case IINC:
                return "IINC: javac emits it only for int locals; use a short and (short) (i + 1)";
            case I2C:
                return "I2C: char is not a Java Card type";
            case IALOAD:
            case IASTORE:
                return name + ": int arrays are not supported (no int option)";
            case CALOAD:
            case CASTORE:
                return name + ": char arrays are not supported by Java Card";
            case MONITORENTER:
            case MONITOREXIT:
                return name + ": synchronized is not supported by Java Card (no threads, no monitors)";
            case INVOKEDYNAMIC:
                return "INVOKEDYNAMIC (lambda, method reference or string concatenation) is not supported by Java Card";
            case MULTIANEWARRAY:
                return "MULTIANEWARRAY: multi-dimensional arrays are not supported by Java Card";
            case NEWARRAY:
                return MISSING_ARRAY_TYPES.contains(((IntInsnNode) insn).operand)
                        ? "NEWARRAY of int, long, float, double or char is not supported by Java Card" : null;
            case LDC:
                return constantProblem(((LdcInsnNode) insn).cst);
            default:
                return WIDE_OR_FLOATING.contains(opcode)
                        ? name + ": long, float and double are not Java Card types" : null;
        }
    }

    private static String constantProblem(Object constant) {
        if (constant instanceof Integer) {
            int value = (Integer) constant;
            return value < Short.MIN_VALUE || value > Short.MAX_VALUE
                    ? "LDC int constant " + value + " is outside the short range (no int option)" : null;
        }
        if (constant instanceof String) {
            return "LDC of a string literal: java.lang.String is not in the Java Card 3.0.5 API";
        }
        if (constant instanceof Type) {
            return "LDC of the class literal " + ((Type) constant).getClassName()
                    + ".class: java.lang.Class is not in the Java Card 3.0.5 API";
        }
        return "LDC of a " + constant.getClass().getSimpleName() + " constant is not supported by Java Card";
    }

    private void referenceProblems(AbstractInsnNode insn, List<String> problems) {
        String name = Mnemonics.of(insn.getOpcode());
        if (insn instanceof MethodInsnNode) {
            MethodInsnNode call = (MethodInsnNode) insn;
            add(problems, name + " owner", types.problem(Type.getObjectType(call.owner)));
            if (!types.isOwn(call.owner)) {
                add(problems, name + " " + call.name, types.descriptorProblem(call.desc));
                add(problems, name, types.memberProblem(call.owner, call.name, call.desc));
            }
        } else if (insn instanceof FieldInsnNode) {
            FieldInsnNode access = (FieldInsnNode) insn;
            add(problems, name + " owner", types.problem(Type.getObjectType(access.owner)));
            if (!types.isOwn(access.owner)) {
                add(problems, name + " " + access.name + " type", types.problem(Type.getType(access.desc)));
            }
        } else if (insn instanceof TypeInsnNode) {
            add(problems, name, types.problem(Type.getObjectType(((TypeInsnNode) insn).desc)));
        }
    }

    private static void add(List<String> problems, String what, String problem) {
        if (problem != null) {
            problems.add(what + ": " + problem);
        }
    }
}
