package keyload.tools;

import static org.objectweb.asm.Opcodes.ACC_ENUM;
import static org.objectweb.asm.Opcodes.ACC_STATIC;
import static org.objectweb.asm.Opcodes.ACC_VARARGS;
import static org.objectweb.asm.Opcodes.V1_8;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.objectweb.asm.ClassReader;
import org.objectweb.asm.Type;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.ClassNode;
import org.objectweb.asm.tree.FieldNode;
import org.objectweb.asm.tree.LabelNode;
import org.objectweb.asm.tree.LineNumberNode;
import org.objectweb.asm.tree.LocalVariableNode;
import org.objectweb.asm.tree.MethodNode;
import org.objectweb.asm.tree.TryCatchBlockNode;
import org.objectweb.asm.tree.analysis.Analyzer;
import org.objectweb.asm.tree.analysis.AnalyzerException;

/**
 * Fails on class files that Oracle's Java Card converter (SDK 3.2, {@code -target 3.0.5}, without the int
 * option) would refuse.
 *
 * <p>The applets are tested in jCardSim, a full JVM that runs int, long, String and lambdas without
 * complaint, and converted to a CAP file elsewhere, later. This lint brings the converter's refusals
 * forward to every build: it reads every .class under a directory and prints one line per violation,
 * {@code Class.method(desc) line N: what and why}, then exits 1; or prints a one-line summary and exits 0.
 * Exit status 2 means it could not lint (usage, unreadable or no class files).
 *
 * <p>It is deliberately stricter than the converter in two places: it refuses any static initializer, and
 * an int intermediate that reaches a division, remainder or right shift (see {@link IntermediateValues}).
 */
public final class ConverterLint {

    /** javac --release 8 writes major version 52; the SDK 3.2 converter reads it. */
    static final int CLASS_FILE_VERSION = V1_8;
    static final String TARGET = "Java Card 3.0.5";

    private static final int EXIT_VIOLATIONS = 1;
    private static final int EXIT_CANNOT_LINT = 2;
    private static final int MAJOR_VERSION_MASK = 0xFFFF;
    private static final int NO_LINE = 0;

    private final JavaCardTypes types;
    private final InstructionRules instructionRules;
    private final List<Violation> violations = new ArrayList<>();

