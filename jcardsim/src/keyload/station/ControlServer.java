package keyload.station;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

/**
 * Serves the control protocol on a loopback port, each client in a thread of its own (an INSERT waits for
 * vpcd, and the card changers of several readers work at once). A client that goes away only ends its
 * own session; QUIT from any client stops the server.
 */
final class ControlServer implements AutoCloseable {

    private final ServerSocket server;
    private final ControlProtocol protocol;
    /** Set by the session that received QUIT, before it closes the server socket. */
    private volatile boolean quit;

    /**
     * Binds the port now, so that a busy port is reported before the station says READY.
     *
     * @param port 0 for any free port (tests)
     */
    ControlServer(int port, ControlProtocol protocol) throws IOException {
        this.protocol = protocol;
        this.server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
    }

    int port() {
        return server.getLocalPort();
    }

    /** Serves clients until QUIT or until the server is closed; returns true on QUIT. */
    boolean serve() throws InterruptedException {
        while (!server.isClosed()) {
            Socket client;
            try {
                client = server.accept();
            } catch (IOException e) {
                break; // closed: by QUIT or by close()
            }
            Thread session = new Thread(() -> serveQuietly(client), "control " + client.getPort());
            session.setDaemon(true);
            session.start();
        }
        return quit;
    }

    private void serveQuietly(Socket client) {
        try (client) {
            if (serveClient(client)) {
                quit = true;
                server.close();
            }
        } catch (IOException e) {
            if (!server.isClosed()) {
                Log.event("control client dropped (" + e.getClass().getSimpleName() + ")");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private boolean serveClient(Socket client) throws IOException, InterruptedException {
        client.setTcpNoDelay(true);
        BufferedReader in = new BufferedReader(new InputStreamReader(client.getInputStream(), StandardCharsets.UTF_8));
        OutputStream out = client.getOutputStream();
        String line;
        while ((line = in.readLine()) != null) {
            ControlProtocol.Reply reply = protocol.handle(line);
            out.write(reply.text().getBytes(StandardCharsets.UTF_8));
            out.flush();
            if (reply.quit()) {
                return true;
            }
        }
        return false;
    }

    @Override
    public void close() throws IOException {
        server.close();
    }
}
