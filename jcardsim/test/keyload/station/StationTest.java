package keyload.station;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.net.ServerSocket;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** The whole station against a fake vpcd (no pcscd): framing, power events, control commands, pulls. */
public class StationTest {

    private final ExecutorService background = Executors.newCachedThreadPool();
    private FakeVpcd vpcd;
    private FakeVpcd emptyReaderVpcd;
    private Station station;
    private Future<Boolean> controlLoop;
    private ControlClient control;
    private FakeVpcd.Card card;

    @Before
    public void startStationWithOneProbeAndOneEmptyReader() throws Exception {
        vpcd = new FakeVpcd();
        emptyReaderVpcd = new FakeVpcd();
        station = start("--reader", vpcd.port() + "=PROBE", "--reader", emptyReaderVpcd.port() + "=EMPTY");
        card = vpcd.accept();
        awaitReady();
        control = new ControlClient(station.controlPort());
    }

    @After
    public void stop() throws Exception {
        if (control != null) {
            control.close();
        }
        station.close();
        vpcd.close();
        emptyReaderVpcd.close();
        background.shutdownNow();
    }

    private Station start(String... readers) throws IOException {
        String[] args = new String[readers.length + 4];
        args[0] = "--control-port";
        args[1] = "0";
        args[2] = "--role";
        args[3] = ProbeApplet.ROLE_SPEC;
        System.arraycopy(readers, 0, args, 4, readers.length);
        Station started = Station.start(StationOptions.parse(args));
        controlLoop = background.submit(started::serveControl);
        return started;
    }

