package keyload.tools;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

import org.junit.BeforeClass;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * {@code keyload.tools.ShortArithmeticLint} end to end: a fixture source is compiled the way the applets
 * are ({@code javac --release 8 -g} against jCardSim's Java Card API), then the lint runs in its own JVM
 * exactly as {@code ant lint-applets} runs it, and its exit status and lines are checked.
 *
 * <p>The lint needs asm, which is not on this test classpath, hence the separate process. Paths are
 * relative to the working directory, the repository root when Ant runs the tests; {@code ant compile-tools}
 * must have run (test-applets depends on it through lint-applets).
 */
public class ShortArithmeticLintTest {

    private static final Path TOOLS_CLASSES = Paths.get("build", "tools", "classes");
    private static final Path LIB = Paths.get("lib");
    private static final String LINT_MAIN = "keyload.tools.ShortArithmeticLint";
    private static final String FIXTURE_CLASS = "Fixture";
    private static final String FIXTURE = "fixture." + FIXTURE_CLASS;
    private static final String[] APPLET_JAVAC_OPTIONS = {"--release", "8", "-g"};
    private static final int CLEAN = 0;
    private static final int VIOLATIONS = 1;
    private static final int CANNOT_LINT = 2;

    /** An applet whose short arithmetic is all narrowed: the lint lets it through. */
    private static final String CLEAN_APPLET = """
            package fixture;

            import javacard.framework.APDU;
            import javacard.framework.Applet;
            import javacard.framework.ISO7816;
            import javacard.framework.ISOException;
            import javacard.framework.JCSystem;
            import javacard.framework.Shareable;
            import javacard.framework.Util;
            import javacard.security.CryptoException;

            public final class Fixture extends Applet {
                private static final short BUFFER_SIZE = 32;
                private static final byte INS_ECHO = 0x10;
                private final byte[] buffer;
                private final Counter counter = new Counter();
                private short total;

                private Fixture() {
                    buffer = JCSystem.makeTransientByteArray(BUFFER_SIZE, JCSystem.CLEAR_ON_DESELECT);
                    register();
                }

                public static void install(byte[] parameters, short offset, byte length) {
                    new Fixture();
                }

                public void process(APDU apdu) {
                    if (selectingApplet()) {
                        return;
                    }
                    byte[] apduBuffer = apdu.getBuffer();
                    short length = (short) (apduBuffer[ISO7816.OFFSET_LC] & 0xFF);
                    short end = (short) (ISO7816.OFFSET_CDATA + length);
                    for (short i = ISO7816.OFFSET_CDATA; i < end; i++) {
                        apduBuffer[i] ^= (byte) 0x5A;
                    }
                    total += length;
                    short middle = (short) ((short) (length + end) >> 1);
                    apduBuffer[(short) (ISO7816.OFFSET_CDATA + 1)] = (byte) ((total >> 8) & 0xFF);
                    try {
                        Util.arrayCopyNonAtomic(apduBuffer, ISO7816.OFFSET_CDATA, buffer, (short) 0, length);
                    } catch (ArrayIndexOutOfBoundsException e) {
                        ISOException.throwIt(ISO7816.SW_WRONG_LENGTH);
                    } catch (CryptoException e) {
                        ISOException.throwIt(e.getReason());
                    }
                    if (counter.equals(apdu)) {
                        throw new SecurityException();
                    }
                    switch (apduBuffer[ISO7816.OFFSET_INS]) {
                        case INS_ECHO:
                            counter.bump();
                            apdu.setOutgoingAndSend(middle, (short) (length > 2 ? 2 : length));
                            break;
                        default:
                            ISOException.throwIt(ISO7816.SW_INS_NOT_SUPPORTED);
                    }
                }

                static final class Counter implements Shareable {
                    private byte value;

                    void bump() {
                        value++;
                    }
                }
            }
            """;

    @Rule
    public final TemporaryFolder temp = new TemporaryFolder();

    /** Output and exit status of one lint run. */
    private static final class LintRun {
        final int exitStatus;
        final String output;

        LintRun(int exitStatus, String output) {
            this.exitStatus = exitStatus;
            this.output = output;
        }
    }

    @BeforeClass
    public static void lintIsBuilt() {
        assertTrue("run `ant compile-tools` first (from the repository root): no " + TOOLS_CLASSES,
                Files.isRegularFile(TOOLS_CLASSES.resolve(LINT_MAIN.replace('.', '/') + ".class")));
    }

    @Test
    public void acceptsAnAppletWhoseArithmeticIsNarrowed() throws Exception {
        LintRun run = lint(CLEAN_APPLET);
        assertEquals(run.output, CLEAN, run.exitStatus);
        assertEquals("short arithmetic lint: 2 classes clean", run.output.trim());
    }

    @Test
    public void refusesIntIntermediatesThatAreNotNarrowed() throws Exception {
        LintRun run = lint(fixture("""
                byte index(byte[] buffer, short offset) {
                    return buffer[offset + 1];
                }
                boolean compare(short a, short b, short limit) {
                    return a + b > limit;
                }
                short halve(short a, short b) {
                    return (short) ((a + b) / 2);
                }
                void allocate(short size) {
                    buffer = new byte[size * 2];
                }
                byte[] buffer;
                short masked(short a, short b) {
                    return (short) (((a + b) & -1) / 3);
                }
                """));
        assertRefused(run,
                FIXTURE + ".index([BS)B line 4: int result of IADD reaches BALOAD:"
                        + " cast the intermediate value to short or byte",
                FIXTURE + ".compare(SSS)Z line 7: int result of IADD reaches IF_ICMPLE: cast the intermediate value",
                FIXTURE + ".halve(SS)S line 10: int result of IADD reaches IDIV, which depends on its upper 16 bits",
                FIXTURE + ".allocate(S)V line 13: int result of IMUL reaches NEWARRAY: cast the intermediate value",
                // Oracle's converter accepts this one (tests/test_cap.py), and a card computes it otherwise.
                FIXTURE + ".masked(SS)S line 17: int result of IAND reaches IDIV, which depends on its upper 16 bits");
        assertEquals(run.output, 5, countLines(run.output, "cast the intermediate value"));
    }

    @Test
    public void cannotLintADirectoryWithoutClasses() throws Exception {
        LintRun run = runLint(temp.newFolder("empty").toPath());
        assertEquals(run.output, CANNOT_LINT, run.exitStatus);
        assertTrue(run.output, run.output.contains("no class files under"));
    }

    /** A fixture class in the applet package layout whose {@code members} start on line 3. */
    private static String fixture(String members) {
        return "package fixture;\npublic class " + FIXTURE_CLASS + " {\n" + members + "}\n";
    }

    private static void assertRefused(LintRun run, String... expectedFragments) {
        assertEquals(run.output, VIOLATIONS, run.exitStatus);
        for (String fragment : expectedFragments) {
            assertTrue("expected \"" + fragment + "\" in:\n" + run.output, run.output.contains(fragment));
        }
    }

    private static int countLines(String output, String fragment) {
        return (int) output.lines().filter(line -> line.contains(fragment)).count();
    }

    private LintRun lint(String source) throws IOException, InterruptedException {
        return lintCompiledWith(source, APPLET_JAVAC_OPTIONS);
    }

    private LintRun lintCompiledWith(String source, String... javacOptions) throws IOException, InterruptedException {
        Path sources = temp.newFolder("src").toPath();
        Path classes = temp.newFolder("classes").toPath();
        Path file = Files.createDirectories(sources.resolve("fixture")).resolve(FIXTURE_CLASS + ".java");
        Files.writeString(file, source);
        compile(file, classes, javacOptions);
        return runLint(classes);
    }

    private static void compile(Path file, Path classes, String... javacOptions) throws IOException {
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
        List<String> options = new ArrayList<>(Arrays.asList(javacOptions));
        options.addAll(List.of("-classpath", jcardsimJar(), "-d", classes.toString()));
        try (StandardJavaFileManager files = javac.getStandardFileManager(diagnostics, null, UTF_8)) {
            boolean compiled = javac.getTask(null, files, diagnostics, options, null,
                    files.getJavaFileObjects(file)).call();
            assertTrue("fixture does not compile: " + diagnostics.getDiagnostics(), compiled);
        }
    }

    private static LintRun runLint(Path classes) throws IOException, InterruptedException {
        String java = Paths.get(System.getProperty("java.home"), "bin", "java").toString();
        Process lint = new ProcessBuilder(java, "-cp", lintClasspath(), LINT_MAIN, classes.toString())
                .redirectErrorStream(true).start();
        String output = new String(lint.getInputStream().readAllBytes(), UTF_8);
        return new LintRun(lint.waitFor(), output);
    }

    private static String lintClasspath() throws IOException {
        List<String> entries = new ArrayList<>(List.of(TOOLS_CLASSES.toString()));
        try (DirectoryStream<Path> asmJars = Files.newDirectoryStream(LIB, "asm-*.jar")) {
            asmJars.forEach(jar -> entries.add(jar.toString()));
        }
        assertTrue("no asm jars in " + LIB.toAbsolutePath() + " (run `ant deps`)", entries.size() > 1);
        return String.join(File.pathSeparator, entries);
    }

    /** The Java Card API the applets compile against: jCardSim's jar, already on this test's classpath. */
    private static String jcardsimJar() {
        return Arrays.stream(System.getProperty("java.class.path").split(File.pathSeparator))
                .filter(entry -> Paths.get(entry).getFileName().toString().matches("jcardsim-.*\\.jar"))
                .findFirst()
                .orElseThrow(() -> new AssertionError("no jcardsim jar on the test classpath"));
    }
}
