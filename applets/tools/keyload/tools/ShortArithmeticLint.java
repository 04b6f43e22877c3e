package keyload.tools;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.objectweb.asm.ClassReader;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.ClassNode;
import org.objectweb.asm.tree.LabelNode;
import org.objectweb.asm.tree.LineNumberNode;
import org.objectweb.asm.tree.MethodNode;
import org.objectweb.asm.tree.analysis.Analyzer;
import org.objectweb.asm.tree.analysis.AnalyzerException;

/**
 * Fails on int arithmetic whose result a card computes differently from the JVM that runs the tests.
 *
 * <p>Oracle's converter refuses almost every int the applets could hold (ant cap runs it on every test run),
 * but it accepts an unnarrowed sum, difference or product that passes through {@code &}, {@code |} or
 * {@code ^} before a division, remainder, right shift or comparison, e.g. {@code (short) (((a + b) & -1) / 3)}:
 * the card computes it in 16 bits, jCardSim in 32, and for a = b = 0x4000 they disagree (tests/test_cap.py
 * plants exactly that and shows the converter accepting it and this lint refusing it). The rule is
 * {@link IntermediateValues}; it is stricter than needed (it also asks for a cast after a plain mask).
 *
 * <p>Prints one line per violation, {@code Class.method(desc) line N: what and why}, then exits 1; or a
 * one-line summary and exits 0. Exit status 2: it could not lint (usage, unreadable or no class files).
 */
public final class ShortArithmeticLint {

    private static final int EXIT_VIOLATIONS = 1;
    private static final int EXIT_CANNOT_LINT = 2;
    private static final int NO_LINE = 0;

    private ShortArithmeticLint() {
    }

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: java keyload.tools.ShortArithmeticLint <classes-dir>");
            System.exit(EXIT_CANNOT_LINT);
        }
        Path dir = Paths.get(args[0]);
        List<ClassNode> classes;
        try {
            classes = readClasses(dir);
        } catch (IOException e) {
            System.err.println("short arithmetic lint: cannot read " + dir + ": " + e.getMessage());
            System.exit(EXIT_CANNOT_LINT);
            return;
        }
        if (classes.isEmpty()) {
            System.err.println("short arithmetic lint: no class files under " + dir + ", nothing was checked");
            System.exit(EXIT_CANNOT_LINT);
        }
        List<String> violations = new ArrayList<>();
        for (ClassNode c : classes) {
            for (MethodNode method : c.methods) {
                violations.addAll(lint(c.name, c.name.replace('/', '.') + "." + method.name + method.desc, method));
            }
        }
        if (!violations.isEmpty()) {
            violations.forEach(System.out::println);
            System.out.printf("short arithmetic lint: %d violations in %d classes%n", violations.size(), classes.size());
            System.exit(EXIT_VIOLATIONS);
        }
        System.out.printf("short arithmetic lint: %d classes clean%n", classes.size());
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

    /** The escaping int intermediates of one method, by source line. */
    private static List<String> lint(String owner, String where, MethodNode method) {
        if (method.instructions.size() == 0) {
            return List.of();
        }
        IntermediateValues intermediates = new IntermediateValues();
        try {
            new Analyzer<>(intermediates).analyze(owner, method);
        } catch (AnalyzerException e) {
            return List.of(where + ": cannot analyse int intermediate values: " + e.getMessage());
        }
        int[] lines = lineNumbers(method);
        return intermediates.escapes().entrySet().stream()
                .sorted(Comparator.comparingInt(escape -> method.instructions.indexOf(escape.getKey())))
                .map(escape -> {
                    int line = lines[method.instructions.indexOf(escape.getKey())];
                    return where + (line == NO_LINE ? "" : " line " + line) + ": "
                            + IntermediateValues.describe(escape.getKey(), escape.getValue());
                })
                .collect(Collectors.toList());
    }

    /** The source line of each instruction (0 before the first line number), for messages. */
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
}
