package keyload.station;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.Test;

/** The station as a process: the READY line a supervisor waits for, and the exit codes. */
public class StationMainTest {

    private static final long EXIT_TIMEOUT_S = 20;

    private static ProcessBuilder station(Path stderr, String... args) {
        List<String> command = new java.util.ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Station.class.getName()));
        command.addAll(List.of(args));
        return new ProcessBuilder(command).redirectError(stderr.toFile());
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        }
    }

    @Test
    public void printsReadyOnceEveryCardIsTakenAndExitsZeroOnQuit() throws Exception {
        Path stderr = Files.createTempFile("station", ".log");
        int controlPort = freePort();
        try (FakeVpcd vpcd = new FakeVpcd()) {
            Process process = station(stderr, "--control-port", String.valueOf(controlPort),
                    "--role", ProbeApplet.ROLE_SPEC, "--reader", vpcd.port() + "=PROBE").start();
            BufferedReader stdout = new BufferedReader(
                    new InputStreamReader(process.getInputStream(), StandardCharsets.US_ASCII));
            try (FakeVpcd.Card card = vpcd.accept()) {
                assertEquals(Station.READY, stdout.readLine());
                try (ControlClient control = new ControlClient(controlPort)) {
                    assertEquals(List.of("OK"), control.call("QUIT"));
                }
                assertTrue(process.waitFor(EXIT_TIMEOUT_S, TimeUnit.SECONDS));
                assertEquals(0, process.exitValue());
                assertEquals("nothing but READY on stdout", null, stdout.readLine());
            }
        } finally {
            Files.deleteIfExists(stderr);
        }
    }

    @Test
    public void badCommandLineExitsTwoWithTheReason() throws Exception {
        Path stderr = Files.createTempFile("station", ".log");
        try {
            Process process = station(stderr, "--reader", "1=NOPE").start();
            assertTrue(process.waitFor(EXIT_TIMEOUT_S, TimeUnit.SECONDS));
            assertEquals(2, process.exitValue());
            assertTrue(Files.readString(stderr).contains("unknown role 'NOPE'"));
        } finally {
            Files.deleteIfExists(stderr);
        }
    }

    @Test
    public void missingAppletExitsOneWithTheClassName() throws Exception {
        Path stderr = Files.createTempFile("station", ".log");
        try {
            Process process = station(stderr, "--control-port", String.valueOf(freePort()),
                    "--role", "GHOST=no.such.Applet:F000000009", "--reader", freePort() + "=GHOST").start();
            assertTrue(process.waitFor(EXIT_TIMEOUT_S, TimeUnit.SECONDS));
            assertEquals(1, process.exitValue());
            assertTrue(Files.readString(stderr).contains("no.such.Applet"));
        } finally {
            Files.deleteIfExists(stderr);
        }
    }
}
