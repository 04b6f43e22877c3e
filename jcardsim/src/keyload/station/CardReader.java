package keyload.station;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Locale;

/**
 * One vpcd reader slot and the card in it. A card in the reader is a TCP client of vpcd: connected
 * means present. One thread per reader serves vpcd; the control thread inserts, removes and arms pulls.
 *
 * <p>A connection that drops without the card being removed (pcscd restarting) is a power loss: the
 * card keeps its persistent state, loses its transient state, and the reader reconnects.
 */
public final class CardReader {

    /** What STATUS reports for a slot. */
    public enum State {
        /** vpcd has taken the card: it has spoken on the current connection. */
        CONNECTED,
        /** a card is in the reader but vpcd has not taken it (yet). */
        WAITING,
        /** no card in the reader. */
        REMOVED;

        @Override
        public String toString() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * When a pulled card leaves the reader relative to the applet processing the command; or STALL: the card
     * stays and never answers that command, as a hung reader does, until it is removed.
     */
    public enum PullMoment {
        BEFORE, AFTER, STALL;

        /** BEFORE or AFTER, as the PULL command names them. */
        public static PullMoment parse(String word) {
            String upper = word.toUpperCase(Locale.ROOT);
            if (upper.equals(BEFORE.name()) || upper.equals(AFTER.name())) {
                return valueOf(upper);
            }
            throw new IllegalArgumentException("expected 'before' or 'after', got '" + word + "'");
        }
    }

    /** C-APDUs a reader received and the time its cards spent on them (jCardSim, or the timing model's). */
    public record Usage(long apdus, long cardNanos) {
    }

    /** How often to retry while vpcd is not listening (pcscd starting or restarting). */
    static final long RECONNECT_INTERVAL_MS = 50;
    private static final int CONNECT_TIMEOUT_MS = 1000;

    private final InetSocketAddress vpcd;
    private final int port;
    private final CardProtocol protocol;
    /** The timing model, which TIMING may change while the station runs (e.g. off while a card is set up). */
    private volatile CardTiming timing;
    private final Object lock = new Object();
    private final Thread thread;

    // All guarded by lock.
    private SimulatedCard card;
    private SimulatedCard lastRemoved;
    private VpcdLink link;
    private boolean linkAlive;
    private long apduCount;
    private long cardNanos;
    private int pullCountdown;
    private PullMoment pullMoment;
    private boolean stopped;

    /** A reader on a vpcd port whose cards answer as fast as jCardSim computes. */
    public CardReader(String vpcdHost, int port, CardProtocol protocol) {
        this(vpcdHost, port, protocol, CardTiming.NONE);
    }

    /**
     * A reader on a vpcd port; the station makes the cards it inserts here speak {@code protocol}, and
     * answers each APDU and power-up no sooner than {@code timing} says a real card would.
     */
    public CardReader(String vpcdHost, int port, CardProtocol protocol, CardTiming timing) {
        this.vpcd = new InetSocketAddress(vpcdHost, port);
        this.port = port;
        this.protocol = protocol;
        this.timing = timing;
        this.thread = new Thread(this::serveForever, "reader-" + port);
        this.thread.setDaemon(true);
    }

    public int port() {
        return port;
    }

    /** The reader's timing model from now on: the next APDU and power-up follow it. */
    public void setTiming(CardTiming newTiming) {
        timing = newTiming;
    }

    /** The protocol of the cards made for this reader (T=1, or T=0 like a SAM). */
    public CardProtocol protocol() {
        return protocol;
    }

    /** Starts the reader's thread. */
    public void start() {
        thread.start();
    }

    /**
     * Puts a card into the empty reader. Returns at once; see {@link #awaitConnected}.
     *
     * @throws IllegalStateException when the reader already holds a card
     */
    public void insert(SimulatedCard newCard) {
        synchronized (lock) {
            if (card != null) {
                throw new IllegalStateException("reader " + port + " already holds a card; REMOVE or SWAP it first");
            }
            card = newCard;
            lock.notifyAll();
        }
        Log.event("reader " + port + ": card " + newCard.role().name() + " inserted");
    }

    /**
     * Takes the card out: its connection closes (vpcd sees the card vanish) and it becomes the reader's
     * last removed card.
     *
     * @return the card taken out
     * @throws IllegalStateException when the reader is empty
     */
    public SimulatedCard remove() {
        SimulatedCard removed = removeIfAny();
        if (removed == null) {
            throw new IllegalStateException("reader " + port + " is empty");
        }
        return removed;
    }

    /** Like {@link #remove()}, but an empty reader is not an error: returns null then. */
    public SimulatedCard removeIfAny() {
        return takeOut(null, "removed");
    }

