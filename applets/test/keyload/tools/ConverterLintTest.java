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
 * Each rule of {@code keyload.tools.ConverterLint}, exercised end to end: a fixture source is compiled the
 * way the applets are ({@code javac --release 8 -g} against jCardSim's Java Card API), then the lint runs
 * in its own JVM exactly as {@code ant lint-applets} runs it, and its exit status and lines are checked.
 *
 * <p>The lint needs asm, which is not on this test classpath, hence the separate process. Paths are
 * relative to the working directory, the repository root when Ant runs the tests; {@code ant compile-tools}
 * must have run (test-applets depends on it through lint-applets).
 */
public class ConverterLintTest {

    private static final Path TOOLS_CLASSES = Paths.get("build", "tools", "classes");
    private static final Path LIB = Paths.get("lib");
    private static final String LINT_MAIN = "keyload.tools.ConverterLint";
    private static final String FIXTURE_CLASS = "Fixture";
    private static final String FIXTURE = "fixture." + FIXTURE_CLASS;
    private static final String[] APPLET_JAVAC_OPTIONS = {"--release", "8", "-g"};
    private static final int CLEAN = 0;
    private static final int VIOLATIONS = 1;
    private static final int CANNOT_LINT = 2;

    /** An applet using everything the lint must let through; the rule tests below each break one thing. */
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
    public void acceptsAnAppletWithinJavaCard305() throws Exception {
        LintRun run = lint(CLEAN_APPLET);
        assertEquals(run.output, CLEAN, run.exitStatus);
        assertEquals("converter lint: 2 classes clean (class file version 52, Java Card 3.0.5)", run.output.trim());
    }

    @Test
    public void refusesClassFileVersionOtherThan52() throws Exception {
        assertRefused(lintCompiledWith(CLEAN_APPLET, "--release", "11", "-g"),
                FIXTURE + ": class file version 55, the converter reads version 52");
    }

    @Test
    public void refusesIntLongFloatDoubleCharFieldsAndTheirArrays() throws Exception {
        assertRefused(lint(fixture("int a; long b; float c; double d; char e; int[] f; char[] g; byte[][] h;\n")),
                FIXTURE + ".a: field type: int is not supported",
                FIXTURE + ".b: field type: long is not a Java Card type",
                FIXTURE + ".c: field type: float is not a Java Card type",
                FIXTURE + ".d: field type: double is not a Java Card type",
                FIXTURE + ".e: field type: char is not a Java Card type",
                FIXTURE + ".f: field type: int is not supported",
                FIXTURE + ".g: field type: char is not a Java Card type",
                FIXTURE + ".h: field type: arrays of arrays (byte[][]) are not supported");
    }

    @Test
    public void refusesUnsupportedTypesInMethodDescriptors() throws Exception {
        assertRefused(lint(fixture("""
                        void take(short a, int b) { }
                        long give() { return 0L; }
                        """)),
                FIXTURE + ".take(SI)V line 3: parameter type: int is not supported",
                FIXTURE + ".give()J line 4: return type: long is not a Java Card type");
    }

    @Test
    public void refusesClassesOutsideTheJavaCardApi() throws Exception {
        assertRefused(lint(fixture("""
                        java.util.Random random;
                        void take(Runnable task) { }
                        """)),
                FIXTURE + ".random: field type: java.util.Random is not in the Java Card 3.0.5 API",
                FIXTURE + ".take(Ljava/lang/Runnable;)V line 4: parameter type: java.lang.Runnable is not in");
    }

    @Test
    public void refusesClassesReferencedByInstructions() throws Exception {
        assertRefused(lint(fixture("""
                        Object make() {
                            return new java.util.Random();
                        }
                        boolean test(Object o) {
                            return o instanceof Integer || ((Thread) o).isAlive();
                        }
                        """)),
                FIXTURE + ".make()Ljava/lang/Object; line 4: NEW: java.util.Random is not in",
                FIXTURE + ".make()Ljava/lang/Object; line 4: INVOKESPECIAL owner: java.util.Random is not in",
                FIXTURE + ".test(Ljava/lang/Object;)Z line 7: INSTANCEOF: java.lang.Integer is not in",
                FIXTURE + ".test(Ljava/lang/Object;)Z line 7: CHECKCAST: java.lang.Thread is not in");
    }

    @Test
    public void refusesUnsupportedSuperclassAndInterfaces() throws Exception {
        assertRefused(lint("""
                        package fixture;
                        public class Fixture extends java.util.Random implements Runnable {
                            private static final long serialVersionUID = 1L;
                            public void run() { }
                        }
                        """),
                FIXTURE + ": superclass: java.util.Random is not in",
                FIXTURE + ": interface: java.lang.Runnable is not in");
    }

    @Test
    public void refusesJavaLangMembersJavaCardLacks() throws Exception {
        assertRefused(lint(fixture("""
                        byte[] copy(byte[] data) {
                            return data.clone();
                        }
                        """)),
                FIXTURE + ".copy([B)[B line 4: INVOKEVIRTUAL: byte[].clone does not exist in Java Card");
    }

    @Test
    public void refusesIntLocalVariables() throws Exception {
        assertRefused(lint(fixture("""
                        short narrow(short a) {
                            int wide = a;
                            return (short) wide;
                        }
                        """)),
                FIXTURE + ".narrow(S)S line 4: local variable wide: int is not supported");
    }

    @Test
    public void requiresTheLocalVariableTableOfJavacG() throws Exception {
        assertRefused(lintCompiledWith(CLEAN_APPLET, "--release", "8", "-g:source,lines"),
                FIXTURE + ".process(Ljavacard/framework/APDU;)V line 29: no LocalVariableTable: compile with javac -g");
    }

    @Test
    public void refusesLongFloatAndDoubleInstructions() throws Exception {
        assertRefused(lint(fixture("""
                        short scale(short a) {
                            return (short) ((long) a * 3L);
                        }
                        boolean above(short a) {
                            return a * 1.5f > 2.0;
                        }
                        """)),
                FIXTURE + ".scale(S)S line 4: I2L: long, float and double are not Java Card types",
                FIXTURE + ".scale(S)S line 4: LMUL: long, float and double are not Java Card types",
                FIXTURE + ".scale(S)S line 4: L2I: long, float and double are not Java Card types",
                FIXTURE + ".scale(S)S line 4: LDC of a Long constant is not supported",
                FIXTURE + ".above(S)Z line 7: FMUL: long, float and double are not Java Card types",
                FIXTURE + ".above(S)Z line 7: DCMPL: long, float and double are not Java Card types");
    }

    @Test
    public void refusesCharConversion() throws Exception {
        assertRefused(lint(fixture("""
                        byte viaChar(byte b) {
                            return (byte) (char) b;
                        }
                        """)),
                FIXTURE + ".viaChar(B)B line 4: I2C: char is not a Java Card type");
    }

    @Test
    public void refusesIincOfIntLoopCounters() throws Exception {
        assertRefused(lint(fixture("""
                        void loop() {
                            for (int i = 0; i < 3; i++) { }
                        }
                        """)),
                FIXTURE + ".loop()V line 4: IINC: javac emits it only for int locals");
    }

    @Test
    public void refusesSynchronized() throws Exception {
        assertRefused(lint(fixture("""
                        void lock() {
                            synchronized (this) { }
                        }
                        """)),
                FIXTURE + ".lock()V line 4: MONITORENTER: synchronized is not supported",
                FIXTURE + ".lock()V line 4: MONITOREXIT: synchronized is not supported");
    }

    @Test
    public void refusesInvokedynamic() throws Exception {
        assertRefused(lint(fixture("""
                        Object task() {
                            return (Runnable) () -> { };
                        }
                        """)),
                FIXTURE + ".task()Ljava/lang/Object; line 4: INVOKEDYNAMIC (lambda, method reference or string"
                        + " concatenation) is not supported");
    }

    @Test
    public void refusesMultiDimensionalArrays() throws Exception {
        assertRefused(lint(fixture("""
                        Object grid() {
                            return new byte[2][3];
                        }
                        """)),
                FIXTURE + ".grid()Ljava/lang/Object; line 4: MULTIANEWARRAY: multi-dimensional arrays are not");
    }

    @Test
    public void refusesNewArraysOfIntAndChar() throws Exception {
        assertRefused(lint(fixture("""
                        Object ints() {
                            return new int[3];
                        }
                        Object chars() {
                            return new char[3];
                        }
                        """)),
                FIXTURE + ".ints()Ljava/lang/Object; line 4: NEWARRAY of int, long, float, double or char",
                FIXTURE + ".chars()Ljava/lang/Object; line 7: NEWARRAY of int, long, float, double or char");
    }

    @Test
    public void refusesIntConstantsOutsideTheShortRange() throws Exception {
        assertRefused(lint(fixture("""
                        short mask(short a) {
                            return (short) (a & 0x12345);
                        }
                        """)),
                FIXTURE + ".mask(S)S line 4: LDC int constant 74565 is outside the short range");
    }

    @Test
    public void refusesStringAndClassLiterals() throws Exception {
        assertRefused(lint(fixture("""
                        Object text() {
                            return "key";
                        }
                        Object type() {
                            return Fixture.class;
                        }
                        """)),
                FIXTURE + ".text()Ljava/lang/Object; line 4: LDC of a string literal: java.lang.String is not in",
                FIXTURE + ".type()Ljava/lang/Object; line 7: LDC of the class literal fixture.Fixture.class");
    }

    @Test
    public void refusesStaticInitializers() throws Exception {
        assertRefused(lint(fixture("""
                        static final short CONSTANT = 7;
                        static byte[] table = {1, 2};
                        """)),
                FIXTURE + ".<clinit>()V line 4: static initializer: the converter refuses <clinit>");
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
                """));
        assertRefused(run,
                FIXTURE + ".index([BS)B line 4: int result of IADD reaches BALOAD:"
                        + " cast the intermediate value to short or byte",
                FIXTURE + ".compare(SSS)Z line 7: int result of IADD reaches IF_ICMPLE: cast the intermediate value",
                FIXTURE + ".halve(SS)S line 10: int result of IADD reaches IDIV, which depends on its upper 16 bits",
                FIXTURE + ".allocate(S)V line 13: int result of IMUL reaches NEWARRAY: cast the intermediate value");
        assertEquals(run.output, 4, countLines(run.output, "cast the intermediate value"));
    }

    @Test
    public void refusesEnumsAndVarargs() throws Exception {
        assertRefused(lint(fixture("""
                        enum Mode { ON }
                        void send(byte... data) { }
                        """)),
                FIXTURE + "$Mode: enum: Java Card has no java.lang.Enum",
                FIXTURE + "$Mode.ON: enum constant: Java Card has no java.lang.Enum",
                FIXTURE + ".send([B)V line 4: varargs method: Java Card has no varargs");
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
