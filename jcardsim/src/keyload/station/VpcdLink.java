package keyload.station;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import jdk.net.ExtendedSocketOptions;

/**
 * The card's end of one vpcd connection. vpcd frames every message as a 2-byte big-endian length and
 * the payload; a 1-byte payload is a control code, anything longer a C-APDU answered by its R-APDU.
 *
 * <p>Latency: vpcd sends one small message and waits for the answer, the worst case for delayed ACKs
 * (about 40 ms per APDU). TCP_NODELAY sends our answer at once, and TCP_QUICKACK, which Linux clears
 * again after it has been used, is set before every read so that vpcd's next message is ACKed at once.
 */
public final class VpcdLink implements AutoCloseable {

    /** vpcd control codes (vsmartcard vpcd.h). */
    public static final byte CTRL_POWER_OFF = 0;
    public static final byte CTRL_POWER_ON = 1;
    public static final byte CTRL_RESET = 2;
    public static final byte CTRL_GET_ATR = 4;

    /** The largest payload the 2-byte length can announce. */
    public static final int MAX_PAYLOAD = 0xFFFF;

    private final Socket socket;
    private final DataInputStream in;
    private final OutputStream out;
    private final boolean quickAck;

    /** Wraps a connected socket; sets TCP_NODELAY now and TCP_QUICKACK before every read. */
    public VpcdLink(Socket socket) throws IOException {
        this.socket = socket;
        socket.setTcpNoDelay(true);
        this.quickAck = socket.supportedOptions().contains(ExtendedSocketOptions.TCP_QUICKACK);
        this.in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
        this.out = socket.getOutputStream();
    }

    /**
     * The next message, or null when the peer closed the connection cleanly between messages.
     *
     * @throws IOException when the connection breaks (or is closed by us) mid-way
     */
    public byte[] read() throws IOException {
        if (quickAck) {
            socket.setOption(ExtendedSocketOptions.TCP_QUICKACK, true);
        }
        return readFrame(in);
    }

    /** Sends one message in a single write, so that header and payload leave in one segment. */
    public void write(byte[] payload) throws IOException {
        out.write(frame(payload));
        out.flush();
    }

    @Override
    public void close() {
        try {
            socket.close();
        } catch (IOException ignored) {
            // closing is best effort: the connection is being abandoned either way
        }
    }

    /** Header and payload of one vpcd message. */
    public static byte[] frame(byte[] payload) {
        if (payload.length > MAX_PAYLOAD) {
            throw new IllegalArgumentException("vpcd message too long: " + payload.length + " bytes");
        }
        byte[] framed = new byte[2 + payload.length];
        framed[0] = (byte) (payload.length >>> 8);
        framed[1] = (byte) payload.length;
        System.arraycopy(payload, 0, framed, 2, payload.length);
        return framed;
    }

    /**
     * Reads one framed message; null on a clean end of stream before a header.
     *
     * @throws EOFException when the stream ends inside a message
     */
    public static byte[] readFrame(InputStream stream) throws IOException {
        DataInputStream data = stream instanceof DataInputStream d ? d : new DataInputStream(stream);
        int high = data.read();
        if (high < 0) {
            return null;
        }
        int low = data.read();
        if (low < 0) {
            throw new EOFException("vpcd connection ended inside a message header");
        }
        byte[] payload = new byte[(high << 8) | low];
        data.readFully(payload);
        return payload;
    }
}