    /**
     * Puts the last removed card back, with its persistent state; it powers up afresh.
     *
     * @throws IllegalStateException when the reader holds a card or nothing was removed from it
     */
    public void reinsert() {
        SimulatedCard back;
        synchronized (lock) {
            if (lastRemoved == null) {
                throw new IllegalStateException("no card was removed from reader " + port);
            }
            back = lastRemoved;
            lastRemoved = null;
        }
        try {
            insert(back);
        } catch (IllegalStateException e) {
            synchronized (lock) {
                lastRemoved = back;
            }
            throw e;
        }
    }

    /**
     * Arms a pull: the card leaves the reader at the n-th APDU from now, before or after the applet
     * processes it; in both cases the host gets no response.
     */
    public void armPull(int nth, PullMoment moment) {
        if (nth < 1) {
            throw new IllegalArgumentException("the APDU number must be 1 or more, got " + nth);
        }
        synchronized (lock) {
            if (card == null) {
                throw new IllegalStateException("reader " + port + " is empty: nothing to pull");
            }
            pullCountdown = nth;
            pullMoment = moment;
        }
    }

    /**
     * Waits until vpcd has taken the card now in the reader.
     *
     * @throws IllegalStateException when the reader is empty or becomes empty, or on timeout
     */
    public void awaitConnected(long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        synchronized (lock) {
            SimulatedCard expected = card;
            if (expected == null) {
                throw new IllegalStateException("reader " + port + " is empty");
            }
            while (!(card == expected && linkAlive)) {
                if (card != expected) {
                    throw new IllegalStateException("the card left reader " + port + " before vpcd took it");
                }
                long left = (deadline - System.nanoTime()) / 1_000_000L;
                if (left <= 0) {
                    throw new IllegalStateException("card is in reader " + port + " but vpcd at " + vpcd
                            + " has not taken it within " + timeoutMs + " ms (is pcscd running with this reader?)");
                }
                lock.wait(left);
            }
        }
    }

    /** Whether the reader is ready: empty, or its card taken by vpcd. */
    public boolean isSettled() {
        synchronized (lock) {
            return card == null || linkAlive;
        }
    }

    public State state() {
        synchronized (lock) {
            return card == null ? State.REMOVED : linkAlive ? State.CONNECTED : State.WAITING;
        }
    }

    /** The role of the card in the reader, or EMPTY. */
    public String roleName() {
        synchronized (lock) {
            return card == null ? Roles.EMPTY : card.role().name();
        }
    }

    /** C-APDUs received on this reader since the station started. */
    public long apduCount() {
        synchronized (lock) {
            return apduCount;
        }
    }

    /**
     * C-APDUs received and nanoseconds the cards of this reader spent in jCardSim on them since the station
     * started, read together: the card-side share of round trips, which benchmarks separate from the PC/SC
     * stack's share.
     */
    public Usage usage() {
        synchronized (lock) {
            return new Usage(apduCount, cardNanos);
        }
    }

    /** Stops the reader: the card's connection closes, the thread ends. */
    public void shutdown() {
        synchronized (lock) {
            stopped = true;
            closeLink();
            lock.notifyAll();
        }
    }

