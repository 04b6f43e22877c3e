package keyload.tools;

import static org.objectweb.asm.Opcodes.ASM9;
import static org.objectweb.asm.Opcodes.I2B;
import static org.objectweb.asm.Opcodes.I2S;
import static org.objectweb.asm.Opcodes.IADD;
import static org.objectweb.asm.Opcodes.IAND;
import static org.objectweb.asm.Opcodes.IDIV;
import static org.objectweb.asm.Opcodes.IMUL;
import static org.objectweb.asm.Opcodes.INEG;
import static org.objectweb.asm.Opcodes.IOR;
import static org.objectweb.asm.Opcodes.IREM;
import static org.objectweb.asm.Opcodes.ISHL;
import static org.objectweb.asm.Opcodes.ISHR;
import static org.objectweb.asm.Opcodes.ISUB;
import static org.objectweb.asm.Opcodes.IUSHR;
import static org.objectweb.asm.Opcodes.IXOR;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.analysis.SourceInterpreter;
import org.objectweb.asm.tree.analysis.SourceValue;

/**
 * Finds int arithmetic results that escape without being narrowed to short or byte.
 *
 * <p>javac widens short and byte operands to int, so {@code a + b} is an int. The converter turns int
 * arithmetic into short arithmetic only where that cannot change the outcome, i.e. where the value is
 * narrowed ({@code (short)}, {@code (byte)}) before anything else sees it; otherwise it fails with
 * "unsupported int type of intermediate value". An intermediate may feed further arithmetic only if the
 * low 16 bits of that arithmetic's result depend on nothing but the low 16 bits of its operands (add, sub,
 * mul, neg, and, or, xor, and the shifted value of a left shift); division, remainder, right shifts and shift
 * counts see the upper bits, where int and short arithmetic disagree. Everything else (comparison, array
 * index, store, argument, return, field, dup, ...) is an escape.
 *
 * <p>Run it with {@link org.objectweb.asm.tree.analysis.Analyzer}: every value a consumer pops carries the
 * instructions that may have produced it, and the consumer is checked against each of them.
 */
final class IntermediateValues extends SourceInterpreter {

    static final Set<Integer> ARITHMETIC =
            Set.of(IADD, ISUB, IMUL, IDIV, IREM, INEG, ISHL, ISHR, IUSHR, IAND, IOR, IXOR);

    /** Consumers whose (narrowed) result depends only on the low 16 bits of their operands. */
    private static final Set<Integer> LOW_BITS_ONLY = Set.of(I2S, I2B, IADD, ISUB, IMUL, INEG, IAND, IOR, IXOR, ISHL);

    /** Each escaping arithmetic instruction, with the first consumer found that lets it escape. */
    private final Map<AbstractInsnNode, AbstractInsnNode> escapes = new HashMap<>();

    IntermediateValues() {
        super(ASM9);
    }

    Map<AbstractInsnNode, AbstractInsnNode> escapes() {
        return escapes;
    }

    /** Covers xLOAD, xSTORE, DUP*, SWAP: a stored or duplicated intermediate is no longer narrowed in place. */
    @Override
    public SourceValue copyOperation(AbstractInsnNode insn, SourceValue value) {
        consume(insn, value, false);
        return super.copyOperation(insn, value);
    }

    @Override
    public SourceValue unaryOperation(AbstractInsnNode insn, SourceValue value) {
        consume(insn, value, LOW_BITS_ONLY.contains(insn.getOpcode()));
        return super.unaryOperation(insn, value);
    }

    @Override
    public SourceValue binaryOperation(AbstractInsnNode insn, SourceValue value1, SourceValue value2) {
        boolean lowBitsOnly = LOW_BITS_ONLY.contains(insn.getOpcode());
        consume(insn, value1, lowBitsOnly);
        consume(insn, value2, lowBitsOnly && insn.getOpcode() != ISHL);
        return super.binaryOperation(insn, value1, value2);
    }

    @Override
    public SourceValue ternaryOperation(
            AbstractInsnNode insn, SourceValue value1, SourceValue value2, SourceValue value3) {
        consume(insn, value1, false);
        consume(insn, value2, false);
        consume(insn, value3, false);
        return super.ternaryOperation(insn, value1, value2, value3);
    }

    @Override
    public SourceValue naryOperation(AbstractInsnNode insn, List<? extends SourceValue> values) {
        for (SourceValue value : values) {
            consume(insn, value, false);
        }
        return super.naryOperation(insn, values);
    }

    @Override
    public void returnOperation(AbstractInsnNode insn, SourceValue value, SourceValue expected) {
        consume(insn, value, false);
    }

    private void consume(AbstractInsnNode consumer, SourceValue value, boolean lowBitsOnly) {
        if (lowBitsOnly) {
            return;
        }
        for (AbstractInsnNode source : value.insns) {
            if (ARITHMETIC.contains(source.getOpcode())) {
                escapes.putIfAbsent(source, consumer);
            }
        }
    }

    /** The violation text for an intermediate produced by {@code source} that escapes to {@code consumer}. */
    static String describe(AbstractInsnNode source, AbstractInsnNode consumer) {
        String why = ARITHMETIC.contains(consumer.getOpcode()) ? ", which depends on its upper 16 bits" : "";
        return "int result of " + Mnemonics.of(source.getOpcode()) + " reaches " + Mnemonics.of(consumer.getOpcode())
                + why + ": cast the intermediate value to short or byte";
    }
}
