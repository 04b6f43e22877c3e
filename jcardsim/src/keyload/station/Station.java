package keyload.station;

import java.io.IOException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The simulated station: jCardSim cards behind vpcd readers, driven over a control port. Our own bridge
 * rather than jCardSim's VSmartCard, which sleeps 3 s on connect, spins on disconnect and ignores power
 * off. It does not touch other vpcd ports, so the stock bridge can serve another reader of the same
 * pcscd in the same run (give that reader role EMPTY here, or leave it out).
 *
 * <p>Prints exactly one line, {@code READY}, on stdout once every card is taken by vpcd; logs events
 * (never APDU contents) on stderr; exits 0 on QUIT, 2 on a bad command line, 1 when it cannot start.
 */
public final class Station implements AutoCloseable {

    /** The line that tells a supervising process the station can be used. */
    public static final String READY = "READY";

    private static final long READY_POLL_MS = 10;

    private final Map<Integer, CardReader> readers;
    private final ControlServer control;

    private Station(Map<Integer, CardReader> readers, ControlServer control) {
        this.readers = readers;
        this.control = control;
    }

    /**
     * Makes the cards, binds the control port and starts every reader.
     *
     * @throws IllegalStateException when an applet cannot be installed
     * @throws IOException when the control port cannot be bound
     */
    public static Station start(StationOptions options) throws IOException {
        Map<Integer, CardReader> readers = new LinkedHashMap<>();
        Map<CardReader, SimulatedCard> cards = new LinkedHashMap<>();
        for (Map.Entry<Integer, ReaderSpec> slot : options.readers().entrySet()) {
            ReaderSpec spec = slot.getValue();
            CardReader reader = new CardReader(options.vpcdHost(), slot.getKey(), spec.protocol(),
                    options.timings().get(spec.timing()));
            readers.put(slot.getKey(), reader);
            if (!Roles.isEmpty(spec.role())) {
                cards.put(reader, SimulatedCard.blank(options.roles().lookup(spec.role()), spec.protocol()));
            }
        }
        Map<Integer, CardReader> fixed = Collections.unmodifiableMap(readers);
        ControlServer control = new ControlServer(options.controlPort(), new ControlProtocol(fixed, options.roles(), options.timings()));
        cards.forEach(CardReader::insert);
        readers.values().forEach(CardReader::start);
        return new Station(fixed, control);
    }

    /** The bound control port (useful when started on port 0). */
    public int controlPort() {
        return control.port();
    }

    /** Waits until every card is taken by vpcd (no bound here: the supervisor owns the deadline). */
    public void awaitReady() throws InterruptedException {
        while (!readers.values().stream().allMatch(CardReader::isSettled)) {
            Thread.sleep(READY_POLL_MS);
        }
    }

    /** Serves the control port until QUIT (true) or until closed (false). */
    public boolean serveControl() throws InterruptedException {
        return control.serve();
    }

    @Override
    public void close() {
        try {
            control.close();
        } catch (IOException e) {
            Log.event("closing the control port failed (" + e.getClass().getSimpleName() + ")");
        }
        readers.values().forEach(CardReader::shutdown);
    }

    public static void main(String[] args) throws InterruptedException {
        StationOptions options;
        try {
            options = StationOptions.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("station: " + e.getMessage());
            System.exit(2);
            return;
        }
        Station station;
        try {
            station = start(options);
        } catch (IOException e) {
            System.err.println("station: cannot listen on control port 127.0.0.1:" + options.controlPort() + " ("
                    + e.getMessage() + "); is another station running? Stop it or choose another --control-port");
            System.exit(1);
            return;
        } catch (IllegalStateException e) {
            System.err.println("station: " + e.getMessage());
            System.exit(1);
            return;
        }
        Log.event("control on 127.0.0.1:" + station.controlPort() + ", readers " + options.readers());
        station.awaitReady();
        System.out.println(READY);
        System.out.flush();
        station.serveControl();
        Log.event("quit");
        station.close();
        System.exit(0);
    }
}