    /** The reader thread: wait for a card, connect it to vpcd, serve it, and again. */
    private void serveForever() {
        try {
            while (true) {
                SimulatedCard present = awaitCard();
                if (present == null) {
                    return;
                }
                VpcdLink connection = connect(present);
                if (connection != null) {
                    // Every connection starts from power-up, as a card entering a field does.
                    present.powerLoss();
                    serve(present, connection);
                    endConnection(present, connection);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** The card in the reader, waiting for one; null once stopped. */
    private SimulatedCard awaitCard() throws InterruptedException {
        synchronized (lock) {
            while (card == null && !stopped) {
                lock.wait();
            }
            return stopped ? null : card;
        }
    }

    /**
     * Connects the card to vpcd, retrying while vpcd is not listening. Returns null when the card left
     * the reader (or the station stopped) meanwhile.
     */
    private VpcdLink connect(SimulatedCard present) throws InterruptedException {
        boolean announced = false;
        while (true) {
            Socket socket = new Socket();
            try {
                socket.connect(vpcd, CONNECT_TIMEOUT_MS);
                VpcdLink connection = new VpcdLink(socket);
                synchronized (lock) {
                    if (stopped || card != present) {
                        connection.close();
                        return null;
                    }
                    link = connection;
                }
                Log.event("reader " + port + ": connected to vpcd");
                return connection;
            } catch (IOException e) {
                closeQuietly(socket);
                if (!announced) {
                    Log.event("reader " + port + ": waiting for vpcd at " + vpcd
                            + (e instanceof ConnectException ? "" : " (" + e.getClass().getSimpleName() + ")"));
                    announced = true;
                }
            }
            synchronized (lock) {
                if (stopped || card != present) {
                    return null;
                }
                lock.wait(RECONNECT_INTERVAL_MS);
            }
        }
    }

    /** Answers vpcd until the connection ends (closed by vpcd, by a removal, or by a pull). */
    private void serve(SimulatedCard present, VpcdLink connection) {
        try {
            byte[] message;
            while ((message = connection.read()) != null) {
                markAlive(connection);
                if (message.length == 1) {
                    control(present, connection, message[0]);
                } else if (!apdu(present, connection, message)) {
                    return;
                }
            }
        } catch (IOException e) {
            // the connection is gone; endConnection tells whether we closed it or vpcd did
        }
    }

    private void control(SimulatedCard present, VpcdLink connection, byte code) throws IOException {
        switch (code) {
            case VpcdLink.CTRL_GET_ATR -> {
                CardTiming.waitUntil(System.nanoTime() + timing.powerUpNanos());
                connection.write(present.atr());
            }
            case VpcdLink.CTRL_POWER_OFF -> {
                present.powerLoss();
                Log.event("reader " + port + ": power off");
            }
            case VpcdLink.CTRL_POWER_ON -> Log.event("reader " + port + ": power on");
            case VpcdLink.CTRL_RESET -> {
                present.powerLoss();
                Log.event("reader " + port + ": reset");
            }
            default -> Log.event("reader " + port + ": ignoring unknown vpcd control code " + code);
        }
    }

    /** Runs one APDU; false when the card was pulled on it (no response is sent). */
    private boolean apdu(SimulatedCard present, VpcdLink connection, byte[] command) throws IOException {
        PullMoment pull = countApdu();
        if (pull == PullMoment.STALL) {
            holdUntilRemoved(connection);
            return false;
        }
        if (pull == PullMoment.BEFORE) {
            takeOut(present, "pulled before the applet saw the command");
            return false;
        }
        long began = System.nanoTime();
        byte[] response = present.process(command);
        CardTiming.waitUntil(began + timing.exchangeNanos(command, response));
        addCardTime(System.nanoTime() - began);
        if (pull == PullMoment.AFTER) {
            takeOut(present, "pulled after the applet processed the command");
            return false;
        }
        connection.write(response);
        return true;
    }

    /**
     * A stalled reader: the command is never answered; returns once the card's connection is closed (the card
     * removed, or the station stopped). Waits on the connection, not the card: a card removed and put back at
     * once is the same card, but never the same connection.
     */
    private void holdUntilRemoved(VpcdLink connection) throws IOException {
        Log.event("reader " + port + ": stalled, holding the command without an answer");
        synchronized (lock) {
            while (link == connection && !stopped) {
                try {
                    lock.wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while stalled", e);
                }
            }
        }
    }

    /** Counts a received APDU and says whether an armed pull fires on it. */
    private PullMoment countApdu() {
        synchronized (lock) {
            apduCount++;
            if (pullMoment == null || --pullCountdown > 0) {
                return null;
            }
            PullMoment fired = pullMoment;
            pullMoment = null;
            return fired;
        }
    }

    private void addCardTime(long nanos) {
        synchronized (lock) {
            cardNanos += nanos;
        }
    }

    private void markAlive(VpcdLink connection) {
        synchronized (lock) {
            if (link == connection && !linkAlive) {
                linkAlive = true;
                lock.notifyAll();
            }
        }
    }

    /**
     * Takes the card out of the reader if it is {@code expected} (any card when null): it becomes the
     * last removed card and its connection closes. Returns the card taken out, or null.
     */
    private SimulatedCard takeOut(SimulatedCard expected, String how) {
        SimulatedCard out;
        synchronized (lock) {
            if (card == null || (expected != null && card != expected)) {
                return null;
            }
            out = card;
            lastRemoved = out;
            card = null;
            pullMoment = null;
            closeLink();
            lock.notifyAll();
        }
        Log.event("reader " + port + ": card " + out.role().name() + " " + how);
        return out;
    }

    /** After serving: a connection we did not close ourselves is a power loss; reconnect. */
    private void endConnection(SimulatedCard present, VpcdLink connection) {
        boolean lost;
        synchronized (lock) {
            lost = link == connection;
            if (lost) {
                closeLink();
            }
            lock.notifyAll();
        }
        present.powerLoss();
        if (lost) {
            Log.event("reader " + port + ": vpcd connection lost, card powered down; reconnecting");
        } else {
            Log.event("reader " + port + ": disconnected from vpcd");
        }
    }

    /** Closes the current connection; the caller holds the lock. */
    private void closeLink() {
        if (link != null) {
            link.close();
            link = null;
        }
        linkAlive = false;
    }

    private static void closeQuietly(Socket socket) {
        try {
            socket.close();
        } catch (IOException ignored) {
            // a socket that failed to connect has nothing left to release
        }
    }
}