    private void awaitReady() throws Exception {
        CompletableFuture.runAsync(() -> {
            try {
                station.awaitReady();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, background).get(FakeVpcd.TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }

    private int transmitSw(byte[] apdu) throws IOException {
        return Apdus.sw(card.transmit(apdu));
    }

    private byte[] selectAndRead() throws IOException {
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));
        byte[] response = card.transmit(Apdus.READ);
        assertEquals(Apdus.SW_OK, Apdus.sw(response));
        return Apdus.data(response);
    }

    private void selectAndWrite(int value) throws IOException {
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.write(value)));
    }

    /** Sends a command that completes only once vpcd takes a card, plays vpcd, returns the reply. */
    private List<String> callAccepting(String command) throws IOException {
        control.send(command);
        card = vpcd.accept();
        return control.reply();
    }

    @Test
    public void statusListsEveryReaderInOrder() throws IOException {
        assertEquals(CardProtocol.T1.atr().length, card.atr().length);
        selectAndWrite(1);
        assertEquals(List.of(vpcd.port() + " PROBE connected 2", emptyReaderVpcd.port() + " EMPTY removed 0", "OK"),
                control.call("status"));
    }

    @Test
    public void timesCountsApdusAndTheCardSideTimeWithinTheirRoundTrips() throws IOException {
        assertEquals(List.of(vpcd.port() + " 0 0", emptyReaderVpcd.port() + " 0 0", "OK"), control.call("TIMES"));
        long began = System.nanoTime();
        selectAndWrite(7);
        long roundTrips = System.nanoTime() - began;

        List<String> times = control.call("TIMES");
        String[] probe = times.get(0).split(" ");
        assertEquals(List.of(String.valueOf(vpcd.port()), "2"), List.of(probe[0], probe[1]));
        long cardNanos = Long.parseLong(probe[2]);
        assertTrue("card-side time " + cardNanos + " ns", cardNanos > 0 && cardNanos < roundTrips);
        assertEquals(List.of(emptyReaderVpcd.port() + " 0 0", "OK"), times.subList(1, 3));
    }

    @Test
    public void answersTheAtrOnRequest() throws IOException {
        assertArrayEquals(CardProtocol.T1.atr(), card.atr());
    }

    @Test
    public void powerOffAndResetClearTransientMemoryAndDeselect() throws IOException {
        for (byte event : new byte[] {VpcdLink.CTRL_POWER_OFF, VpcdLink.CTRL_RESET}) {
            selectAndWrite(0x55);
            card.control(event);
            if (event == VpcdLink.CTRL_POWER_OFF) {
                card.control(VpcdLink.CTRL_POWER_ON);
            }
            assertEquals("selected after control " + event, Apdus.SW_NO_APPLET_SELECTED, transmitSw(Apdus.READ));
            assertArrayEquals(new byte[] {0, 0, 0x55}, selectAndRead());
        }
    }

    @Test
    public void removeThenReinsertKeepsPersistentStateOnly() throws IOException {
        selectAndWrite(0x42);
        assertEquals(List.of("OK"), control.call("REMOVE " + vpcd.port()));
        assertTrue(card.closedByCard());
        assertEquals(vpcd.port() + " EMPTY removed 2", control.call("STATUS").get(0));

        assertEquals(List.of("OK"), callAccepting("REINSERT " + vpcd.port()));
        assertEquals(Apdus.SW_NO_APPLET_SELECTED, transmitSw(Apdus.READ));
        assertArrayEquals(new byte[] {0, 0, 0x42}, selectAndRead());
    }

    @Test
    public void swapGivesAFreshCardOfTheSameRole() throws IOException {
        selectAndWrite(0x42);
        FakeVpcd.Card old = card;
        assertEquals(List.of("OK"), callAccepting("SWAP " + vpcd.port()));
        assertTrue(old.closedByCard());
        assertArrayEquals(new byte[] {0, 0, 0}, selectAndRead());
        assertEquals(vpcd.port() + " PROBE connected 4", control.call("STATUS").get(0));
    }

    @Test
    public void insertPutsAFreshCardIntoAnEmptyReader() throws IOException {
        control.send("INSERT " + emptyReaderVpcd.port() + " probe");
        card = emptyReaderVpcd.accept();
        assertEquals(List.of("OK"), control.reply());
        assertArrayEquals(new byte[] {0, 0, 0}, selectAndRead());
        assertEquals(emptyReaderVpcd.port() + " PROBE connected 2", control.call("STATUS").get(1));
    }

    @Test
    public void swapMayChangeTheRoleOrEmptyTheReader() throws IOException {
        control.send("SWAP " + emptyReaderVpcd.port() + " PROBE");
        card = emptyReaderVpcd.accept();
        assertEquals(List.of("OK"), control.reply());
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));

        assertEquals(List.of("OK"), control.call("SWAP " + emptyReaderVpcd.port() + " EMPTY"));
        assertTrue(card.closedByCard());
        assertEquals(emptyReaderVpcd.port() + " EMPTY removed 1", control.call("STATUS").get(1));
    }

    @Test
    public void pullBeforeTheAppletSeesTheCommand() throws IOException {
        selectAndWrite(0x11);
        assertEquals(List.of("OK"), control.call("PULL " + vpcd.port() + " 2 before"));
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));
        card.send(Apdus.write(0x22));
        assertTrue("the card must vanish instead of answering", card.closedByCard());
        assertEquals(vpcd.port() + " EMPTY removed 4", control.call("STATUS").get(0));

        assertEquals(List.of("OK"), callAccepting("REINSERT " + vpcd.port()));
        assertArrayEquals(new byte[] {0, 0, 0x11}, selectAndRead());
    }

    @Test
    public void pullAfterTheAppletProcessedTheCommand() throws IOException {
        selectAndWrite(0x11);
        assertEquals(List.of("OK"), control.call("PULL " + vpcd.port() + " 1 after"));
        card.send(Apdus.write(0x33));
        assertTrue("the card must vanish instead of answering", card.closedByCard());

        assertEquals(List.of("OK"), callAccepting("REINSERT " + vpcd.port()));
        assertArrayEquals(new byte[] {0, 0, 0x33}, selectAndRead());
    }

    @Test
    public void controlClientsAreServedAtOnce() throws IOException {
        // `control` stays connected and idle; another client (another reader's card changer) is answered
        try (ControlClient other = new ControlClient(station.controlPort())) {
            assertEquals(vpcd.port() + " PROBE connected 0", other.call("STATUS").get(0));
        }
        assertEquals("OK", control.call("STATUS").get(2));
    }

    @Test
    public void stalledCardStaysButNeverAnswersUntilRemoved() throws Exception {
        selectAndWrite(0x11);
        assertEquals(List.of("OK"), control.call("STALL " + vpcd.port() + " 1"));
        card.send(Apdus.write(0x44));
        String stalled = vpcd.port() + " PROBE connected 3";
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(FakeVpcd.TIMEOUT_MS);
        while (!control.call("STATUS").get(0).equals(stalled) && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals("the command is counted and the card stays", stalled, control.call("STATUS").get(0));
        assertEquals(List.of("OK"), control.call("REMOVE " + vpcd.port()));
        assertTrue("removing a stalled card ends its connection with no answer sent", card.closedByCard());

        assertEquals(List.of("OK"), callAccepting("REINSERT " + vpcd.port()));
        assertArrayEquals("the applet never saw the stalled command", new byte[] {0, 0, 0x11}, selectAndRead());
    }

    @Test
    public void droppedConnectionIsAPowerLossAndTheCardComesBack() throws IOException {
        selectAndWrite(0x66);
        card.close();
        card = vpcd.accept();
        assertEquals(Apdus.SW_NO_APPLET_SELECTED, transmitSw(Apdus.READ));
        assertArrayEquals(new byte[] {0, 0, 0x66}, selectAndRead());
    }

    @Test
    public void waitsForAVpcdThatIsNotListeningYet() throws Exception {
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        Station late = start("--reader", port + "=PROBE");
        try (ControlClient lateControl = new ControlClient(late.controlPort())) {
            assertEquals(port + " PROBE waiting 0", lateControl.call("STATUS").get(0));
            try (FakeVpcd lateVpcd = new FakeVpcd(port); FakeVpcd.Card lateCard = lateVpcd.accept()) {
                late.awaitReady();
                assertEquals(port + " PROBE connected 0", lateControl.call("STATUS").get(0));
                assertEquals(Apdus.SW_OK, Apdus.sw(lateCard.transmit(Apdus.SELECT_PROBE)));
            }
        } finally {
            late.close();
        }
    }

    @Test
    public void malformedApduAnswers6700AndTheStationGoesOn() throws IOException {
        assertArrayEquals(new byte[] {0x67, 0x00}, card.transmit(new byte[] {0, 1, 2}));
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));
    }

    @Test
    public void badCommandsAnswerErrAndTheSessionGoesOn() throws IOException {
        int port = vpcd.port();
        int empty = emptyReaderVpcd.port();
        assertErr("unknown command", "FLY");
        assertErr("no reader on port", "REMOVE 1");
        assertErr("expected a number", "REMOVE x");
        assertErr("already holds a card", "INSERT " + port + " PROBE");
        assertErr("unknown role", "INSERT " + empty + " NOPE");
        assertErr("needs a card role", "INSERT " + empty + " EMPTY");
        assertErr("is empty", "REMOVE " + empty);
        assertErr("no card was removed", "REINSERT " + port);
        assertErr("nothing to pull", "PULL " + empty + " 1 before");
        assertErr("'before' or 'after'", "PULL " + port + " 1 during");
        assertErr("'before' or 'after'", "PULL " + port + " 1 stall");
        assertErr("1 or more", "STALL " + port + " 0");
        assertErr("1 or more", "PULL " + port + " 0 after");
        assertErr("takes 3 argument", "PULL " + port);
        assertErr("say which role", "SWAP " + empty);
        assertErr("empty command", "");
        assertEquals("OK", control.call("STATUS").get(2));
    }

    @Test
    public void aClientThatHangsUpDoesNotStopTheStation() throws IOException {
        control.send("STATUS");
        control.close();
        control = new ControlClient(station.controlPort());
        assertEquals(3, control.call("STATUS").size());
        assertEquals(Apdus.SW_OK, transmitSw(Apdus.SELECT_PROBE));
    }

    @Test
    public void quitAnswersOkAndEndsTheControlLoop() throws Exception {
        assertEquals(List.of("OK"), control.call("QUIT"));
        assertTrue(controlLoop.get(FakeVpcd.TIMEOUT_MS, TimeUnit.MILLISECONDS));
        assertFalse(station.controlPort() == 0);
    }

    private void assertErr(String expected, String command) throws IOException {
        List<String> reply = control.call(command);
        assertEquals(command, 1, reply.size());
        assertTrue(command + " -> " + reply.get(0), reply.get(0).startsWith("ERR ") && reply.get(0).contains(expected));
    }
}
