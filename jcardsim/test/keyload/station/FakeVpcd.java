package keyload.station;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;

/**
 * The reader side of vpcd, in a test: listens, accepts the card and speaks the vpcd framing. Like vpcd,
 * it asks for the ATR first, which is how the station learns that vpcd has taken the card.
 */
final class FakeVpcd implements AutoCloseable {

    static final int TIMEOUT_MS = 5000;

    private final ServerSocket server;

    FakeVpcd() throws IOException {
        this(0);
    }

    FakeVpcd(int port) throws IOException {
        server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(new java.net.InetSocketAddress(InetAddress.getLoopbackAddress(), port));
    }

    int port() {
        return server.getLocalPort();
    }

    /** Accepts the card's connection and asks for its ATR, returning the connection. */
    Card accept() throws IOException {
        server.setSoTimeout(TIMEOUT_MS);
        Card card = new Card(server.accept());
        card.atr();
        return card;
    }

    @Override
    public void close() throws IOException {
        server.close();
    }

    /** One card connection, seen from vpcd. */
    static final class Card implements AutoCloseable {
        private final Socket socket;
        private final DataInputStream in;
        private final OutputStream out;

        Card(Socket socket) throws IOException {
            this.socket = socket;
            socket.setSoTimeout(TIMEOUT_MS);
            socket.setTcpNoDelay(true);
            in = new DataInputStream(socket.getInputStream());
            out = socket.getOutputStream();
        }

        byte[] atr() throws IOException {
            send(new byte[] {VpcdLink.CTRL_GET_ATR});
            return receive();
        }

        void control(byte code) throws IOException {
            send(new byte[] {code});
        }

        byte[] transmit(byte[] apdu) throws IOException {
            send(apdu);
            return receive();
        }

        void send(byte[] payload) throws IOException {
            out.write(VpcdLink.frame(payload));
            out.flush();
        }

        byte[] receive() throws IOException {
            byte[] message = VpcdLink.readFrame(in);
            if (message == null) {
                throw new IOException("the card closed the connection");
            }
            return message;
        }

        /** Whether the card closes the connection (rather than answering) within the timeout. */
        boolean closedByCard() throws IOException {
            try {
                return in.read() < 0;
            } catch (SocketTimeoutException e) {
                return false;
            } catch (IOException e) {
                return true;
            }
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }
}