    private ConverterLint(JavaCardTypes types) {
        this.types = types;
        this.instructionRules = new InstructionRules(types);
    }

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: java keyload.tools.ConverterLint <classes-dir>");
            System.exit(EXIT_CANNOT_LINT);
        }
        Path dir = Paths.get(args[0]);
        List<ClassNode> classes;
        try {
            classes = readClasses(dir);
        } catch (IOException e) {
            System.err.println("converter lint: cannot read " + dir + ": " + e);
            System.exit(EXIT_CANNOT_LINT);
            return;
        }
        if (classes.isEmpty()) {
            System.err.println("converter lint: no class files under " + dir + ", nothing was checked");
            System.exit(EXIT_CANNOT_LINT);
        }
        Collection<String> violations = lint(classes);
        violations.forEach(System.out::println);
        if (!violations.isEmpty()) {
            System.out.printf("converter lint: %d violations (%d classes linted for class file version %d, %s)%n",
                    violations.size(), classes.size(), CLASS_FILE_VERSION, TARGET);
            System.exit(EXIT_VIOLATIONS);
        }
        System.out.printf("converter lint: %d classes clean (class file version %d, %s)%n",
                classes.size(), CLASS_FILE_VERSION, TARGET);
    }

    /**
     * Lints {@code classes} as one unit (they may refer to each other's packages); the violations in class
     * order, each method's by line, without repeats (e.g. the two MONITOREXITs of one synchronized block).
     */
    private static Collection<String> lint(List<ClassNode> classes) {
        Set<String> packages = classes.stream().map(c -> JavaCardTypes.packageOf(c.name)).collect(Collectors.toSet());
        ConverterLint lint = new ConverterLint(new JavaCardTypes(packages));
        classes.forEach(lint::lintClass);
        return lint.violations.stream().map(Violation::toString).collect(Collectors.toCollection(LinkedHashSet::new));
    }

    private static List<ClassNode> readClasses(Path dir) throws IOException {
        List<ClassNode> classes = new ArrayList<>();
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path file : files.filter(f -> f.toString().endsWith(".class")).collect(Collectors.toList())) {
                ClassNode node = new ClassNode();
                new ClassReader(Files.readAllBytes(file)).accept(node, 0);
                classes.add(node);
            }
        }
        classes.sort(Comparator.comparing(c -> c.name));
        return classes;
    }

    private void lintClass(ClassNode c) {
        String where = c.name.replace('/', '.');
        int major = c.version & MAJOR_VERSION_MASK;
        if (major != CLASS_FILE_VERSION) {
            report(where, NO_LINE, "class file version " + major + ", the converter reads version " + CLASS_FILE_VERSION
                    + " (compile with javac --release 8)");
        }
        if ((c.access & ACC_ENUM) != 0) {
            report(where, NO_LINE, "enum: Java Card has no java.lang.Enum; use byte constants");
        }
        if (c.superName != null) {
            checkType(where, NO_LINE, "superclass", Type.getObjectType(c.superName));
        }
        for (String implemented : c.interfaces) {
            checkType(where, NO_LINE, "interface", Type.getObjectType(implemented));
        }
        for (FieldNode field : c.fields) {
            String fieldWhere = where + "." + field.name;
            if ((field.access & ACC_ENUM) != 0) {
                report(fieldWhere, NO_LINE, "enum constant: Java Card has no java.lang.Enum");
            }
            checkType(fieldWhere, NO_LINE, "field type", Type.getType(field.desc));
        }
        for (MethodNode method : c.methods) {
            lintMethod(c.name, where + "." + method.name + method.desc, method);
        }
    }

    private void lintMethod(String owner, String where, MethodNode method) {
        int first = violations.size();
        lintMethodBody(owner, where, method);
        violations.subList(first, violations.size()).sort(Comparator.comparingInt(v -> v.line));
    }

    private void lintMethodBody(String owner, String where, MethodNode method) {
        int[] lines = lineNumbers(method);
        int firstLine = Arrays.stream(lines).filter(line -> line != NO_LINE).findFirst().orElse(NO_LINE);
        if (method.name.equals("<clinit>")) {
            report(where, firstLine, "static initializer: the converter refuses <clinit> here (static final primitive"
                    + " constants need none; allocate arrays in the constructor)");
        }
        if ((method.access & ACC_VARARGS) != 0) {
            report(where, firstLine, "varargs method: Java Card has no varargs");
        }
        String descriptorProblem = types.descriptorProblem(method.desc);
        if (descriptorProblem != null) {
            report(where, firstLine, descriptorProblem);
        }
        if (method.instructions.size() == 0) {
            return;
        }
        lintLocals(where, method, lines, firstLine);
        for (TryCatchBlockNode handler : method.tryCatchBlocks) {
            if (handler.type != null) {
                checkType(where, lines[method.instructions.indexOf(handler.handler)], "catch type",
                        Type.getObjectType(handler.type));
            }
        }
        for (int i = 0; i < method.instructions.size(); i++) {
            for (String problem : instructionRules.problems(method.instructions.get(i))) {
                report(where, lines[i], problem);
            }
        }
        lintIntermediates(owner, where, method, lines);
    }

    /** Parameters are covered by the descriptor; the LocalVariableTable adds the locals javac declared. */
    private void lintLocals(String where, MethodNode method, int[] lines, int firstLine) {
        if (method.localVariables == null || method.localVariables.isEmpty()) {
            if (method.maxLocals > 0) {
                report(where, firstLine,
                        "no LocalVariableTable: compile with javac -g so local variable types can be checked");
            }
            return;
        }
        int parameterSlots = Type.getArgumentsAndReturnSizes(method.desc) >> 2;
        if ((method.access & ACC_STATIC) != 0) {
            parameterSlots--;
        }
        for (LocalVariableNode local : method.localVariables) {
            if (local.index >= parameterSlots) {
                int store = Math.max(0, method.instructions.indexOf(local.start) - 1); // its scope starts after it
                checkType(where, lines[store], "local variable " + local.name, Type.getType(local.desc));
            }
        }
    }

    private void lintIntermediates(String owner, String where, MethodNode method, int[] lines) {
        IntermediateValues intermediates = new IntermediateValues();
        try {
            new Analyzer<>(intermediates).analyze(owner, method);
        } catch (AnalyzerException e) {
            report(where, NO_LINE, "cannot analyse int intermediate values: " + e.getMessage());
            return;
        }
        for (Map.Entry<AbstractInsnNode, AbstractInsnNode> escape : intermediates.escapes().entrySet()) {
            int line = lines[method.instructions.indexOf(escape.getKey())];
            report(where, line, IntermediateValues.describe(escape.getKey(), escape.getValue()));
        }
    }

    /**
     * The source line of each instruction (0 before the first line number), for messages. A label takes the
     * line that starts at it, so a catch handler's label is on the catch clause's line.
     */
    private static int[] lineNumbers(MethodNode method) {
        Map<LabelNode, Integer> lineStarts = new HashMap<>();
        for (AbstractInsnNode insn : method.instructions) {
            if (insn instanceof LineNumberNode) {
                lineStarts.put(((LineNumberNode) insn).start, ((LineNumberNode) insn).line);
            }
        }
        int[] lines = new int[method.instructions.size()];
        int line = NO_LINE;
        for (int i = 0; i < lines.length; i++) {
            line = lineStarts.getOrDefault(method.instructions.get(i), line);
            lines[i] = line;
        }
        return lines;
    }

    private void checkType(String where, int line, String what, Type type) {
        String problem = types.problem(type);
        if (problem != null) {
            report(where, line, what + ": " + problem);
        }
    }

    private void report(String where, int line, String message) {
        violations.add(new Violation(where, line, message));
    }

    /** One refusal: where (class, field or method), the source line if known, and what and why. */
    private static final class Violation {
        final String where;
        final int line;
        final String message;

        Violation(String where, int line, String message) {
            this.where = where;
            this.line = line;
            this.message = message;
        }

        @Override
        public String toString() {
            return where + (line == NO_LINE ? "" : " line " + line) + ": " + message;
        }
    }
}
